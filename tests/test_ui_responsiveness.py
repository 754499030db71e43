"""What keeps the UI thread free during playback (issue 13's stall), each rule on its own:
the main window holds no OpenGL widget (Qt would composite the whole window through OpenGL on
every repaint), the offscreen 3D view still shows its scene and answers the mouse, and hidden
camera grids and the hidden labelling panel do no work per frame but catch up when shown."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent
from PySide6.QtOpenGLWidgets import QOpenGLWidget
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from mcss_studio.gui.render3d import egl_application
from tests.gui_fixtures import make_recording, scene3d
from tests.test_gui_window import WAIT_MS, open_ready, window  # noqa: F401

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("resp") / "rec", frames=12)


def shown_pixels(view3d) -> np.ndarray:
    image = view3d.surface.image.convertToFormat(QImage.Format.Format_RGB888)
    ptr = image.constBits()
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def test_the_main_window_holds_no_opengl_widget_and_renders_3d_off_its_thread(
        qtbot, window, recording):  # noqa: F811
    open_ready(qtbot, window, recording)
    assert window.view3d is not None
    assert window.findChildren(QOpenGLWidget) == []
    if sys.platform.startswith("linux"):  # scripts/setup.sh installs EGL with OpenGL
        assert egl_application() is not None
        assert window.view3d.threaded
        renders_on = window.view3d.scene_call(lambda _scene: threading.current_thread())
        assert renders_on is not threading.current_thread() and renders_on.is_alive()


def view_3d(qtbot, main_window, threaded: bool):
    """The window's 3D view (on its render thread), or one rendering on the UI thread."""
    if threaded:
        return main_window.view3d
    from mcss_studio.gui.view3d import View3D

    size = main_window.view3d.size()
    main_window.view3d.release()  # a process draws its scenes from one thread (render3d)
    view = View3D(main_window.state, threaded=False)
    qtbot.addWidget(view)
    view.resize(size)
    view.show()
    return view


