"""The training panel end to end on a tiny synthetic project: a real `mcss-train fit`
subprocess started, watched, stopped, resumed and finished from the GUI, its checkpoint driving
live inference; a killed trainer shown as a failed run with its log; a trainer that refuses its
config shown with its one-line message. The worst UI event-loop stall during each run is
logged (no timed assertion: the machine is shared)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from mcss_studio.core.project import create_project
from mcss_studio.core.runlog import read_events
from mcss_studio.core.runs import read_launch, run_checkpoints, summarize_run
from mcss_studio.gui.main_window import MainWindow
from mcss_studio.gui.training_panel import COLUMNS
from tests.gui_fixtures import make_checkpoint

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.usefixtures("private_studio_dirs")]
WAIT_MS = 240000  # generous: a subprocess imports torch on a shared 2-core machine
TINY = dict(crop_size=32, arch="resnet18", width=8, embedding_dim=16, pose_hidden=32,
            orientation_hidden=16, tau=3, tau_max=0, instants_per_sequence=4,
            sequences_per_batch=2, views_per_instant=2, labelled_batch=8, lambda_metric=0.3,
            mining="semihard", lr=3e-3, eval_every=0, eval_stride=4, device="cpu",
            label_every=1)
WHY = COLUMNS.index("why")
STEPS = 300


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from mcss_studio.core.synth import generate

    root = tmp_path_factory.mktemp("train-project")
    data = generate(root / "data", preset="tiny", seed=0)
    create_project(root, data)
    return root


class StallProbe:
    """A 5 ms timer on the UI thread: the worst gap beyond its interval is the worst stall."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.last: float | None = None
        self.worst = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.worst = max(self.worst, now - self.last - 0.005)
        self.last = now

    def start(self) -> StallProbe:
        self.timer.start(5)
        return self

    def stop(self) -> float:
        self.timer.stop()
        return self.worst * 1000


def table_cell(qtbot, panel, run: Path, column: int, expected: str) -> str:
    """The text of `run`'s cell once it contains `expected` (the table is rebuilt when the
    summary thread has read the run folders)."""
    def cell() -> str:
        rows = [r for r in range(panel.table.rowCount())
                if panel.table.item(r, 0).text() == run.name]
        return panel.table.item(rows[0], column).text() if rows else ""

    qtbot.waitUntil(lambda: expected in cell(), timeout=WAIT_MS)
    return cell()


@pytest.fixture
def window(qtbot, project):
    w = MainWindow(interactive=False, with_3d=False)
    qtbot.addWidget(w)
    w.show()
    assert w.open_path(project), w.state.last_error
    qtbot.waitUntil(lambda: not w.session.cache_busy, timeout=WAIT_MS)
    w.training_dock.show()
    yield w
    w.close()


def steps_seen(panel, run: Path) -> int:
    history = panel.histories.get(run)
    return len(history.series("loss")[0]) if history is not None else 0


def test_train_watch_stop_resume_finish_and_infer(qtbot, window, project, capsys):
    panel, state = window.training_panel, window.state
    # long enough that Stop lands mid-run even on a fast machine (tens of steps go by meanwhile)
    panel.form.show_values(dict(TINY, steps=STEPS, checkpoint_every=10, log_every=1,
                                train_subjects=["S1", "S9"], labelled_subjects=["S1"],
                                test_subjects=["S9"]))
    assert panel.start_button.isEnabled(), panel.reason.text()
    probe = StallProbe().start()
    panel.start_button.click()
    run = state.training_run
    assert run is not None and run.parent == project / "runs" and state.run == run
    assert (run / "config.toml").is_file()
    # curves and progress follow the live run
    qtbot.waitUntil(lambda: steps_seen(panel, run) >= 12, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: panel.curves.point_count(run, "loss") >= 12, timeout=5000)
    assert panel.curves.point_count(run, "metric_loss") >= 12
    assert panel.progress.value() >= 12 and panel.progress.maximum() == STEPS
    assert "ETA" in panel.progress.format() and "images/s" in panel.progress.format()
    assert "step 12" in panel.log.toPlainText()
    # stop: graceful, a checkpoint at the step it stopped
    panel.stop_button.click()
    qtbot.waitUntil(lambda: state.training_run is None, timeout=WAIT_MS)
    events = read_events(run / "events.jsonl")
    assert events[-1]["event"] == "status" and events[-1]["status"] == "stopped"
    stopped_at = events[-1]["step"]
    assert stopped_at < STEPS, "the run ended before Stop reached it"
    assert [e for e in events if e["event"] == "checkpoint"][-1]["step"] == stopped_at
    assert summarize_run(run).status() == "stopped"
    assert read_launch(run).last.stop_requested
    # resume from an earlier checkpoint (step 10): the curves continue from there
    qtbot.waitUntil(lambda: panel.checkpoints.count() >= 2, timeout=5000)
    panel.checkpoints.setCurrentIndex(panel.checkpoints.findText("step_0000010"))
    assert panel.resume_button.isEnabled()
    panel.resume_button.click()
    assert state.training_run == run
    qtbot.waitUntil(lambda: state.training_run is None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: panel.histories[run].status == "done", timeout=WAIT_MS)
    history = panel.histories[run]
    steps = history.series("loss")[0]
    assert steps[-1] == STEPS and (steps[1:] > steps[:-1]).all()  # no step twice
    assert len(read_launch(run).launches) == 2
    # the finished run's checkpoint drives live inference
    last = run / "checkpoints" / "last.safetensors"
    assert run_checkpoints(run)[-1] == last
    qtbot.waitUntil(lambda: state.checkpoint == last, timeout=WAIT_MS)
    state.set_frame(3)
    qtbot.waitUntil(lambda: state.prediction is not None and state.prediction.frame == 3,
                    timeout=WAIT_MS)
    assert table_cell(qtbot, panel, run, 1, "done") == "done"
    worst = probe.stop()
    with capsys.disabled():
        print(f"\nworst UI event-loop stall during train/stop/resume/finish: {worst:.1f} ms")


