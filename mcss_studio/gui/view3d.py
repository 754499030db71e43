"""The 3D view: the predicted skeleton, ground truth, the stored 3D label (orange), ground grid
and camera frusta of the frame on screen, seen through a turntable camera (left-drag orbits,
Shift+drag pans, wheel zooms).

The vispy scene (`scene3d_canvas`) renders offscreen, on a thread of its own where it can
(`render3d`), and this widget shows its latest image. The widget observes the Studio's state
and hands the scene plain data (poses, captions, framings) and the mouse input it receives;
it never waits for a render, except for a screenshot. An OpenGL widget inside the main window
would make Qt composite the whole window through OpenGL on every repaint of any panel; with
software OpenGL (Mesa llvmpipe: remote desktops, VMs, Xvfb) that cost more UI time than the
four camera views together during playback.

World convention for display: z up (as the synthetic data and Human3.6M use), mm. When the pose
cannot be placed in the world (no calibration), the first camera's pose is shown centred above
the origin, turned so that the camera's "down" is the display's -z.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QRect, Qt, QTimer
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ..core.framing import Framing, bounding_sphere, rig_and_person
from ..core.scene3d import camera_frustum, display_pose, scene_points
from .render3d import InlineRenderer, Renderer, ThreadedRenderer, threaded_rendering_wanted
from .scene3d_canvas import Content, MouseInput, Rig, Scene3D
from .state import FRAMINGS, StudioState

PLAYING_REDRAW_MS = 80

_MOUSE_KINDS = {QEvent.Type.MouseButtonPress: "press", QEvent.Type.MouseButtonRelease: "release",
                QEvent.Type.MouseMove: "move", QEvent.Type.MouseButtonDblClick: "double_click",
                QEvent.Type.Wheel: "wheel"}
_BUTTONS = {Qt.MouseButton.LeftButton: 1, Qt.MouseButton.RightButton: 2,
            Qt.MouseButton.MiddleButton: 3}


def _vispy_modifiers(qt_modifiers) -> tuple:
    from vispy.util import keys

    pairs = ((Qt.KeyboardModifier.ShiftModifier, keys.SHIFT),
             (Qt.KeyboardModifier.ControlModifier, keys.CONTROL),
             (Qt.KeyboardModifier.AltModifier, keys.ALT),
             (Qt.KeyboardModifier.MetaModifier, keys.META))
    return tuple(key for flag, key in pairs if qt_modifiers & flag)


def mouse_input(event, scale: float) -> MouseInput | None:
    """The vispy form of a Qt mouse or wheel event, at canvas pixels (widget pixels times
    `scale`); None for other events."""
    kind = _MOUSE_KINDS.get(event.type())
    if kind is None:
        return None
    pos = event.position()
    held = event.buttons()
    delta = (0.0, 0.0)
    if kind == "wheel":
        angle = event.angleDelta()
        delta = (angle.x() / 120.0, angle.y() / 120.0)
    return MouseInput(kind, (pos.x() * scale, pos.y() * scale),
                      button=_BUTTONS.get(getattr(event, "button", lambda: None)(), 0),
                      buttons=tuple(b for q, b in _BUTTONS.items() if held & q),
                      modifiers=_vispy_modifiers(event.modifiers()), delta=delta)


class CanvasImage(QWidget):
    """Shows the scene's last render; its mouse input goes to the scene, whose camera controls
    then work as if the canvas were on screen (same size, same positions)."""

    def __init__(self, on_mouse, parent=None) -> None:
        super().__init__(parent)
        self.on_mouse = on_mouse
        self.image: QImage | None = None
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setMouseTracking(True)
        self.setMinimumSize(120, 120)

    def set_image(self, rgba: np.ndarray, pixel_ratio: float) -> None:
        h, w = rgba.shape[:2]
        rgba = np.ascontiguousarray(rgba)
        self.image = QImage(rgba.data, w, h, rgba.strides[0],
                            QImage.Format.Format_RGBA8888).copy()
        self.image.setDevicePixelRatio(pixel_ratio)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        if self.image is None:
            p.fillRect(self.rect(), Qt.GlobalColor.black)
        else:
            p.drawImage(QRect(0, 0, self.width(), self.height()), self.image)
        p.end()

    def event(self, event) -> bool:  # noqa: D102
        if event.type() in _MOUSE_KINDS:
            self.on_mouse(event)
            return True
        return super().event(event)


class View3D(QWidget):
    """`reset_camera()` frames the scene as `state.framing` says: the whole rig and the person by
    default, the person alone after `state.toggle_framing()` (core.framing computes both). It
    refits on `state.framingChanged` and `state.viewsResetRequested`. `threaded` None: render
    on a thread of its own where possible (render3d)."""

    def __init__(self, state: StudioState, parent=None, threaded: bool | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.surface = CanvasImage(self._mouse, self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.surface)
        self.released = False
        self.renderer = self._make_renderer(threaded)
        self.renderer.rendered.connect(self._show_render)
        person = Framing(np.array([0.0, 0.0, 900.0]), 1000.0)
        self.framings: dict[str, Framing] = {"rig": person, "person": person}
        self._warmed = False
        # redraws are coalesced, and limited during playback: a render costs as much CPU as
        # the four camera views together, CPU that inference needs
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.timeout.connect(self.refresh)
        state.sequenceChanged.connect(self._sequence_changed)
        state.predictionChanged.connect(lambda _p: self.schedule())
        state.frameChanged.connect(lambda _t: self.schedule())
        state.playingChanged.connect(lambda _p: self.schedule())  # the caption's frame number
        state.overlaysChanged.connect(self.schedule)
        state.labelsChanged.connect(self.schedule)
        state.framingChanged.connect(self._framing_changed)
        state.viewsResetRequested.connect(self.reset_camera)
        self._sequence_changed(state.sequence)
        if self.threaded:
            self.renderer.call(Scene3D.prewarm)  # on the render thread: nobody waits

    def _make_renderer(self, threaded: bool | None) -> Renderer:
        """The render thread when wanted and its scene could be made, else the UI thread."""
        self.threaded = threaded_rendering_wanted() if threaded is None else threaded
        if self.threaded:
            renderer = ThreadedRenderer(self._canvas_size(), self._dpi(), self)
            renderer.wait_idle()  # the scene is made (or failed) before anything is posted
            if renderer.failure is None:
                return renderer
            renderer.stop()
            self.threaded = False
        return InlineRenderer(self._canvas_size(), lambda: self.state.playing, self)

    @property
    def pixel_scale(self) -> float:
        """Canvas pixels per widget pixel: the threaded canvas renders at device pixels; the
        inline one is a Qt window that scales itself."""
        return self.devicePixelRatioF() if self.threaded else 1.0

    def _canvas_size(self) -> tuple[int, int]:
        scale = self.pixel_scale
        size = self.surface.size()
        return max(round(size.width() * scale), 1), max(round(size.height() * scale), 1)

    def _dpi(self) -> float:
        return self.logicalDpiX() * self.devicePixelRatioF()

    def scene_call(self, fn):
        """Run fn(scene) where the scene lives, after everything posted, and return its result
        (tests, screenshots; None once released)."""
        return None if self.released else self.renderer.call_sync(fn)

    def _mouse(self, event) -> None:
        mouse = mouse_input(event, self.pixel_scale)
        if mouse is not None and not self.released:
            self.renderer.call(lambda scene: scene.mouse(mouse))

    def _show_render(self, image: np.ndarray) -> None:
        if not self.released and image.size:
            width = max(self.surface.width(), 1)
            self.surface.set_image(image, image.shape[1] / width)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if not self.released:  # a new size renders again (Scene3D.resize)
            size = self._canvas_size()
            self.renderer.call(lambda scene: scene.resize(size))

    def release(self) -> None:
        """Stop rendering for good: the render thread ends, or the inline renderer's hidden
        window is deleted now, on this (the GUI) thread. The window calls this when it
        closes."""
        self.released = True  # from now on nothing renders (a redraw may still be queued)
        self._redraw.stop()
        self.renderer.stop()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._warmed and not self.threaded:
            self._warmed = True
            QTimer.singleShot(0, self._prewarm)

    def _prewarm(self) -> None:
        """On the UI thread, draw everything once while nothing plays (Scene3D.prewarm)."""
        if not self.released:
            self.renderer.call(Scene3D.prewarm)
            self.refresh()

    # -- scene --------------------------------------------------------------------------------
    def _sequence_changed(self, seq) -> None:
        if self.released:
            return
        rig_points, person, grid_size = scene_points(seq)
        rig_framing, person_framing = rig_and_person(rig_points, person)
        self.framings = {"rig": rig_framing, "person": person_framing}
        frusta, names, name_points = None, [], None
        if seq is not None and seq.is_calibrated:
            cals = [c.calibration for c in seq.cameras]
            frusta = np.concatenate([camera_frustum(c) for c in cals])
            names = [c.name for c in seq.cameras]
            name_points = np.stack([c.center for c in cals]) + np.array([0, 0, 150.0])
        rig = Rig(frusta, names, name_points, np.array([*person_framing.centre[:2], 0.0]),
                  grid_size)
        self.renderer.call(lambda scene: scene.set_rig(rig))
        self.reset_camera()
        self.refresh()

    def _framing_now(self) -> Framing:
        """The chosen framing; the person close-up is of the person where it is now (ground
        truth, else the prediction), so that a long walk does not shrink it."""
        if self.state.framing == "person":
            state, seq = self.state, self.state.sequence
            if seq is not None and seq.is_calibrated and seq.joints3d is not None \
                    and state.frame < len(seq.joints3d) \
                    and np.isfinite(seq.joints3d[state.frame]).any():
                return bounding_sphere(seq.joints3d[state.frame])
            if state.prediction is not None:
                return bounding_sphere(display_pose(state.prediction))
        return self.framings[self.state.framing]

    def reset_camera(self) -> None:
        """Look at the current framing from the default direction (Scene3D.fit)."""
        if not self.released:
            framing = self._framing_now()
            self.renderer.call(lambda scene: scene.fit(framing))

    def _framing_changed(self, _name: str) -> None:
        if self.released:
            return
        self.reset_camera()
        self.refresh()

    def schedule(self) -> None:
        """Redraw soon: at once when paused, at most PLAYING_REDRAW_MS apart during playback."""
        if not self._redraw.isActive():
            self._redraw.start(PLAYING_REDRAW_MS if self.state.playing else 0)

    # -- content ------------------------------------------------------------------------------
    def content(self) -> Content:
        """What the scene shows for the state now."""
        state, seq = self.state, self.state.sequence
        pred, on = state.prediction, state.overlays
        pose = display_pose(pred) if pred is not None and on["skeleton"] else None
        gt = None
        if seq is not None and seq.joints3d is not None and on["gt"] \
                and state.frame < len(seq.joints3d):
            gt = np.asarray(seq.joints3d[state.frame], dtype=np.float64)
            if not seq.is_calibrated and pred is not None:
                gt = gt - gt[0] + np.array([1000.0, 0, 0]) + display_pose(pred)[0]
        return Content(prediction=pose, joint_names=pose is not None and on["names"],
                       ground_truth=gt, label=self._label_points(seq),
                       caption=self._caption(pred, seq))

    def _label_points(self, seq) -> np.ndarray | None:
        """The frame's stored 3D label (only a calibrated sequence has labels in the world)."""
        store = self.state.label_store
        if store is None or seq is None or not seq.is_calibrated:
            return None
        label = store.get(seq.name, self.state.frame)
        return None if label is None else label.joints3d

    def _caption(self, pred, seq) -> str:
        text = ""
        if pred is not None:
            where = "world" if pred.pose_world is not None else "centred (no calibration)"
            # the frame number only when paused: during playback it would change with every
            # answer, and laying out new text costs a software-OpenGL render several ms
            shown = "live" if self.state.playing else f"for frame {pred.frame}"
            text = f"prediction {shown}, {where}   "
        if seq is not None and seq.is_calibrated:
            other = FRAMINGS[(FRAMINGS.index(self.state.framing) + 1) % len(FRAMINGS)]
            text += f"F: frame the {other}"
        return text

    def refresh(self) -> None:
        if not self.released:
            content = self.content()
            self.renderer.call(lambda scene: scene.set_content(content))

    def render_image(self) -> np.ndarray:
        """The scene as RGBA uint8 (for screenshots and tests), with any pending redraw done,
        and shown; after `release` an empty image."""
        self._redraw.stop()
        self.refresh()
        if self.released:
            return np.zeros((0, 0, 4), np.uint8)
        return self.renderer.render_sync()
