"""Box correction in the Studio: a drag in a view writes the box file, undo and redo restore
exact arrays, a correction spreads over neighbouring frames and (calibrated) to the other
views, the crop cache follows, a read-only folder is a one-line dialog, the screenshot panel."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from mcss_studio.core.box_edits import blend_weights, load_keyframes, transfer_to_views
from mcss_studio.core.boxes import load_boxes_file
from mcss_studio.core.cache import crop_square, crop_squares
from mcss_studio.gui.screenshot import render_panel
from tests.gui_fixtures import make_recording
from tests.readonly import read_only
from tests.test_labelling_gui import drag, open_window

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]
WAIT_MS = 60000  # generous: the machine is shared; nothing here measures time
CAMS = (("cam_a", 320, 240), ("cam_b", 240, 320), ("cam_c", 320, 240), ("cam_d", 320, 240))
NAMES = [c[0] for c in CAMS]
T, FRAME, SPREAD = 12, 5, 3


@pytest.fixture(scope="module")
def recording_template(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("boxes") / "rec", frames=T, cameras=CAMS)


@pytest.fixture
def recording(tmp_path, recording_template):
    folder = tmp_path / "rec"
    shutil.copytree(recording_template, folder)
    return folder


@pytest.fixture
def window(qtbot, recording):
    w = open_window(qtbot, recording, labelling=False)
    w.state.set_frame(FRAME)
    w.state.set_box_spread(SPREAD)
    w.box_edit_action.trigger()  # View > Edit person boxes
    QApplication.processEvents()
    yield w
    w.close()


def shown_boxes(window) -> np.ndarray:
    media = window.state.media
    return np.stack([media.person_boxes(t) for t in range(T)], axis=1)


def drag_right_edge(window, cam: int, dx: float) -> np.ndarray:
    """Drag the right edge of view `cam`'s box by dx native px; the box before."""
    view = window.grid.views[cam]
    box = view.box.copy()
    mid = (box[1] + box[3]) / 2
    drag(view, (box[2], mid), (box[2] + dx, mid))
    QApplication.processEvents()
    return box


def test_the_player_shows_boxes_and_editing_turns_them_on(window) -> None:
    assert window.state.box_editing and window.box_bar.isVisible()
    assert window.state.overlays["box"] and window.overlay_actions["box"].isChecked()
    view = window.grid.views[0]
    np.testing.assert_array_equal(view.box, window.state.media.person_boxes(FRAME)[0])
    window.state.set_box_other_views(True)  # options set elsewhere show in the bar
    window.state.set_box_spread(7)
    assert window.box_bar.views_check.isChecked() and window.box_bar.spread_box.value() == 7
    window.set_labelling(True)  # the labelling views take the mouse: box editing ends
    assert not window.state.box_editing and not window.remove_box_action.isEnabled()
    assert not window.box_edit_action.isChecked() and not window.box_bar.isVisible()


def test_dragging_an_edge_writes_the_box_file_and_spreads_in_time(window, recording) -> None:
    before = shown_boxes(window)
    assert not (recording / "boxes.npz").exists()  # ground truth boxes until now
    box = drag_right_edge(window, 0, 20.0)
    saved = load_boxes_file(recording / "boxes.npz", NAMES, T)
    expected = before.copy()
    w = blend_weights(FRAME, np.zeros(T, bool), SPREAD)  # 1/4, 2/4, 3/4, 1, 3/4, ...
    expected[0, :, 2] += 20.0 * w
    np.testing.assert_allclose(saved, expected, atol=1e-9)
    np.testing.assert_allclose(saved[0, FRAME], box + (0, 0, 20, 0), atol=1e-9)
    np.testing.assert_allclose(saved[0, FRAME + 2, 2], before[0, FRAME + 2, 2] + 10, atol=1e-9)
    np.testing.assert_array_equal(saved[0, FRAME + 4], before[0, FRAME + 4])  # past the spread
    np.testing.assert_array_equal(saved[1:], before[1:])  # "other views" is off
    keyed = load_keyframes(recording / "boxes.npz", NAMES, T)
    assert np.argwhere(keyed).tolist() == [[0, FRAME]]
    np.testing.assert_array_equal(shown_boxes(window), saved)  # the views show the file
    assert window.state.box_keyed(0, FRAME) and not window.state.box_keyed(0, FRAME + 1)


