"""Issue 15, items 9-10 under Xvfb: the 3D view frames the rig (F: the person), joint names
never overlap, panning keeps the image, the empty window says how to open something, the
shortcuts dialog shows every text whole, cancelling the demo is no error."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QProgressDialog, QPushButton

from mcss_studio.core.joints import JOINT_NAMES
from mcss_studio.gui.dialogs import SHORTCUTS
from mcss_studio.gui.player.camera_view import CameraView
from mcss_studio.gui.state import Prediction
from tests.gui_fixtures import CAMERAS, make_recording, scene3d, stick_figure
from tests.test_gui_window import WAIT_MS, open_ready, window  # noqa: F401

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]
FOUR_CAMERAS = (*CAMERAS, ("cam_d", 128, 96))


def overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def on_canvas(view3d, points: np.ndarray) -> np.ndarray:
    """Which world points the 3D view's camera shows inside its canvas."""
    view3d.render_image()
    scene = scene3d(view3d)
    mapped = scene.frusta.get_transform("visual", "canvas").map(points)
    xy = mapped[:, :2] / mapped[:, 3:4]
    w, h = scene.canvas.size
    return (mapped[:, 3] > 0) & np.all((xy >= 0) & (xy <= [w, h]), axis=1)


def shortcut_action(window, key: str):  # noqa: F811
    return next(a for a in window.actions() if a.shortcut().toString() == key)


def test_3d_view_frames_the_whole_rig_and_f_switches_to_the_person(qtbot, window,  # noqa: F811
                                                                   tmp_path):
    rec = make_recording(tmp_path / "four", frames=8, cameras=FOUR_CAMERAS)
    open_ready(qtbot, window, rec)
    view, seq = window.view3d, window.state.sequence
    cals = [c.calibration for c in seq.cameras]
    centres = np.stack([c.center for c in cals])
    from mcss_studio.core.scene3d import camera_frustum

    frusta = np.concatenate([camera_frustum(c) for c in cals])
    joints = np.asarray(seq.joints3d).reshape(-1, 3)
    assert window.state.framing == "rig"
    assert on_canvas(view, centres).all() and on_canvas(view, frusta).all()
    assert on_canvas(view, joints).all()

    def person_height_px() -> float:
        mapped = scene3d(view).frusta.get_transform("visual", "canvas").map(joints)
        return float(np.ptp(mapped[:, 1] / mapped[:, 3]))

    rig_height = person_height_px()
    window.state.set_frame(5)
    shortcut_action(window, "F").trigger()
    assert window.state.framing == "person"
    now = np.asarray(seq.joints3d[5])  # the close-up is of the person at the shown frame
    assert on_canvas(view, now).all()
    camera = scene3d(view).view.camera
    assert np.allclose(camera.center, (now.min(0) + now.max(0)) / 2)
    assert not on_canvas(view, centres).all()  # the cameras are out of the close-up
    assert person_height_px() > 2 * rig_height
    # R (through the state) refits the 3D camera, keeping the chosen framing, and the zoom of
    # every camera view
    fitted = camera.distance
    view.scene_call(lambda scene: setattr(scene.view.camera, "distance", 20 * fitted))
    zoomed = window.grid.views[0]
    zoomed.zoom_at(QPointF(zoomed.width() / 2, zoomed.height() / 2), 2.0)
    resets: list[bool] = []
    window.state.viewsResetRequested.connect(lambda: resets.append(True))
    shortcut_action(window, "R").trigger()
    assert resets == [True] and zoomed.zoom == 1.0
    assert window.state.framing == "person" and on_canvas(view, now).all()
    assert scene3d(view).view.camera.distance == pytest.approx(fitted)
    framings: list[str] = []
    window.state.framingChanged.connect(framings.append)
    shortcut_action(window, "F").trigger()
    assert framings == ["rig"] and on_canvas(view, centres).all()
    assert "F" in [k for k, _ in SHORTCUTS]


def test_3d_joint_names_do_not_overlap(qtbot, window, tmp_path):  # noqa: F811
    rec = make_recording(tmp_path / "four", frames=4, cameras=FOUR_CAMERAS)
    open_ready(qtbot, window, rec)
    seq, view = window.state.sequence, window.view3d
    pose = np.asarray(seq.joints3d[0], dtype=np.float64)
    window.state.set_prediction(Prediction(0, np.zeros((4, 17, 3)), pose, np.zeros((4, 17, 2))))
    window.state.set_overlay("names", True)
    for framing in ("rig", "person"):
        window.state.set_framing(framing)
        view.render_image()
        scene = scene3d(view)
        placed = [r for r in scene.label_rects if r is not None]
        assert scene.joint_labels.visible and len(scene.joint_labels.text) == len(placed) > 0
        assert all(not overlap(a, b) for a, b in itertools.combinations(placed, 2)), framing
    assert len(placed) == len(JOINT_NAMES)  # close up, every name fits


def skeleton_view(qtbot, scale: float) -> CameraView:
    view = CameraView(0, "cam", (600, 600))
    qtbot.addWidget(view)
    view.resize(600, 600)
    pose = stick_figure(0)
    points = np.stack([300 + scale * pose[:, 0], 580 - scale * pose[:, 2]], axis=1)
    view.set_overlays(None, points, None, True)
    view.show()
    qtbot.waitExposed(view)
    view.grab()  # paints, so label_rects holds where the names went
    return view


