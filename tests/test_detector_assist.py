"""Labelling assist from a 2D keypoint detector, with fake detectors (no mediapipe): the core
edit (`from_detector`) and the window's "From detector" (worker thread, one undoable edit,
the keypoint store first, stale answers dropped, uncalibrated recordings)."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from mcss_studio.core import label_edits as edits
from mcss_studio.core.joints import NUM_JOINTS
from mcss_studio.core.keypoint_store import compute_keypoints, keypoints_path
from mcss_studio.core.labels import OCCLUDED, SOURCES, VISIBLE, FrameLabel
from mcss_studio.core.pose_detector import Detection
from mcss_studio.core.project import create_project
from mcss_studio.core.triangulate import CameraStack
from tests.conftest import ring_cameras, standing_pose
from tests.gui_fixtures import make_recording
from tests.test_labelling_gui import CAMS, WAIT_MS, click, open_window, stored, truth_2d

DETECTOR = SOURCES.index("detector")


# -- the core edit ------------------------------------------------------------------------------
def rig(n: int = 4):
    cams = ring_cameras(n, 640, 480)
    truth = standing_pose(1)[0]
    return CameraStack(cams), truth, np.stack([c.project(truth) for c in cams])


def empty(n: int = 4) -> FrameLabel:
    return FrameLabel.empty("s", 0, [f"c{i}" for i in range(n)], "S1")


def test_detector_points_are_placed_and_triangulated_as_detector():
    stack, truth, gt2d = rig()
    noise = np.random.default_rng(0).normal(0, 0.5, gt2d.shape)
    out = edits.from_detector(empty(), gt2d + noise, np.ones((4, NUM_JOINTS)), stack)
    assert (out.visibility == VISIBLE).all() and (out.source2d == DETECTOR).all()
    assert (out.source3d == DETECTOR).all()
    assert np.linalg.norm(out.joints3d - truth, axis=-1).max() < 5.0
    assert np.nanmax(out.error2d) < 3.0


def test_unsure_points_and_the_users_own_labels_are_left_alone():
    stack, truth, gt2d = rig()
    label = empty()
    label = edits.place(label, stack, 0, 5, gt2d[0, 5] + 3.0)  # the user's click
    label = edits.set_occluded(label, stack, 1, 5)  # and an occluded mark
    conf = np.ones((4, NUM_JOINTS))
    conf[2, 13] = 0.49  # below DETECTOR_MIN_CONFIDENCE
    conf[3, 13] = np.nan
    out = edits.from_detector(label, gt2d, conf, stack)
    np.testing.assert_allclose(out.points2d[0, 5], gt2d[0, 5] + 3.0)
    assert out.source2d[0, 5] == SOURCES.index("clicked")
    assert out.visibility[1, 5] == OCCLUDED and np.isnan(out.points2d[1, 5]).all()
    assert (out.visibility[2:, 13] == 0).all()  # unsure there: not placed
    assert (out.visibility[:2, 13] == VISIBLE).all() and out.source3d[13] == DETECTOR


def test_a_joint_seen_in_one_view_only_keeps_2d_without_3d():
    stack, _, gt2d = rig()
    conf = np.zeros((4, NUM_JOINTS))
    conf[1] = 1.0
    out = edits.from_detector(empty(), gt2d, conf, stack)
    assert (out.visibility[1] == VISIBLE).all() and np.isnan(out.joints3d).all()
    assert (out.source3d == 0).all()


def test_uncalibrated_keeps_the_2d_and_waits():
    _, _, gt2d = rig()
    out = edits.from_detector(empty(), gt2d, np.ones((4, NUM_JOINTS)), None)
    assert (out.visibility == VISIBLE).all() and np.isnan(out.joints3d).all()


def test_detector_3d_goes_when_its_views_are_cleared():
    stack, _, gt2d = rig()
    out = edits.from_detector(empty(), gt2d, np.ones((4, NUM_JOINTS)), stack)
    for v in range(3):
        out = edits.clear(out, stack, 7, v)
    assert np.isnan(out.joints3d[7]).all() and out.source3d[7] == 0


# -- the window ---------------------------------------------------------------------------------
class Detectors:
    """A detector factory (what DetectorWorker calls) whose detectors answer the given points
    view after view, recording the threads they ran on; `gate` holds them until set."""

    detector_id = "fake-truth"

    def __init__(self, points: np.ndarray, gate: threading.Event | None = None) -> None:
        self.points = points
        self.gate = gate
        self.calls = 0
        self.entered = 0  # calls begun (a gated one waits inside)
        self.threads: set[str] = set()

    def __call__(self):
        return self

    def detect(self, rgb: np.ndarray) -> Detection:
        self.entered += 1
        if self.gate is not None:
            assert self.gate.wait(WAIT_MS / 1000)
        self.threads.add(threading.current_thread().name)
        view = self.calls % len(self.points)
        self.calls += 1
        return Detection(self.points[view].copy(), np.ones(NUM_JOINTS), np.zeros(4))


@pytest.fixture(scope="module")
def recording_template(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("assist") / "rec", frames=6, cameras=CAMS)


@pytest.fixture
def window(qtbot, tmp_path, recording_template):
    folder = tmp_path / "rec"
    shutil.copytree(recording_template, folder)
    create_project(folder, folder)
    w = open_window(qtbot, folder)
    yield w
    w.close()




@pytest.mark.gui
@pytest.mark.usefixtures("private_studio_dirs")
def test_from_detector_is_one_undoable_edit_made_off_the_ui_thread(qtbot, window):
    panel, state, stack = window.labelling, window.state, window.session.undo_stack
    state.set_frame(2)
    gt2d, truth = truth_2d(window, 2), state.sequence.joints3d[2]
    panel.set_joint(4)
    click(panel.grid.views[1], gt2d[1, 4] + 6.0)  # the user's click stays
    fakes = Detectors(gt2d + 0.4)
    window.session.detector.set_factory(fakes)
    before = stack.count()
    panel.actions["detector"].trigger()
    qtbot.waitUntil(lambda: stack.count() == before + 1, timeout=WAIT_MS)
    assert threading.main_thread().name not in fakes.threads and fakes.calls == 4
    label = stored(window)
    assert (label.visibility == VISIBLE).all()
    assert label.source2d[1, 4] == SOURCES.index("clicked")
    assert (np.delete(label.source2d.ravel(), 1 * NUM_JOINTS + 4) == DETECTOR).all()
    assert (label.source3d == DETECTOR).all()
    err = np.linalg.norm(np.delete(label.joints3d - truth, 4, axis=0), axis=-1)
    assert err.max() < 5.0
    assert "det" in panel.table.item(0, 2).text()
    stack.undo()
    assert stored(window).visibility.sum() == 1  # back to the user's one click
    stack.redo()
    assert (stored(window).source3d == DETECTOR).all()


@pytest.mark.gui
@pytest.mark.usefixtures("private_studio_dirs")
def test_an_answer_about_a_frame_the_user_left_is_dropped(qtbot, window):
    panel, state, stack = window.labelling, window.state, window.session.undo_stack
    state.set_frame(1)
    gate = threading.Event()
    fakes = Detectors(truth_2d(window, 1), gate)
    window.session.detector.set_factory(fakes)
    panel.actions["detector"].trigger()
    assert "Detector: finding" in panel.header.text()
    state.set_frame(3)
    gate.set()
    qtbot.waitUntil(lambda: panel.detecting is None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.session.detector.idle(), timeout=WAIT_MS)
    assert fakes.calls == 4 and stack.count() == 0
    assert state.label_store.get("rec", 1) is None and state.label_store.get("rec", 3) is None


@pytest.mark.gui
@pytest.mark.usefixtures("private_studio_dirs")
def test_a_second_request_while_the_first_runs_is_the_one_answered(qtbot, window):
    panel, state, stack = window.labelling, window.state, window.session.undo_stack
    first, second = threading.Event(), threading.Event()

    class TwoRequests(Detectors):  # the first request's views wait for `first`, then `second`
        def detect(self, rgb):
            self.gate = first if self.calls < 4 else second
            return super().detect(rgb)

    fakes = TwoRequests(truth_2d(window, 2))
    window.session.detector.set_factory(fakes)
    state.set_frame(1)
    panel.actions["detector"].trigger()  # frame 1: the worker waits in the detector
    qtbot.waitUntil(lambda: fakes.entered >= 1, timeout=WAIT_MS)
    state.set_frame(2)
    panel.actions["detector"].trigger()  # frame 2: pending behind it
    first.set()
    worker = window.session.detector
    qtbot.waitUntil(lambda: worker.processed >= 1, timeout=WAIT_MS)  # the first is answered
    QApplication.processEvents()  # its answer reaches the panel, which drops it
    try:
        assert stack.count() == 0 and "finding the joints of frame 2" in panel.header.text()
    finally:
        second.set()  # a failure must not leave the worker waiting
    qtbot.waitUntil(lambda: stack.count() == 1, timeout=WAIT_MS)
    assert state.label_store.get("rec", 1) is None
    label = state.label_store.get("rec", 2)
    assert np.linalg.norm(label.joints3d - state.sequence.joints3d[2], axis=-1).max() < 5.0
    assert panel.detecting is None and "Detector: finding" not in panel.header.text()


@pytest.mark.gui
@pytest.mark.usefixtures("private_studio_dirs")
def test_the_recordings_keypoint_store_is_used_before_the_detector(qtbot, window):
    panel, state, stack = window.labelling, window.state, window.session.undo_stack
    seq = state.sequence
    truth2d = np.stack([truth_2d(window, t) for t in range(seq.num_frames)])  # (T, C, J, 2)

    class ByFrame(Detectors):  # the store's builder: answers frame after frame, per camera
        def detect(self, rgb):
            c, t = divmod(self.calls, seq.num_frames)
            self.calls += 1
            return Detection(truth2d[t, c], np.ones(NUM_JOINTS), np.zeros(4))

    compute_keypoints(seq, keypoints_path(window.session.cache_dir, seq), ByFrame(truth2d[0]))
    live = Detectors(truth2d[0] + 50.0)  # would be far off: must not be asked
    window.session.detector.set_factory(live)
    state.set_frame(4)
    panel.actions["detector"].trigger()
    qtbot.waitUntil(lambda: stack.count() == 1, timeout=WAIT_MS)
    assert live.calls == 0
    label = stored(window)
    assert np.linalg.norm(label.joints3d - seq.joints3d[4], axis=-1).max() < 5.0


@pytest.mark.gui
@pytest.mark.usefixtures("private_studio_dirs")
def test_without_a_detector_the_error_is_one_line_and_nothing_changes(qtbot, window):
    def missing():
        from mcss_studio.core.errors import UserInputError
        raise UserInputError("mediapipe", "the pose detector needs mediapipe 0.10.14")

    window.session.detector.set_factory(missing)
    window.labelling.actions["detector"].trigger()
    qtbot.waitUntil(lambda: "needs mediapipe" in (window.state.last_error or ""),
                    timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.labelling.detecting is None, timeout=WAIT_MS)
    assert window.session.undo_stack.count() == 0
    assert "Detector: finding" not in window.labelling.header.text()


@pytest.mark.gui
@pytest.mark.usefixtures("private_studio_dirs")
def test_uncalibrated_recording_gets_the_2d_points(qtbot, tmp_path):
    folder = make_recording(tmp_path / "plain", frames=3, calibrated=False, cameras=CAMS[:2])
    create_project(folder, folder)
    window = open_window(qtbot, folder)
    points = np.random.default_rng(1).uniform(20, 200, (2, NUM_JOINTS, 2))
    window.session.detector.set_factory(Detectors(points))
    window.labelling.actions["detector"].trigger()
    qtbot.waitUntil(lambda: window.session.undo_stack.count() == 1, timeout=WAIT_MS)
    label = stored(window)
    np.testing.assert_allclose(label.points2d, points)
    assert (label.source2d == DETECTOR).all() and np.isnan(label.joints3d).all()
    window.close()