def test_undo_and_redo_restore_exact_arrays(window, recording) -> None:
    before = shown_boxes(window)
    drag_right_edge(window, 0, 20.0)
    window.state.set_frame(FRAME + 1)
    view = window.grid.views[2]
    b = view.box.copy()
    drag(view, ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), ((b[0] + b[2]) / 2 + 7, (b[1] + b[3]) / 2
                                                         - 5))  # move the whole box
    after = load_boxes_file(recording / "boxes.npz", NAMES, T)
    np.testing.assert_allclose(after[2, FRAME + 1], b + (7, -5, 7, -5), atol=1e-9)
    stack = window.session.undo_stack
    assert stack.count() == 2
    window.undo_action.trigger()
    window.undo_action.trigger()
    assert window.state.frame == FRAME  # sent to the frame the undone edit changed
    np.testing.assert_array_equal(load_boxes_file(recording / "boxes.npz", NAMES, T), before)
    np.testing.assert_array_equal(shown_boxes(window), before)
    assert not load_keyframes(recording / "boxes.npz", NAMES, T).any()
    window.redo_action.trigger()
    window.redo_action.trigger()
    np.testing.assert_array_equal(load_boxes_file(recording / "boxes.npz", NAMES, T), after)
    np.testing.assert_array_equal(shown_boxes(window), after)


def test_a_correction_moves_the_other_views_when_calibrated(window, recording) -> None:
    window.box_bar.views_check.setChecked(True)
    before = shown_boxes(window)
    box = drag_right_edge(window, 0, 30.0)
    saved = load_boxes_file(recording / "boxes.npz", NAMES, T)
    new = box + (0, 0, 30, 0)
    seq = window.state.sequence
    cals = [c.calibration for c in seq.cameras]
    sizes = [(c.width, c.height) for c in seq.cameras]
    others = before[:, FRAME].copy()
    others[0] = new
    np.testing.assert_allclose(saved[1:, FRAME],
                               transfer_to_views(0, new, others, cals, sizes)[1:], atol=1e-9)
    # the person volume a box around the person triangulates covers the person in every view
    joints = seq.joints3d[FRAME]
    for c in range(1, len(CAMS)):
        uv = cals[c].project(joints)
        assert (uv >= saved[c, FRAME, :2] - 1).all() and (uv <= saved[c, FRAME, 2:] + 1).all()
        assert not np.array_equal(saved[c, FRAME], before[c, FRAME])
    keyed = load_keyframes(recording / "boxes.npz", NAMES, T)
    assert np.argwhere(keyed).tolist() == [[c, FRAME] for c in range(len(CAMS))]
    # and each view spread its own offset in time: half of it two frames away (spread 3)
    offset = saved[1, FRAME] - before[1, FRAME]
    np.testing.assert_allclose(saved[1, FRAME + 2], before[1, FRAME + 2] + offset / 2,
                               atol=1e-9)


def test_the_crop_cache_is_recut_with_the_corrected_box(qtbot, window, recording) -> None:
    media = window.state.media
    size, margin = window.session.crop_contract
    drag_right_edge(window, 0, 20.0)
    qtbot.waitUntil(lambda: not window.session.cache_busy
                    and window.state.media.crops_current(size, margin), timeout=WAIT_MS)
    media = window.state.media
    boxes = load_boxes_file(recording / "boxes.npz", NAMES, T)
    squares = crop_squares(boxes, margin, [(w, h) for _, w, h in CAMS], size)
    np.testing.assert_array_equal(media.crop_cache.boxes, squares)
    np.testing.assert_array_equal(media.crop_cache.get(0, FRAME),
                                  crop_square(media.full_frame(0, FRAME), squares[0, FRAME], size))


def test_a_read_only_folder_is_a_one_line_dialog(window, recording) -> None:
    before = shown_boxes(window)
    with read_only(recording):
        drag_right_edge(window, 0, 20.0)
    message = window.state.last_error
    assert message is not None and len(message.splitlines()) == 1
    assert "boxes.npz" in message and len(window.error_boxes) == 1
    assert window.session.undo_stack.count() == 0  # no edit claimed that is not on disk
    assert not (recording / "boxes.npz").exists()
    np.testing.assert_array_equal(shown_boxes(window), before)
    np.testing.assert_array_equal(window.grid.views[0].box, before[0, FRAME])


def test_drawing_outside_makes_a_new_box_and_delete_removes_it(window, recording) -> None:
    view = window.grid.views[1]
    drag(view, (10, 12), (70, 150))
    saved = load_boxes_file(recording / "boxes.npz", NAMES, T)
    np.testing.assert_allclose(saved[1, FRAME], (10, 12, 70, 150), atol=1e-9)
    window.state.select_camera(1)
    window.remove_box_action.trigger()
    saved = load_boxes_file(recording / "boxes.npz", NAMES, T)
    assert np.isnan(saved[1, FRAME]).all() and window.grid.views[1].box is not None
    assert np.isnan(window.grid.views[1].box).all()


def test_the_boxes_screenshot_panel_shows_a_drag(window) -> None:
    window.state.set_box_editing(False)
    image = render_panel(window, "boxes")
    assert image.width() == window.width() and window.state.box_editing
    view = window.grid.views[window.state.selected_camera]
    assert view.box_drag is not None and view.box_drag.box[1] < view.box[1]


