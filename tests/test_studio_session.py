"""The Studio's Session driven without a window: opening, live inference through the prediction
pipeline, the checkpoint's crop margin, checkpoint requests, state signals and undo."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mcss_studio.core.cache import crop_square
from mcss_studio.core.inference import Predictor
from mcss_studio.core.media import MediaAccess
from mcss_studio.core.project import create_project
from mcss_studio.gui.commands import SetValueCommand
from mcss_studio.gui.session import Session
from mcss_studio.gui.state import StudioState
from mcss_studio.gui.workers import GIL_SWITCH_INTERVAL_S
from tests.gui_fixtures import make_checkpoint, make_recording

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]
WAIT_MS = 60000  # generous: the machine is shared; nothing here measures time


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("session") / "rec", frames=12)


@pytest.fixture
def session(qtbot):
    s = Session()
    yield s
    s.close()


def open_ready(qtbot, session: Session, path: Path) -> None:
    assert session.open_path(path), session.state.last_error
    qtbot.waitUntil(lambda: not session.cache_busy and session.state.media.has_proxies,
                    timeout=WAIT_MS)


def test_session_opens_infers_and_reports_through_the_state(qtbot, session, recording,
                                                            tmp_path):
    state = session.state
    seen: dict[str, list] = {"dataset": [], "status": []}
    state.datasetChanged.connect(seen["dataset"].append)
    state.statusChanged.connect(lambda k, t: seen["status"].append((k, t)))
    open_ready(qtbot, session, recording)
    assert [d.kind for d in seen["dataset"]] == ["recording"]
    assert state.opened_path == recording and state.project is None
    assert state.status["cache"] == "proxies: ready"
    assert session.recent.paths()[0] == str(recording.resolve())

    ckpt = make_checkpoint(tmp_path / "tiny.safetensors")
    session.open_checkpoint(ckpt)
    assert state.checkpoint_requested == ckpt
    qtbot.waitUntil(lambda: state.prediction is not None, timeout=WAIT_MS)
    assert state.checkpoint == ckpt and state.checkpoint_requested is None
    assert state.device == "cpu" and state.status["device"] == "device: cpu"
    assert state.status["checkpoint"] == "checkpoint: tiny.safetensors"
    state.set_frame(5)
    qtbot.waitUntil(lambda: state.prediction.frame == 5, timeout=WAIT_MS)
    pred = state.prediction
    assert pred.pose_cam.shape == (3, 17, 3) and pred.points2d.shape == (3, 17, 2)
    assert pred.embedding.shape == (3, 16) and pred.pose_world is not None
    assert ("checkpoint", "checkpoint: tiny.safetensors") in seen["status"]


def test_new_sequence_resets_selection_and_maximised_view_with_signals(qtbot, session,
                                                                       recording):
    open_ready(qtbot, session, recording)
    state = session.state
    state.select_camera(2)
    state.set_maximised(1)
    selections, maximised = [], []
    state.selectionChanged.connect(selections.append)
    state.maximisedChanged.connect(maximised.append)
    session.choose_sequence(state.dataset.names[0])
    assert state.selected_camera == -1 and state.maximised_camera == -1
    assert selections == [-1] and maximised == [-1]


def test_failed_checkpoint_load_then_project_open_loads_the_projects_checkpoint(
        qtbot, session, recording, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(recording, project)
    create_project(project, project)
    good = make_checkpoint(project / "model.safetensors")
    with open(project / "mcss-project.toml", "a", encoding="utf-8") as fh:
        fh.write('checkpoint = "model.safetensors"\n')
    state = session.state
    session.open_checkpoint(tmp_path / "absent.safetensors")
    qtbot.waitUntil(lambda: state.last_error is not None, timeout=WAIT_MS)
    assert "absent.safetensors" in state.last_error
    assert state.checkpoint_requested is None and state.checkpoint is None
    assert state.status["checkpoint"] == "checkpoint: none"

    assert session.open_path(project)
    assert state.project == project
    qtbot.waitUntil(lambda: state.checkpoint is not None, timeout=WAIT_MS)
    assert state.checkpoint == good.resolve()


def test_studio_crops_follow_the_checkpoints_margin(qtbot, session, recording, tmp_path,
                                                    monkeypatch):
    crops_seen: list[np.ndarray] = []
    original = Predictor.predict

    def spy(self, crops, rays=None):
        crops_seen.append(np.array(crops))
        return original(self, crops, rays=rays)

    monkeypatch.setattr(Predictor, "predict", spy)
    open_ready(qtbot, session, recording)  # builds the crop cache with margin 0.2
    state = session.state
    assert state.media.crop_cache.margin == pytest.approx(0.2)
    # saved the way the trainer saves it after `mcss-train fit --crop-margin 0.3`
    ckpt = make_checkpoint(tmp_path / "m03.safetensors",
                           meta={"train_config": {"crop_margin": 0.3}})
    session.open_checkpoint(ckpt)
    qtbot.waitUntil(lambda: state.prediction is not None, timeout=WAIT_MS)
    pred, t = state.prediction, state.prediction.frame
    boxes = state.media.person_boxes(t)
    for c in range(3):
        box_side = max(boxes[c, 2] - boxes[c, 0], boxes[c, 3] - boxes[c, 1])
        side = pred.regions[c, 2] - pred.regions[c, 0]
        assert abs(side - 1.3 * box_side) <= 2.0, (side, box_side)  # 0.2 would be 0.1 * side off
        centre = (pred.regions[c, :2] + pred.regions[c, 2:]) / 2
        assert np.allclose(centre, (boxes[c, :2] + boxes[c, 2:]) / 2, atol=1.0)
    # and the model saw exactly those regions, cut from the full-resolution frames
    frame_crops = crops_seen[-1]
    for c in range(3):
        expected = crop_square(state.media.full_frame(c, t), pred.regions[c], 32)
        assert np.array_equal(frame_crops[c], expected)


def test_crops_are_cached_the_way_the_loaded_checkpoint_wants_them(qtbot, session, recording,
                                                                   tmp_path, monkeypatch):
    state = session.state
    assert session.open_path(recording)  # starts caching crops at the default 128 px, 0.2
    ckpt = make_checkpoint(tmp_path / "c32.safetensors",  # a 32 px, 0.3 margin model
                           meta={"train_config": {"crop_margin": 0.3}})
    session.open_checkpoint(ckpt)  # while that build may still run: it is followed by another
    qtbot.waitUntil(lambda: state.checkpoint is not None and not session.cache_busy
                    and state.media.crops_cached_for(32, 0.3), timeout=WAIT_MS)
    assert state.media.has_proxies and state.status["cache"] == "proxies: ready"
    decoded: list[tuple[int, int]] = []
    monkeypatch.setattr(MediaAccess, "full_frame", lambda self, c, t: decoded.append((c, t)))
    state.set_frame(7)
    qtbot.waitUntil(lambda: state.prediction is not None and state.prediction.frame == 7,
                    timeout=WAIT_MS)
    assert decoded == []  # live inference read the cache, no view was decoded for it


def test_edits_are_undoable_commands(qtbot, session):
    state = session.state
    session.execute(SetValueCommand("Faster", lambda: state.speed, state.set_speed, 2.0))
    assert state.speed == 2.0 and session.undo_stack.canUndo()
    session.undo_stack.undo()
    assert state.speed == 1.0
    session.undo_stack.redo()
    assert state.speed == 2.0
    assert session.undo_stack.undoText() == "Faster"


def test_unloading_while_a_checkpoint_loads_keeps_the_model_away(qtbot, session, recording,
                                                                  tmp_path, monkeypatch):
    import threading

    from PySide6.QtWidgets import QApplication

    from mcss_studio.core.pipeline import PosePipeline

    started, release = threading.Event(), threading.Event()
    original = PosePipeline.load

    def held_load(path, device="auto", warmup_batch=4):
        started.set()
        assert release.wait(60)
        return original(path, device, warmup_batch)

    monkeypatch.setattr(PosePipeline, "load", staticmethod(held_load))
    open_ready(qtbot, session, recording)
    state, worker = session.state, session.inference
    session.open_checkpoint(make_checkpoint(tmp_path / "late.safetensors"))
    assert started.wait(60)  # the worker is inside the load
    session.unload_checkpoint()
    assert state.checkpoint_requested is None
    release.set()
    qtbot.waitUntil(worker.idle, timeout=WAIT_MS)
    QApplication.processEvents()  # deliver a `loaded` signal, had one been sent
    assert worker.pipeline is None and state.checkpoint is None
    assert state.status["checkpoint"] == "checkpoint: none"


def test_closing_the_session_stops_a_demo_generation_under_way(qtbot, monkeypatch):
    import mcss_studio.core.synth as synth

    reports: list[int] = []

    def slow_generate(out, preset="demo", progress=None, **kw):
        for i in range(100000):  # ends at the first progress report after the cancel
            progress(i, 100000)
            reports.append(i)
            time.sleep(0.002)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(synth, "generate", slow_generate)
    s = Session()
    s.open_demo()
    qtbot.waitUntil(lambda: len(reports) > 3, timeout=WAIT_MS)
    s.close()
    assert s.demo_worker.isFinished()  # no thread left running into a destroyed Session


def test_state_steps_speed_and_switches_3d_framing():
    state = StudioState()
    speeds: list[float] = []
    state.speedChanged.connect(speeds.append)
    for _ in range(3):
        state.step_speed(+1)  # 1x -> 2x -> 4x, then stays at the fastest
    assert speeds == [2.0, 4.0] and state.speed == 4.0
    for _ in range(5):
        state.step_speed(-1)  # 4x -> 2x -> 1x -> 0.5x -> 0.25x, then stays
    assert speeds[2:] == [2.0, 1.0, 0.5, 0.25] and state.speed == 0.25
    state.set_speed(3.0)  # not one of the steps: stepping starts at 1x
    state.step_speed(-1)
    assert state.speed == 0.5

    framings: list[str] = []
    state.framingChanged.connect(framings.append)
    assert state.framing == "rig"
    state.toggle_framing()
    state.set_framing("person")  # unchanged: no signal
    state.toggle_framing()
    assert framings == ["person", "rig"] and state.framing == "rig"
    with pytest.raises(ValueError, match="framing"):
        state.set_framing("face")
    resets: list[bool] = []
    state.viewsResetRequested.connect(lambda: resets.append(True))
    state.request_views_reset()
    assert resets == [True]


def test_display_rate_reaches_the_status_through_the_state(qtbot, session):
    state = session.state
    assert state.status["display"] == "display: 0.0 fps"  # before any frame, no window needed
    for _ in range(3):
        state.report_frame_displayed()  # what the camera grid reports per frame it shows
    assert len(session.display_rate.stamps) == 3
    session.update_rates()  # what the Session's one rate timer calls
    assert state.status["display"].startswith("display: ") and state.status["display"] != \
        "display: 0.0 fps"


def test_goto_requests_show_the_frame_and_camera_and_report_unknown_sequences(qtbot, session,
                                                                           recording):
    open_ready(qtbot, session, recording)
    state = session.state
    name = state.sequence.name
    state.request_goto(name, 1, 7)
    assert (state.sequence.name, state.selected_camera, state.frame) == (name, 1, 7)
    state.request_goto(name, -1, 3)  # -1 keeps the selection
    assert (state.selected_camera, state.frame) == (1, 3)
    state.request_goto("no-such-sequence", 0, 2)
    assert "no-such-sequence" in state.last_error
    assert (state.sequence.name, state.selected_camera, state.frame) == (name, 1, 3)


def test_run_selection_is_state_with_one_signal_per_change():
    state = StudioState()
    seen = []
    state.runChanged.connect(seen.append)
    state.set_run(Path("runs/a"))
    state.set_run(Path("runs/a"))
    state.set_run(None)
    assert seen == [Path("runs/a"), None] and state.run is None


@pytest.mark.parametrize("before, after", [(0.005, GIL_SWITCH_INTERVAL_S), (0.0001, 0.0001)])
def test_session_has_the_gil_handed_to_the_ui_thread_within_half_a_ms(qtbot, before, after):
    # Python's default 5 ms let busy workers hold the UI thread off for 5 ms each time it
    # entered Python to paint; a shorter interval someone set already is kept
    default = sys.getswitchinterval()
    sys.setswitchinterval(before)
    try:
        s = Session()
        try:
            assert sys.getswitchinterval() == pytest.approx(after, rel=1e-3)
        finally:
            s.close()
    finally:
        sys.setswitchinterval(default)
