"""The README's "whole loop on the demo", steps 1, 3, 4 and 7, driven headlessly through the
Studio's own window and training panel, so that the walk-through is checked as a user does it:

    xvfb-run -a .venv/bin/python scripts/demo_walkthrough.py OUT_DIR

It opens the demo (rendered on first use into $MCSS_STUDIO_CACHE/demo, else
~/.cache/mcss-studio/demo), trains the *quick* preset on the project's label store (import or
label frames first: step 2), trains it again with lambda 0 (the baseline), selects both runs,
saves the panel as OUT_DIR/overlay.png and prints the runs table. The gallery, map and inspector
(steps 5 and 6) are rendered with the `--screenshot` commands of the README. The trainer runs at
the script's own CPU priority (TRAINER_NICE = 0), as in scripts/training_screenshots.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
QUICK = "quick (tiny model, 300 steps)"


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MCSS_STUDIO_SETTINGS", str(Path(tempfile.mkdtemp()) / "s.ini"))
    from PySide6.QtWidgets import QApplication

    import mcss_studio.gui.training_runner as runner
    from mcss_studio.gui.main_window import MainWindow
    from scripts.training_screenshots import wait_until

    runner.TRAINER_NICE = 0
    app = QApplication([])
    window = MainWindow(interactive=False, with_3d=False)
    window.resize(1600, 1000)
    window.show()

    def wait(cond: Callable[[], object], timeout: float = 1800) -> None:
        wait_until(app, cond, timeout)

    ready: list[bool] = []
    window.open_demo(lambda: ready.append(True))  # step 1
    wait(lambda: ready or window.state.last_error)
    if window.state.last_error:
        raise SystemExit(window.state.last_error)
    wait(lambda: not window.session.cache_busy)
    window.training_dock.setFloating(True)  # step 3: View > Training
    window.training_dock.resize(1600, 950)
    window.training_dock.show()
    panel = window.training_panel
    wait(lambda: panel.form.store is not None, 120)
    if panel.form.store.usable == 0:
        raise SystemExit("the demo's label store has no complete frame: do step 2 first")

    def train(changes: dict) -> Path:
        panel.form.apply_preset(QUICK)
        panel.form.choose_store(True)
        panel.form.show_values(changes)
        print(f"Train ({QUICK}, {changes or 'as preset'}): {panel.form.label_count.text()}")
        panel.start_button.click()
        run = window.state.training_run
        wait(lambda: window.state.training_run is None)  # step 4: the panel follows it
        print(f"  {run} ended")
        return run

    mcss = train({})
    baseline = train({"lambda_metric": 0.0})  # step 7
    panel.select_runs([mcss, baseline])
    for _ in range(100):
        app.processEvents()
        time.sleep(0.02)
    panel.grab().save(str(out / "overlay.png"))
    table = panel.table
    print(" | ".join(table.horizontalHeaderItem(c).text() for c in range(table.columnCount())))
    for r in range(table.rowCount()):
        print(" | ".join(table.item(r, c).text() if table.item(r, c) else ""
                         for c in range(table.columnCount())))
    print(f"in live inference: {window.state.checkpoint}")
    print(f"saved {out / 'overlay.png'}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
