"""The labelling mode in the window: clicks and drags triangulate, the outlier view is shown,
undo and redo restore exact store states across frames, the 3D label shows in the 3D view,
a second window gets the store read-only, and the trainer trains from labels made here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtWidgets import QApplication

from mcss_studio.core.joints import JOINT_NAMES
from mcss_studio.core.labels import OCCLUDED, VISIBLE, LabelStore
from mcss_studio.core.project import create_project
from mcss_studio.gui.main_window import MainWindow
from tests.gui_fixtures import make_recording, scene3d

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]
WAIT_MS = 60000  # generous: the machine is shared; nothing here measures time
CAMS = (("cam_a", 320, 240), ("cam_b", 240, 320), ("cam_c", 320, 240), ("cam_d", 320, 240))


@pytest.fixture(scope="module")
def recording_template(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("lab") / "rec", frames=8, cameras=CAMS)


@pytest.fixture
def project(tmp_path, recording_template):
    folder = tmp_path / "rec"
    shutil.copytree(recording_template, folder)
    create_project(folder, folder)
    return folder


def open_window(qtbot, project, with_3d: bool = False, labelling: bool = True) -> MainWindow:
    """A shown window with `project` open and its caches built, in labelling mode or not."""
    window = MainWindow(interactive=False, with_3d=with_3d, remember_recent=False)
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_path(project), window.state.last_error
    qtbot.waitUntil(lambda: not window.session.cache_busy, timeout=WAIT_MS)
    if labelling:
        window.set_labelling(True)
    QApplication.processEvents()
    return window


@pytest.fixture
def window(qtbot, project):
    w = open_window(qtbot, project)
    yield w
    w.close()


def _mouse(view, kind: QEvent.Type, native_xy, buttons) -> None:
    """A mouse event at a native pixel position (sub-pixel, as a tablet or a HiDPI screen
    gives them), delivered to the view like a real one."""
    pos = view.native_to_widget().map(QPointF(float(native_xy[0]), float(native_xy[1])))
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    event = QMouseEvent(kind, pos, view.mapToGlobal(pos), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, event)


def click(view, xy) -> None:
    _mouse(view, QEvent.Type.MouseButtonPress, xy, Qt.MouseButton.LeftButton)
    _mouse(view, QEvent.Type.MouseButtonRelease, xy, Qt.MouseButton.NoButton)


def drag(view, start, end, steps: int = 4) -> None:
    _mouse(view, QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton)
    for k in range(1, steps + 1):
        _mouse(view, QEvent.Type.MouseMove, np.asarray(start) + (np.asarray(end) - start) * k
               / steps, Qt.MouseButton.LeftButton)
    _mouse(view, QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def truth_2d(window, t: int) -> np.ndarray:
    seq = window.state.sequence
    return np.stack([c.calibration.project(seq.joints3d[t]) for c in seq.cameras])


def stored(window):
    seq, state = window.state.sequence, window.state
    return state.label_store.get(seq.name, state.frame)


def test_clicks_in_two_views_give_every_joint_within_5mm(window):
    panel, state = window.labelling, window.state
    state.set_frame(3)
    gt2d, truth = truth_2d(window, 3), state.sequence.joints3d[3]
    views = panel.grid.views
    for j in range(len(JOINT_NAMES)):
        panel.set_joint(j)
        click(views[0], gt2d[0, j])
        click(views[1], gt2d[1, j])
    label = stored(window)
    assert np.linalg.norm(label.joints3d - truth, axis=-1).max() < 5.0
    assert (label.visibility[:2] == VISIBLE).all() and (label.visibility[2:] == 0).all()
    assert state.label_store.revision == 2 * len(JOINT_NAMES)
    assert panel.table.item(5, 3).text() == "ok"
    # every view shows the reprojection, also the two without clicks
    assert np.isfinite(views[3].reprojected).all()
    np.testing.assert_allclose(views[3].reprojected, gt2d[3], atol=0.1)


def test_a_displaced_click_in_one_of_four_views_is_the_outlier(window):
    panel, state = window.labelling, window.state
    gt2d = truth_2d(window, 2)
    state.set_frame(2)
    panel.set_joint(12)
    for v, view in enumerate(panel.grid.views):
        click(view, gt2d[v, 12] + ([24.0, -18.0] if v == 2 else 0.0))
    label = stored(window)
    np.testing.assert_allclose(label.joints3d[12], state.sequence.joints3d[2, 12], atol=1.0)
    assert label.error2d[2, 12] == pytest.approx(30.0, abs=0.5)
    assert [v.outliers[12] for v in panel.grid.views] == [False, False, True, False]
    assert panel.table.item(12, 3).text() == "outlier cam_c"


def test_dragging_updates_the_reprojection_live_and_stores_once(window):
    panel, state = window.labelling, window.state
    gt2d = truth_2d(window, 0)
    views = panel.grid.views
    panel.set_joint(13)
    click(views[0], gt2d[0, 13] + 30)
    click(views[1], gt2d[1, 13])
    revision = state.label_store.revision
    _mouse(views[0], QEvent.Type.MouseButtonPress, gt2d[0, 13] + 30, Qt.MouseButton.LeftButton)
    _mouse(views[0], QEvent.Type.MouseMove, gt2d[0, 13] + 1, Qt.MouseButton.LeftButton)
    QApplication.processEvents()  # the step is applied once the queued events are handled
    assert panel.preview is not None and state.label_store.revision == revision  # not stored
    np.testing.assert_allclose(views[2].reprojected[13], gt2d[2, 13], atol=3.0)  # live
    _mouse(views[0], QEvent.Type.MouseButtonRelease, gt2d[0, 13], Qt.MouseButton.NoButton)
    assert state.label_store.revision == revision + 1 and panel.preview is None
    np.testing.assert_allclose(stored(window).points2d[0, 13], gt2d[0, 13], atol=1e-9)


def snapshot(store) -> dict:
    return {(lab.sequence, lab.frame): lab for lab in store.labels()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].same_content(b[k]) for k in a)


def test_undo_and_redo_restore_exact_states_across_20_mixed_edits(window):
    panel, state = window.labelling, window.state
    store, stack = state.label_store, window.session.undo_stack
    views = panel.grid.views
    rng = np.random.default_rng(3)
    states = {0: snapshot(store)}  # the store after each stack index

    def record(index: int) -> None:
        states[index] = snapshot(store)

    stack.indexChanged.connect(record)
    kinds = ["click", "drag", "occlude", "clear_view", "accept", "clear"]
    done: set[str] = set()
    step = 0
    while stack.count() < 20:
        t = int(rng.integers(0, 3))
        state.set_frame(t)  # edits spread over frames; undo must follow them
        gt2d = truth_2d(window, t)
        j, v = int(rng.integers(0, 17)), int(rng.integers(0, 4))
        panel.set_joint(j)
        kind = kinds[step % len(kinds)]
        step += 1
        count = stack.count()
        if kind == "click":
            click(views[v], gt2d[v, j] + rng.normal(0, 2, 2))
        elif kind == "drag":
            drag(views[v], gt2d[v, j] + 20, gt2d[v, j])
        elif kind in ("occlude", "clear_view"):
            state.select_camera(v)
            panel.actions["occluded" if kind == "occlude" else "clear_view"].trigger()
        elif kind == "accept":
            for w in (0, 1):
                click(views[w], gt2d[w, j])
            panel.actions["accept"].trigger()
        else:
            panel.actions["clear"].trigger()
        if stack.count() > count:
            done.add(kind)
    stack.indexChanged.disconnect(record)
    n = stack.count()
    assert done >= {"click", "drag", "occlude", "accept", "clear"}
    assert same(snapshot(store), states[n])
    for i in range(n, 0, -1):  # undo all the way back: every state exactly, on its frame
        command = stack.command(i - 1)
        stack.undo()
        assert same(snapshot(store), states[i - 1]), f"undo to index {i - 1}"
        assert (state.sequence.name, state.frame) == (command.sequence, command.frame)
    assert states[0] == {} and len(store) == 0
    for i in range(1, n + 1):  # and redo all the way forward
        stack.redo()
        assert same(snapshot(store), states[i]), f"redo to index {i}"


def test_occluded_views_are_kept_and_not_triangulated(window):
    panel, state = window.labelling, window.state
    gt2d = truth_2d(window, 1)
    state.set_frame(1)
    panel.set_joint(4)
    views = panel.grid.views
    click(views[0], gt2d[0, 4])
    state.select_camera(1)
    panel.actions["occluded"].trigger()
    label = stored(window)
    assert label.visibility[1, 4] == OCCLUDED and np.isnan(label.joints3d[4]).all()
    click(views[2], gt2d[2, 4])
    assert np.linalg.norm(stored(window).joints3d[4] - state.sequence.joints3d[1, 4]) < 1.0
    assert "+1 occl." in panel.table.item(4, 1).text()


def test_the_3d_label_shows_in_the_3d_view(qtbot, project):
    window = open_window(qtbot, project, with_3d=True)
    panel = window.labelling
    gt2d = truth_2d(window, 0)
    panel.set_joint(10)
    click(panel.grid.views[0], gt2d[0, 10])
    click(panel.grid.views[2], gt2d[2, 10])
    window.view3d.render_image()
    scene = scene3d(window.view3d)
    assert scene.label_joints.visible
    shown = scene.label_points
    np.testing.assert_allclose(shown[10], window.state.sequence.joints3d[0, 10], atol=1.0)
    assert np.isnan(np.delete(shown, 10, axis=0)).all()
    window.close()


def test_a_second_window_gets_the_labels_read_only(qtbot, window, project):
    second = open_window(qtbot, project)
    store = second.state.label_store
    assert store.read_only and "open for writing" in store.read_only_reason
    assert "labels read-only" in second.state.status["notice"]
    assert not second.labelling.editable
    click(second.labelling.grid.views[0], (100.0, 100.0))
    assert store.revision == 0 and len(window.state.label_store) == 0
    second.close()


def test_uncalibrated_recording_keeps_2d_and_waits_for_3d(qtbot, tmp_path):
    folder = make_recording(tmp_path / "plain", frames=4, calibrated=False, cameras=CAMS[:2])
    create_project(folder, folder)
    window = open_window(qtbot, folder)
    panel = window.labelling
    assert not panel.actions["accept"].isEnabled()
    panel.set_joint(0)
    click(panel.grid.views[0], (100.0, 120.0))
    click(panel.grid.views[1], (80.0, 200.0))
    label = stored(window)
    assert (label.visibility[:, 0] == VISIBLE).all() and np.isnan(label.joints3d).all()
    assert "waits for calibration" in panel.table.item(0, 3).text()
    assert "Not calibrated" in panel.header.text()
    window.close()


def test_the_trainer_trains_from_labels_made_in_the_window(qtbot, tmp_path):
    from mcss_studio.core.runlog import read_events
    from mcss_studio.core.synth import generate
    from trainer.cli import main as train_main

    torch.set_num_threads(1)
    data = generate(tmp_path / "data", preset="tiny", seed=0)
    create_project(data, data)
    window = open_window(qtbot, data)
    panel, state = window.labelling, window.state
    for t in (0, 6):
        state.set_frame(t)
        gt2d = truth_2d(window, t)
        for j in range(len(JOINT_NAMES)):
            panel.set_joint(j)
            click(panel.grid.views[0], gt2d[0, j])
            click(panel.grid.views[1], gt2d[1, j])
        panel.actions["accept"].trigger()
    revision = state.label_store.revision
    assert len(state.label_store) == 2 and all(lab.has_3d for lab in state.label_store.labels())
    events = tmp_path / "events.jsonl"
    code = train_main(["fit", "--data", str(data), "--labels", str(data), "--crop-size", "32",
                       "--width", "8", "--embedding-dim", "16", "--pose-hidden", "32",
                       "--orientation-hidden", "16", "--steps", "2", "--tau", "3",
                       "--instants-per-sequence", "4", "--labelled-batch", "4",
                       "--run-dir", str(tmp_path / "runs"), "--run-id", "x", "--events",
                       str(events), "--cache-dir", str(tmp_path / "cache"),
                       "--progress", "off"])  # while the window holds the store
    assert code == 0
    start = read_events(events)[0]
    assert start["label_store"]["revision"] == revision and start["labelled_frames"] == 2
    window.close()
    with LabelStore.open(data, read_only=True) as store:
        assert store.revision == revision


KILL_CHILD = """
import sys
from pathlib import Path
from PySide6.QtWidgets import QApplication
from mcss_studio.gui.session import Session
from mcss_studio.gui.labelling import LabellingPanel
app = QApplication([])
session = Session(remember_recent=False)
assert session.open_path(Path(sys.argv[1])), session.state.last_error
panel = LabellingPanel(session)
state, store = session.state, session.state.label_store
start = store.revision
print("ready", flush=True)
for i in range(start, start + 100000):
    state.set_frame(i % 4)
    view, joint = i % 4, (i // 4) % 17
    panel._dropped(view, joint, float(i), float(-i))  # what a drop in a view calls
    assert store.revision == i + 1
    print(i, flush=True)
"""


def test_a_studio_killed_while_labelling_keeps_every_committed_label(project):
    """The Session and the labelling panel in a child process, each drop one command on the
    undo stack; killed with SIGKILL at random moments: every drop it reported stored is in the
    store that reopens (the store-level test repeats this 20 times, faster)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "QT_QPA_PLATFORM": "offscreen"}
    rng = np.random.default_rng(11)
    expected: dict[tuple[int, int, int], float] = {}
    for _trial in range(6):
        child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(project)], env=env,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        wanted, done = int(rng.integers(1, 30)), []
        for line in child.stdout:
            done.append(int(line))
            if len(done) >= wanted:
                break
        time.sleep(float(rng.uniform(0, 0.02)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        for i in done:
            expected[(i % 4, (i // 4) % 17, i % 4)] = float(i)
        with LabelStore.open(project, read_only=True) as store:
            for (frame, joint, view), x in expected.items():
                label = store.get("rec", frame)
                assert label is not None and label.points2d[view, joint, 0] >= x
                got = label.points2d[view, joint]
                assert got[1] == -got[0] and label.visibility[view, joint] == VISIBLE
                expected[(frame, joint, view)] = float(got[0])


def test_start_from_the_model_prediction_is_one_undoable_edit(window):
    from mcss_studio.core.labels import SOURCES
    from mcss_studio.core.pipeline import Prediction

    panel, state = window.labelling, window.state
    state.set_frame(2)
    truth = state.sequence.joints3d[2]
    gt2d = truth_2d(window, 2)
    panel.set_joint(6)
    click(panel.grid.views[1], gt2d[1, 6] + 4.0)  # the user's own click stays
    state.set_prediction(Prediction(frame=2, pose_cam=np.zeros((4, 17, 3)), pose_world=truth,
                                    points2d=gt2d + 2.0))
    assert panel.actions["prediction"].isEnabled()
    panel.actions["prediction"].trigger()
    label = stored(window)
    assert label.source2d[0, 0] == SOURCES.index("model")
    np.testing.assert_allclose(label.points2d[0, 0], gt2d[0, 0] + 2.0)
    np.testing.assert_allclose(label.points2d[1, 6], gt2d[1, 6] + 4.0)
    assert label.source2d[1, 6] == SOURCES.index("clicked")
    np.testing.assert_allclose(label.joints3d[0], truth[0])
    window.session.undo_stack.undo()
    assert stored(window).visibility.sum() == 1  # back to the one click
    state.set_prediction(Prediction(frame=1, pose_cam=np.zeros((4, 17, 3)), pose_world=None,
                                    points2d=gt2d))
    assert not panel.actions["prediction"].isEnabled()  # another frame's prediction


def test_a_damaged_store_is_reported_and_left_alone_labelling_off(qtbot, project):
    path = project / "labels.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    before = path.read_bytes()
    window = MainWindow(interactive=False, with_3d=False, remember_recent=False)
    qtbot.addWidget(window)
    assert window.open_path(project)  # the recording opens; only the labels do not
    assert "labels.sqlite" in window.state.last_error
    assert window.state.label_store is None and path.read_bytes() == before
    assert "labels: not opened" in window.state.status["notice"]
    window.set_labelling(True)
    assert "could not be opened" in window.labelling.header.text()
    window.close()


def test_a_refused_write_is_reported_and_never_on_the_undo_stack(window, monkeypatch):
    from mcss_studio.core.errors import UserInputError

    panel, state = window.labelling, window.state
    store, stack = state.label_store, window.session.undo_stack
    gt2d = truth_2d(window, 0)
    click(panel.grid.views[0], gt2d[0, 0])
    assert stack.count() == 1

    def full_disk(label):
        raise UserInputError(store.path, "cannot save the label: the disk is full; free space")

    monkeypatch.setattr(store, "put", full_disk)
    click(panel.grid.views[1], gt2d[1, 0])
    assert "disk is full" in state.last_error
    assert stack.count() == 1 and store.get("rec", 0).visibility[1, 0] == 0
    assert panel.label.visibility[1, 0] == 0  # the panel shows what is stored, not the attempt


def test_the_shortcuts_help_lists_every_labelling_key(window):
    from mcss_studio.gui.dialogs import SHORTCUTS

    listed = [k.split(": ", 1)[1].split(" / ") for k, _ in SHORTCUTS if k.startswith("Labelling")]
    keys = {key for group in listed for key in group}
    for action in window.labelling.actions.values():
        assert action.shortcut().toString() in keys, action.text()
    assert window.labelling_action.shortcut().toString() == "Ctrl+L"


# -- a drag repaints only the dragged joint's marks: what stays on screen must be exactly what a
# full repaint of the same state draws (no stale or missing marks)
def on_screen(view) -> np.ndarray:
    """The view's pixels as the X server shows them (what the partial repaints left there)."""
    top_left = view.mapToGlobal(view.rect().topLeft())
    shot = view.screen().grabWindow(0, top_left.x(), top_left.y(), view.width(), view.height())
    return image_array(shot.toImage())


def rendered(view) -> np.ndarray:
    """The view painted whole, afresh, from its current state."""
    return image_array(view.grab().toImage())


def image_array(image) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    raw = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    rows = raw.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 4]
    return rows.reshape(image.height(), image.width(), 4).copy()  # (h, w, BGRX)


def settle() -> None:
    for _ in range(5):
        QApplication.processEvents()


@pytest.fixture(scope="module")
def twelve_camera_template(tmp_path_factory):
    cams = tuple((f"cam{c}", 160, 120) for c in range(12))
    return make_recording(tmp_path_factory.mktemp("lab12") / "rec", frames=2, cameras=cams)


@pytest.mark.parametrize("rig", ["4 cameras, joint in 3 views", "12 cameras, joint in 2 views"])
def test_a_drag_leaves_on_screen_what_a_full_repaint_draws(qtbot, tmp_path, request, rig):
    """Every step of the drag repaints only the dragged joint's marks in each view it changed.
    Four cameras, the joint in three views, one of them 25 px off (the outlier while the drag
    lasts: one view changes); twelve cameras, the joint in two views (each step moves the 3D
    point: all twelve change)."""
    if rig.startswith("4"):
        folder, labelled, off = request.getfixturevalue("project"), 3, (2, 13)
    else:
        folder, labelled, off = tmp_path / "rec12", 2, None
        shutil.copytree(request.getfixturevalue("twelve_camera_template"), folder)
        create_project(folder, folder)
    window = open_window(qtbot, folder)
    panel = window.labelling
    views = panel.grid.views
    gt2d = truth_2d(window, 0)
    for j in (11, 12, 13):  # a chain of bones in the labelled views; the others show crosses
        panel.set_joint(j)
        for v, view in enumerate(views[:labelled]):
            click(view, gt2d[v, j] + (25.0 if (v, j) == off else 0.0))
    panel.set_joint(13)
    settle()
    rows_before = [panel.table.item(13, col).text() for col in range(4)]
    history_before = window.session.undo_stack.count()
    start = gt2d[0, 13]
    _mouse(views[0], QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton)
    settle()
    counts = [v.paint_count for v in views]
    for k in (1, 2, 3, 4, 3, 2, 1):  # out and back, in steps longer than the marks are wide
        _mouse(views[0], QEvent.Type.MouseMove, start + np.array([18.0, -12.0]) * k,
               Qt.MouseButton.LeftButton)
        settle()
        if labelled == 2:  # the 3D point moved: its reprojection moved in every view
            assert panel.repainting == list(range(len(views)))
    assert all(v.paint_count > n for v, n in zip(views, counts))  # every view followed
    for view in views:
        shown, full = on_screen(view), rendered(view)
        differs = np.abs(shown.astype(int) - full.astype(int)).max(axis=-1) > 8  # per pixel
        assert not differs.any(), (view.name, int(differs.sum()))
    # the list and the history change only at the drop
    assert [panel.table.item(13, col).text() for col in range(4)] == rows_before
    assert window.session.undo_stack.count() == history_before
    _mouse(views[0], QEvent.Type.MouseButtonRelease, start + [18.0, -12.0],
           Qt.MouseButton.NoButton)
    assert window.session.undo_stack.count() == history_before + 1
    window.close()