def test_camera_view_names_never_overlap_and_all_show_when_large(qtbot):
    small, large = skeleton_view(qtbot, 0.04), skeleton_view(qtbot, 0.3)
    for view in (small, large):
        placed = [r for r in view.label_rects if r is not None]
        assert all(not overlap(a, b) for a, b in itertools.combinations(placed, 2))
    n_small = sum(r is not None for r in small.label_rects)
    n_large = sum(r is not None for r in large.label_rects)
    assert 0 < n_small < len(JOINT_NAMES)
    assert n_large > n_small and small.label_rects[JOINT_NAMES.index("head")] is not None


def test_panning_always_keeps_the_image_in_view(qtbot):
    view = CameraView(0, "cam", (160, 120))
    qtbot.addWidget(view)
    view.resize(320, 320)  # taller than the image: letterboxed at zoom 1
    view.show()
    qtbot.waitExposed(view)

    def shown() -> QRectF:
        return view.native_to_widget().mapRect(QRectF(0, 0, 160, 120))

    def send(kind, pos: QPointF) -> None:
        left = Qt.MouseButton.LeftButton
        event = QMouseEvent(kind, pos, view.mapToGlobal(pos), left, left,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(view, event)

    def drag(dx: float, dy: float) -> None:
        start = QPointF(160, 160)
        send(QEvent.Type.MouseButtonPress, start)
        for i in range(1, 21):  # a long drag far out of the widget
            send(QEvent.Type.MouseMove, start + QPointF(dx * i, dy * i))
        send(QEvent.Type.MouseButtonRelease, start + QPointF(dx * 20, dy * 20))

    drag(500, 500)  # zoom 1: nothing to pan
    assert view.pan == QPointF(0, 0)
    view.zoom_at(QPointF(160, 160), 4.0)
    drag(1, 0)
    assert view.pan.x() > 0  # a small drag does pan
    for dx, dy in ((500, 500), (-500, -500), (500, -500)):
        drag(dx, dy)
        img, widget = shown(), QRectF(view.rect())
        assert img.contains(widget), (dx, dy, img)  # the image still fills the view
    view.zoom_at(QPointF(0, 0), 0.5)  # zooming out at a corner re-clamps
    assert shown().contains(QRectF(view.rect()))
    view.resize(1000, 1000)  # a larger view: the image is centred again where it is smaller
    qtbot.waitUntil(lambda: view.width() == 1000)
    img = shown()
    assert img.left() <= 0 and img.right() >= 1000


def test_empty_window_shows_a_centred_hint_until_opening(qtbot, window, tmp_path):  # noqa: F811
    hint = window.empty_hint
    assert hint.isVisible() and hint.geometry() == window.grid.rect()
    text = hint.label.text()
    for words in ("Open folder", "Ctrl+O", "drag and drop", "mcss-studio --demo", "Open demo"):
        assert words in text, words
    centre = hint.label.mapTo(window.grid, hint.label.rect().center())
    grid_centre = window.grid.rect().center()
    assert abs(centre.x() - grid_centre.x()) < 20 and abs(centre.y() - grid_centre.y()) < 60
    open_ready(qtbot, window, make_recording(tmp_path / "rec", frames=4))
    assert not hint.isVisible()


def test_shortcuts_dialog_shows_every_text_whole_without_scrolling(qtbot, window):  # noqa: F811
    dlg = window.show_shortcuts()
    qtbot.waitExposed(dlg)
    table = dlg.table
    assert table.horizontalScrollBar().maximum() == 0
    assert table.verticalScrollBar().maximum() == 0
    metrics = table.fontMetrics()
    for row, col in itertools.product(range(table.rowCount()), range(2)):
        rect = table.visualRect(table.model().index(row, col))
        assert table.viewport().rect().contains(rect), (row, col)
        assert metrics.horizontalAdvance(table.item(row, col).text()) < rect.width(), (row, col)
    dlg.close()


def test_cancelling_demo_generation_shows_no_dialog(qtbot, window, monkeypatch):  # noqa: F811
    import mcss_studio.core.synth as synth

    def slow_generate(out, preset="demo", progress=None, **kw):
        for i in range(4000):  # ends at the first progress call after the cancel
            progress(i, 4000)
            time.sleep(0.005)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(synth, "generate", slow_generate)
    window.open_demo()
    dlg = window.findChild(QProgressDialog)
    qtbot.waitUntil(lambda: dlg.value() > 0, timeout=WAIT_MS)
    qtbot.mouseClick(dlg.findChild(QPushButton), Qt.MouseButton.LeftButton)  # Cancel
    qtbot.waitUntil(lambda: window.session.demo_worker.isFinished(), timeout=WAIT_MS)
    qtbot.wait(50)  # the worker's queued signal
    assert window.error_boxes == [] and window.state.last_error is None
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.state.sequence is None


def test_edit_menu_undoes_and_redoes_the_sessions_commands(qtbot, window):  # noqa: F811
    from mcss_studio.gui.commands import SetValueCommand

    state = window.state
    assert not window.undo_action.isEnabled()
    window.session.execute(SetValueCommand("Faster", lambda: state.speed, state.set_speed, 2.0))
    assert state.speed == 2.0
    assert window.undo_action.isEnabled() and "Faster" in window.undo_action.text()
    window.undo_action.trigger()
    assert state.speed == 1.0 and window.redo_action.isEnabled()
    window.redo_action.trigger()
    assert state.speed == 2.0