def test_killed_trainer_is_a_failed_run_with_its_log(qtbot, window, tmp_path, capsys):
    panel, state = window.training_panel, window.state
    window.open_checkpoint(make_checkpoint(tmp_path / "tiny.safetensors"))
    qtbot.waitUntil(lambda: state.checkpoint is not None, timeout=WAIT_MS)
    panel.form.show_values(dict(TINY, steps=100000, checkpoint_every=0, log_every=1,
                                train_subjects=["S1", "S9"], labelled_subjects=["S1"]))
    probe = StallProbe().start()
    panel.start_button.click()
    run = state.training_run
    qtbot.waitUntil(lambda: steps_seen(panel, run) >= 3, timeout=WAIT_MS)
    pid = panel.runner.process.processId()
    if hasattr(os, "SCHED_IDLE"):  # below the Studio's threads (test_trainer_priority.py)
        assert os.getpriority(os.PRIO_PROCESS, pid) == 19
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    os.kill(pid, signal.SIGKILL)
    # the GUI keeps answering meanwhile: frames change and live inference answers
    for t in (1, 5, 9):
        state.set_frame(t)
        qtbot.waitUntil(lambda t=t: state.prediction is not None and state.prediction.frame == t,
                        timeout=WAIT_MS)
    qtbot.waitUntil(lambda: state.training_run is None, timeout=WAIT_MS)
    assert table_cell(qtbot, panel, run, 1, "failed") == "failed"
    worst = probe.stop()
    assert "killed (SIGKILL)" in table_cell(qtbot, panel, run, WHY, "")
    qtbot.waitUntil(panel.settled, timeout=WAIT_MS)  # every table request answered
    state.set_run(run)
    log = panel.log.toPlainText()
    assert "start at step 0" in log and "trainer ended: failed" in log
    with capsys.disabled():
        print(f"\nworst UI event-loop stall during a run killed mid-way: {worst:.1f} ms")


def test_trainer_refusing_its_config_shows_the_message(qtbot, window):
    panel, state = window.training_panel, window.state
    panel.form.show_values(dict(TINY, steps=5, tau=5, tau_max=2,
                                train_subjects=["S1"], labelled_subjects=["S1"]))
    panel.start_button.click()
    run = state.training_run
    qtbot.waitUntil(lambda: state.training_run is None, timeout=WAIT_MS)
    summary = summarize_run(run)
    assert summary.status() == "failed"
    assert any("tau_max" in line for line in summary.log_tail)
    table_cell(qtbot, panel, run, WHY, "exited with code 2")


