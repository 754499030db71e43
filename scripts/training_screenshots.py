"""Screenshots of the training panel (docs/screenshots/studio_training_*.png): a tiny-model run
watched at step 500 of 1500 (log tab), then the same preset with lambda 0 (the baseline), both
runs overlaid (runs tab).

    xvfb-run -a .venv/bin/python scripts/training_screenshots.py PROJECT OUT_DIR

PROJECT is made (the tiny synthetic dataset and a project) when it is no project yet. The
trainer runs at the Studio's own CPU priority here (TRAINER_NICE = 0): on a heavily loaded
machine the Studio's usual nice 19 and idle class starve it and the two runs take an hour
instead of minutes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
STEPS = dict(steps=1500, log_every=1, checkpoint_every=250, eval_every=250, eval_stride=2, tau=3,
             device="cpu")
QUICK = "quick (tiny model, 300 steps)"


def main() -> int:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MCSS_STUDIO_SETTINGS", str(Path(tempfile.mkdtemp()) / "s.ini"))
    from PySide6.QtWidgets import QApplication

    import mcss_studio.gui.training_runner as runner
    from mcss_studio.core.project import create_project, is_project
    from mcss_studio.core.synth import generate
    from mcss_studio.gui.main_window import MainWindow
    from mcss_studio.gui.screenshot import wait_until

    runner.TRAINER_NICE = 0
    if not is_project(root):
        create_project(root, generate(root / "data", preset="tiny", seed=0))
    app = QApplication([])
    window = MainWindow(interactive=False, with_3d=False)
    window.resize(1600, 1000)
    window.show()
    panel = window.training_panel

    def wait(cond: Callable[[], object], timeout: float = 1800) -> None:
        wait_until(app, cond, timeout, "the training panel")

    def settle(limit_s: float = 60.0) -> None:
        # a live run keeps the panel busy: its shot settles for at most a moment, or it would
        # wait for the run's end
        calm, end = 0, time.time() + limit_s
        while calm < 5 and time.time() < end:
            app.processEvents()
            time.sleep(0.05)
            calm = calm + 1 if panel.settled() else 0

    def train(changes: dict, shot_at: int | None = None) -> Path:
        panel.form.apply_preset(QUICK)
        panel.form.show_values(dict(STEPS, **changes))
        panel.start_button.click()
        run = window.state.training_run
        if shot_at:
            wait(lambda: panel.histories.get(run) and panel.histories[run].step >= shot_at)
            panel.tabs.setCurrentIndex(1)
            settle(limit_s=1.0)
            panel.grab().save(str(out / "studio_training_live.png"))
            panel.tabs.setCurrentIndex(0)
        wait(lambda: window.state.training_run is None)
        return run

    assert window.open_path(root), window.state.last_error
    wait(lambda: not window.session.cache_busy)
    dock = window.training_dock
    dock.setFloating(True)
    dock.resize(1600, 950)
    dock.show()
    mcss = train({}, shot_at=500)
    baseline = train({"lambda_metric": 0.0})
    panel.select_runs([mcss, baseline])
    settle()
    panel.grab().save(str(out / "studio_training_overlay.png"))
    print(f"saved {out / 'studio_training_live.png'} and {out / 'studio_training_overlay.png'}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