def test_a_correction_during_a_cache_build_is_recut_after_it(qtbot, window, recording,
                                                             monkeypatch) -> None:
    """The first correction's build is held open after cutting; a second correction comes
    while it is busy; when the build ends, its crops are stale and another build follows."""
    import threading

    from mcss_studio.core.media import MediaAccess

    cut, release = threading.Event(), threading.Event()
    real = MediaAccess.build_caches

    def held(self, *args, **kwargs):
        real(self, *args, **kwargs)
        cut.set()
        release.wait(WAIT_MS / 1000)

    monkeypatch.setattr(MediaAccess, "build_caches", held)
    size, margin = window.session.crop_contract
    drag_right_edge(window, 0, 20.0)
    qtbot.waitUntil(cut.is_set, timeout=WAIT_MS)
    assert window.session.cache_busy
    drag_right_edge(window, 1, -15.0)  # while the first build is still running
    release.set()
    qtbot.waitUntil(lambda: not window.session.cache_busy
                    and window.state.media.crops_current(size, margin), timeout=WAIT_MS)
    boxes = load_boxes_file(recording / "boxes.npz", NAMES, T)
    squares = crop_squares(boxes, margin, [(w, h) for _, w, h in CAMS], size)
    np.testing.assert_array_equal(window.state.media.crop_cache.boxes, squares)


def test_what_a_press_grabs_and_how_the_box_follows() -> None:
    from PySide6.QtCore import QPointF, QRectF

    from mcss_studio.gui.box_editor import MOVE_ALL, BoxDrag

    box = np.array([10.0, 10, 110, 210])
    rect = QRectF(10, 10, 100, 200)  # shown 1:1
    grabs = {(10, 10): (0, 1), (110, 210): (2, 3), (13, 208): (0, 3), (60, 10): (1,),
             (60, 215): (3,), (4, 100): (0,), (60, 100): MOVE_ALL, (200, 200): (),
             (60, 230): (), (200, 210): (), (5, 300): ()}
    for (x, y), moves in grabs.items():
        assert BoxDrag.grab(box, rect, QPointF(x, y)) == moves, (x, y)
    corner = BoxDrag(box, (2, 3), QPointF(110, 210))
    np.testing.assert_array_equal(corner.move_to(QPointF(130, 190)), [10, 10, 130, 190])
    assert np.array_equal(corner.result(1.0), [10, 10, 130, 190])
    drawn = BoxDrag(box, (), QPointF(150, 40))
    np.testing.assert_array_equal(drawn.move_to(QPointF(120, 90)), [120, 40, 150, 90])
    assert drawn.result(1.0) is not None and drawn.result(0.1) is None  # 3 px on screen
    still = BoxDrag(box, MOVE_ALL, QPointF(60, 100))
    still.move_to(QPointF(60, 100))
    assert still.result(1.0) is None  # a click, not an edit


def test_undo_after_switching_sequences_goes_back_and_restores_that_file(
        qtbot, tmp_path, recording_template) -> None:
    import json

    data = tmp_path / "data"
    for name in ("A", "B"):
        shutil.copytree(recording_template, data / name)
    (data / "manifest.json").write_text(json.dumps({
        "format": "mcss-multiview-dataset", "version": 1,
        "sequences": [{"name": n, "path": n} for n in ("A", "B")], "splits": {}}))
    w = open_window(qtbot, data, labelling=False)
    try:
        w.state.set_frame(FRAME)
        w.state.set_box_editing(True)
        QApplication.processEvents()
        before = shown_boxes(w)
        drag_right_edge(w, 0, 20.0)
        edited = load_boxes_file(data / "A" / "boxes.npz", NAMES, T)
        assert w.session.choose_sequence("B") and w.state.sequence.name == "B"
        np.testing.assert_array_equal(shown_boxes(w), before)  # B has its own boxes
        w.undo_action.trigger()
        assert w.state.sequence.name == "A" and w.state.frame == FRAME
        np.testing.assert_array_equal(load_boxes_file(data / "A" / "boxes.npz", NAMES, T),
                                      before)
        np.testing.assert_array_equal(shown_boxes(w), before)
        w.redo_action.trigger()
        np.testing.assert_array_equal(shown_boxes(w), edited)
        assert not (data / "B" / "boxes.npz").exists()
        seen = []  # while B is being shown, A's track is still the state's: never B's keyframes
        w.state.sequenceChanged.connect(lambda _s: seen.append(w.state.box_keyed(0, FRAME)))
        assert w.session.choose_sequence("B") and not w.state.box_keyed(0, FRAME)
        assert seen == [False]
        assert w.session.choose_sequence("A") and w.state.box_keyed(0, FRAME)  # kept
    finally:
        w.close()