def test_form_presets_settings_and_remembered_values(qtbot, project):
    from mcss_studio.core import open_dataset
    from mcss_studio.core.train_presets import BENCH_CONFIGS, BENCH_VARIANTS
    from mcss_studio.gui.training_form import TrainingForm

    dataset = open_dataset(project / "data")
    form = TrainingForm()
    qtbot.addWidget(form)
    form.set_dataset(dataset)
    # the dataset's splits choose the subjects: train S1, labelled S1, validation S9
    assert form.train_subjects.checked() == ["S1"]
    assert form.labelled_subjects.checked() == ["S1"] and form.test_subjects.checked() == ["S9"]
    form.apply_preset("bench quick: baseline")
    v = form.settings()
    bench = dict(BENCH_CONFIGS["quick"], **BENCH_VARIANTS["baseline"])
    for key in ("label_every", "rotation_weight", "tau_max", "crop_size", "width", "steps",
                "lambda_metric", "cross_sequence_negatives"):
        assert v[key] == bench[key], key  # shown or not, the preset's values are the config
    assert v["data"] == str(dataset.root) and v["labelled_subjects"] == ["S1"]
    form.show_values({"steps": 7, "device": "cpu"})  # the others keep what they show
    moved = ("steps", "device", "log_every")  # log_every follows steps
    assert {k: x for k, x in form.settings().items() if k not in moved} == {
        k: x for k, x in v.items() if k not in moved}
    assert form.settings()["steps"] == 7
    form.lambda_metric.setValue(0.25)
    form.train_subjects.set_checked(["S1", "S9"])
    assert form.settings()["lambda_metric"] == 0.25
    assert form.settings()["train_subjects"] == ["S1", "S9"]
    assert form.labels() == {"source": "ground_truth", "subjects": ["S1"], "every": 10}
    form.remember_values()
    again = TrainingForm()  # a new session: the last preset and values come back
    qtbot.addWidget(again)
    again.set_dataset(dataset)
    assert again.preset.currentText() == "bench quick: baseline"
    assert again.settings()["lambda_metric"] == 0.25
    assert again.settings()["train_subjects"] == ["S1", "S9"]
    assert again.settings()["rotation_weight"] == bench["rotation_weight"]


def fake_run(run: Path, lambda_metric: float, losses: list[float]) -> Path:
    """A finished run folder as the trainer writes it (events only)."""
    from mcss_studio.core.runlog import EventWriter

    events = EventWriter(run / "events.jsonl")
    events.emit("start", steps=len(losses), start_step=0, device="cpu",
                config={"lambda_metric": lambda_metric, "mining": "semihard"})
    for k, loss in enumerate(losses, 1):
        events.emit("step", step=k, loss=loss, pose_loss=loss / 2, metric_loss=loss / 4, lr=0.1)
    events.emit("eval", step=len(losses), metrics={"n_mpjpe": 100.0 * losses[-1],
                                                   "hit@1": 0.5, "chance_hit@1": 0.25})
    events.emit("status", status="done", step=len(losses))
    events.close()
    return run


@pytest.fixture
def lone_panel(qtbot):
    from mcss_studio.gui.session import Session
    from mcss_studio.gui.training_panel import TrainingPanel

    session = Session()
    panel = TrainingPanel(session.state, session)
    qtbot.addWidget(panel)
    panel.show()
    yield panel
    panel.close_followers()
    session.close()


def test_two_runs_overlaid_and_read_once(qtbot, lone_panel, tmp_path):
    panel = lone_panel
    a = fake_run(tmp_path / "mcss", 0.3, [4.0, 3.0, 2.0])
    b = fake_run(tmp_path / "baseline", 0.0, [4.0, 3.5, 3.0, 2.5])
    panel.open_run(a)
    panel.open_run(b)
    qtbot.waitUntil(lambda: panel.table.rowCount() == 2, timeout=WAIT_MS)
    panel.select_runs([a, b])
    qtbot.waitUntil(lambda: panel.curves.point_count(b, "chance_hit@1") == 1, timeout=WAIT_MS)
    qtbot.waitUntil(panel.settled, timeout=WAIT_MS)
    assert panel.curves.point_count(a, "loss") == 3 and panel.curves.point_count(b, "loss") == 4
    assert panel.curves.point_count(a, "metric_loss") == 3
    generations = dict(panel._generations)
    qtbot.wait(1500)  # nothing new: nothing is read again (no refresh loop)
    assert panel._generations == generations and panel.settled()
    # the table sorts by the final N-MPJPE, as numbers
    column = COLUMNS.index("N-MPJPE")
    panel.table.sortItems(column)
    assert [panel.table.item(r, column).text() for r in range(2)] == ["200.0", "250.0"]


def test_closing_the_studio_stops_the_trainer_with_a_checkpoint(qtbot, project):
    w = MainWindow(interactive=False, with_3d=False)
    qtbot.addWidget(w)
    w.show()
    assert w.open_path(project), w.state.last_error
    panel = w.training_panel
    panel.form.show_values(dict(TINY, steps=100000, checkpoint_every=0, log_every=1,
                                train_subjects=["S1"], labelled_subjects=["S1"]))
    panel.start_button.click()
    run = w.state.training_run
    qtbot.waitUntil(lambda: steps_seen(panel, run) >= 2, timeout=WAIT_MS)
    w.close()  # waits for the trainer's last step and checkpoint
    events = read_events(run / "events.jsonl")
    assert events[-1]["status"] == "stopped"
    assert Path(events[-1]["checkpoint"]) == run / "checkpoints" / "last.safetensors"
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert read_launch(run).last.ended is not None