@pytest.mark.parametrize("threaded", [True, False], ids=["render-thread", "ui-thread"])
def test_the_3d_view_shows_its_render_and_the_mouse_orbits_and_zooms(qtbot, window,  # noqa: F811
                                                                     recording, threaded):
    open_ready(qtbot, window, recording)
    view = view_3d(qtbot, window, threaded)
    assert view.threaded == threaded
    qtbot.waitUntil(lambda: view.surface.image is not None, timeout=WAIT_MS)
    rendered = view.render_image()
    assert view.surface.image.size() == view.surface.size()  # one image pixel per widget pixel
    pixels = shown_pixels(view)
    assert np.array_equal(pixels, rendered[..., :3])  # what is shown is the canvas's render
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 3  # a scene, not a blank fill

    cam = scene3d(view).view.camera
    azimuth, distance = cam.azimuth, cam.distance
    centre = view.surface.rect().center()
    QTest.mousePress(view.surface, Qt.MouseButton.LeftButton, pos=centre)
    for dx in (10, 30, 60):
        QTest.mouseMove(view.surface, centre + QPoint(dx, 0))
    QTest.mouseRelease(view.surface, Qt.MouseButton.LeftButton, pos=centre + QPoint(60, 0))
    scene3d(view)
    assert cam.azimuth != azimuth and cam.distance == distance
    qtbot.waitUntil(lambda: not np.array_equal(shown_pixels(view), pixels), timeout=WAIT_MS)
    dragged = cam.azimuth  # moves in a burst: the drag still ends where the mouse did
    view.reset_camera()
    QTest.mousePress(view.surface, Qt.MouseButton.LeftButton, pos=centre)
    QTest.mouseMove(view.surface, centre + QPoint(60, 0))
    QTest.mouseRelease(view.surface, Qt.MouseButton.LeftButton, pos=centre + QPoint(60, 0))
    scene3d(view)
    assert cam.azimuth == pytest.approx(dragged)

    wheel = QWheelEvent(QPointF(centre), QPointF(view.surface.mapToGlobal(centre)), QPoint(),
                        QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    before = (cam.scale_factor, cam.distance)
    pixels = shown_pixels(view)
    QApplication.sendEvent(view.surface, wheel)
    scene3d(view)
    assert (cam.scale_factor, cam.distance) != before
    qtbot.waitUntil(lambda: not np.array_equal(shown_pixels(view), pixels), timeout=WAIT_MS)

    centre_before = cam.center  # Shift+drag pans: the camera's centre moves, not its angles
    angles = (cam.azimuth, cam.elevation)
    left, shift = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier
    for kind, button, buttons, dy in ((QEvent.Type.MouseButtonPress, left, left, 0),
                                      (QEvent.Type.MouseMove, Qt.MouseButton.NoButton, left, 40),
                                      (QEvent.Type.MouseButtonRelease, left,
                                       Qt.MouseButton.NoButton, 40)):
        at = QPointF(centre + QPoint(0, dy))  # QTest moves carry no modifiers: made by hand
        QApplication.sendEvent(view.surface, QMouseEvent(kind, at, view.surface.mapToGlobal(at),
                                                         button, buttons, shift))
    scene3d(view)
    assert cam.center != centre_before and (cam.azimuth, cam.elevation) == angles
    if not threaded:
        view.release()


def test_hidden_grids_and_labelling_do_no_work_per_frame_and_catch_up(qtbot, window,  # noqa: F811
                                                                     recording):
    open_ready(qtbot, window, recording)
    state, media = window.state, window.state.media
    reads: list[tuple[int, int]] = []
    original = media.proxy_frame

    def counting(cam: int, t: int):
        reads.append((cam, t))
        return original(cam, t)

    media.proxy_frame = counting
    panel = window.labelling
    shows: list[int] = []  # the panel's work for a frame: filling its table and views
    panel_show = panel._show
    panel._show = lambda *a, **k: (shows.append(state.frame), panel_show(*a, **k))[1]
    cameras = len(window.grid.views)
    for t in (3, 4, 5):
        state.set_frame(t)
    assert sorted(reads) == sorted((c, t) for t in (3, 4, 5) for c in range(cameras))
    assert panel.grid.shown_frame not in (3, 4, 5)  # the hidden labelling grid waited
    assert shows == []  # and so did the hidden panel

    reads.clear()
    window.set_labelling(True)
    qtbot.waitUntil(lambda: panel.grid.shown_frame == 5, timeout=WAIT_MS)
    assert sorted(reads) == [(c, 5) for c in range(cameras)]  # caught up with one frame
    assert shows == [5]
    reads.clear()
    state.set_frame(6)  # now the player's grid is the hidden one
    assert sorted(reads) == [(c, 6) for c in range(cameras)]
    assert window.grid.shown_frame == 5
    window.set_labelling(False)
    qtbot.waitUntil(lambda: window.grid.shown_frame == 6, timeout=WAIT_MS)


def test_a_window_never_shown_still_catches_up_when_a_grid_comes_back(qtbot, recording):
    from mcss_studio.gui.main_window import MainWindow

    w = MainWindow(interactive=False, with_3d=False, remember_recent=False)
    qtbot.addWidget(w)
    open_ready(qtbot, w, recording)  # tests and --screenshot runs may never show the window
    w.set_labelling(True)
    w.state.set_frame(7)
    assert w.labelling.grid.shown_frame == 7 and w.grid.shown_frame != 7
    w.set_labelling(False)  # no showEvent comes: setVisible catches up
    assert w.grid.shown_frame == 7
    w.close()


def test_a_fitted_frame_keeps_its_colours_and_is_area_averaged(qtbot):
    import cv2

    from mcss_studio.gui.player.prefetch import fit_to_view

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    rgb[:, :40] = (250, 20, 5)  # a red half: a swapped channel order shows at once
    for size in ((30, 23), (61, 45), (160, 120)):
        image = fit_to_view(rgb, size)[0].convertToFormat(QImage.Format.Format_RGB888)
        rows = np.frombuffer(image.constBits(), np.uint8).reshape(size[1], image.bytesPerLine())
        shown = rows[:, : size[0] * 3].reshape(size[1], size[0], 3)
        method = cv2.INTER_AREA if size[0] <= 40 else cv2.INTER_LINEAR  # area: half or less
        assert np.array_equal(shown, cv2.resize(rgb, size, interpolation=method))
        assert tuple(shown[size[1] // 2, 2]) == (250, 20, 5)


def test_closing_the_window_deletes_the_offscreen_canvas_on_the_gui_thread(qtbot, recording,
                                                                           monkeypatch):
    import shiboken6

    from mcss_studio.gui.main_window import MainWindow
    from mcss_studio.gui.render3d import THREAD_ENV

    monkeypatch.setenv(THREAD_ENV, "0")  # the UI thread renders, in a hidden Qt window
    w = MainWindow(interactive=False, remember_recent=False)
    qtbot.addWidget(w)
    w.show()
    open_ready(qtbot, w, recording)
    assert not w.view3d.threaded
    native = w.view3d.renderer.native
    assert shiboken6.isValid(native) and native.parent() is None  # its own window
    w.close()  # at once, not when a garbage collection on some worker thread gets to it
    assert not shiboken6.isValid(native)


def test_closing_the_window_closes_its_scene_on_the_render_thread(qtbot, recording):
    from mcss_studio.gui.main_window import MainWindow

    w = MainWindow(interactive=False, remember_recent=False)
    qtbot.addWidget(w)
    w.show()
    open_ready(qtbot, w, recording)
    renderer = w.view3d.renderer
    scene = scene3d(w.view3d)
    assert scene is not None and renderer.scene is scene
    w.close()
    assert renderer.scene is None  # closed (on the render thread) before close() returned
    assert w.view3d.render_image().size == 0  # nothing renders any more, nothing waits
