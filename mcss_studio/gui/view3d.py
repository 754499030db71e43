"""The 3D view (vispy in Qt): predicted skeleton, ground truth, the stored 3D label (orange),
ground grid, camera frusta.

The vispy canvas renders offscreen and the view shows its image in a plain raster widget that
hands mouse input back to the canvas. An OpenGL widget inside the main window would make Qt
composite the whole window through OpenGL on every repaint of any panel; with software OpenGL
(Mesa llvmpipe: remote desktops, VMs, Xvfb) that cost more UI time than the four camera views
together during playback. Rendered this way, a 3D redraw costs one offscreen render when the 3D
content changes, and repainting the camera views costs nothing extra.

World convention for display: z up (as the synthetic data and Human3.6M use), mm. When the pose
cannot be placed in the world (no calibration), the first camera's pose is shown centred above
the origin, turned so that the camera's "down" is the display's -z.
"""

from __future__ import annotations

import string

import numpy as np
import shiboken6
from PySide6.QtCore import QEvent, QRect, Qt, QTimer
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from ..core.framing import Framing, bounding_sphere, rig_and_person
from ..core.joints import BONES, JOINT_NAMES, bone_colors
from ..core.label_layout import place_joint_labels
from ..core.scene3d import camera_frustum, display_pose, scene_points
from .pass_budget import DEFER_MS, MAX_DEFERRALS, heavy_work_in_this_pass
from .state import FRAMINGS, StudioState

_BONE_RGBA = np.array([[*c, 255] for c in bone_colors()], dtype=np.float32) / 255.0
_GT_RGBA = np.array([0.25, 0.9, 0.35, 1.0], dtype=np.float32)
PLAYING_REDRAW_MS = 80
_FRUSTUM_RGBA = np.array([0.85, 0.85, 0.5, 1.0], dtype=np.float32)
_LABEL_RGBA = np.array([1.0, 0.62, 0.1, 1.0], dtype=np.float32)  # labels: orange everywhere
FOV_DEG = 45.0
_LABEL_PT = 7


def _segments(points: np.ndarray) -> np.ndarray:
    """(2 * bones, 3) vertex pairs of the skeleton's bones."""
    return np.stack([points[[a for a, _ in BONES]], points[[b for _, b in BONES]]], 1).reshape(
        -1, 3
    )


class CanvasImage(QWidget):
    """Shows the offscreen canvas's last render; its mouse input goes to the canvas, whose
    camera controls then work as if the canvas were on screen (same size, same positions)."""

    _FORWARDED = (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease,
                  QEvent.Type.MouseMove, QEvent.Type.MouseButtonDblClick, QEvent.Type.Wheel)

    def __init__(self, canvas_widget: QWidget, parent=None) -> None:
        super().__init__(parent)
        self.canvas_widget = canvas_widget
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
        if event.type() in self._FORWARDED:
            QApplication.sendEvent(self.canvas_widget, event)
            return True
        return super().event(event)


class View3D(QWidget):
    """vispy SceneCanvas with a turntable camera: left-drag orbits, Shift+drag pans, wheel zooms,
    `reset_camera()` frames the scene as `state.framing` says: the whole rig and the person by
    default, the person alone after `state.toggle_framing()` (core.framing computes both). It
    refits on `state.framingChanged` and `state.viewsResetRequested`."""

    def __init__(self, state: StudioState, parent=None) -> None:
        super().__init__(parent)
        import vispy

        vispy.use("pyside6")
        from vispy import scene

        self.state = state
        self.scene = scene
        self.canvas = scene.SceneCanvas(keys=None, bgcolor=(0.08, 0.08, 0.1, 1.0), show=False)
        self.canvas.create_native()
        # a window that is never put on screen (see the module docstring): it owns the OpenGL
        # context the offscreen renders use. It must have no parent: Qt composites a window
        # through OpenGL when any widget under it, even a hidden window of its own, is an
        # OpenGL widget. It goes with this widget and does not keep the application open.
        native = self.canvas.native
        native.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        native.setAttribute(Qt.WidgetAttribute.WA_QuitOnClose, False)
        native.show()
        self.destroyed.connect(native.deleteLater)  # a window deleted without closing
        self.released = False  # the canvas's window was deleted (see `release`)
        self.surface = CanvasImage(native, self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.surface)
        # vispy asks for a redraw through canvas.update() (camera moves, data changes): here that
        # means one offscreen render, coalesced
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.timeout.connect(self._render_when_free)
        self._deferrals = 0
        self.canvas.update = lambda *_args, **_kw: self._render_timer.start(0)
        self.view = self.canvas.central_widget.add_view()
        self.view.camera = scene.TurntableCamera(up="z", fov=FOV_DEG, elevation=20, azimuth=30)
        self.grid = scene.visuals.Line(
            parent=self.view.scene, connect="segments", color=(0.35, 0.35, 0.4, 1.0)
        )
        self.frusta = scene.visuals.Line(
            parent=self.view.scene, connect="segments", color=_FRUSTUM_RGBA, width=1.5
        )
        self.pred_bones = scene.visuals.Line(parent=self.view.scene, connect="segments", width=4)
        self.pred_joints = scene.visuals.Markers(parent=self.view.scene)
        self.gt_bones = scene.visuals.Line(
            parent=self.view.scene, connect="segments", color=_GT_RGBA, width=2
        )
        self.cam_labels = scene.visuals.Text(parent=self.view.scene, color="white", font_size=7)
        # the stored 3D label of the shown frame (labelling mode), in the labels' own colour
        self.label_bones = scene.visuals.Line(
            parent=self.view.scene, connect="segments", color=_LABEL_RGBA, width=3
        )
        self.label_joints = scene.visuals.Markers(parent=self.view.scene)
        for visual in (self.label_bones, self.label_joints):  # in front of the prediction
            visual.order = 10
            visual.set_gl_state(depth_test=False)
        self.label_points: np.ndarray | None = None  # the 3D label joints shown (J, 3), NaN
        # joint names live in canvas pixels, placed by label_layout so that none overlaps
        self.joint_labels = scene.visuals.Text(
            parent=self.canvas.scene, color="white", font_size=_LABEL_PT, anchor_x="left",
            anchor_y="center",
        )
        self._label_pose: np.ndarray | None = None
        self.label_rects: list = []  # where the names were last placed (None: left out)
        self.info = scene.visuals.Text(
            "",
            parent=self.canvas.scene,
            color="white",
            font_size=8,
            anchor_x="left",
            anchor_y="bottom",
            pos=(6, 16),
        )
        person = Framing(np.array([0.0, 0.0, 900.0]), 1000.0)
        self.framings: dict[str, Framing] = {"rig": person, "person": person}
        self._fitted: tuple | None = None  # (centre, distance) last set by reset_camera
        self._warmed = False
        self._set_visible(
            self.pred_bones,
            self.pred_joints,
            self.gt_bones,
            self.joint_labels,
            self.frusta,
            self.cam_labels,
            self.label_bones,
            self.label_joints,
            on=False,
        )
        # redraws are coalesced, and limited during playback: with software OpenGL a render
        # costs as much as the four camera views together
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
        self.view.scene.events.transform_change.connect(lambda _e: self._place_labels())
        self.canvas.events.resize.connect(lambda _e: self._refit_if_untouched())
        self._sequence_changed(state.sequence)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.released:
            return
        size = self.surface.size()
        if tuple(self.canvas.size) != (size.width(), size.height()):
            self.canvas.size = (max(size.width(), 1), max(size.height(), 1))
        self._render_timer.start(0)

    def release(self) -> None:
        """Delete the offscreen canvas's window now, on this (the GUI) thread. It has no Qt
        parent, so otherwise its Python wrapper would delete it whenever it is collected, and
        a collection that runs on a worker thread would destroy a widget there (Qt forbids
        that; it deadlocked a test run). The window calls this when it closes."""
        native = getattr(self.canvas, "native", None)
        self.released = True  # from now on nothing renders (a redraw may still be queued)
        self._render_timer.stop()
        self._redraw.stop()
        if native is not None and shiboken6.isValid(native):
            shiboken6.delete(native)

    def _render_when_free(self) -> None:
        """Render now, unless during playback the camera views paint in this event-loop pass
        (asked for, or just done): then a few ms later, in a pass of its own (pass_budget)."""
        if self.state.playing and heavy_work_in_this_pass() and self._deferrals < MAX_DEFERRALS:
            self._deferrals += 1
            self._render_timer.start(DEFER_MS)
            return
        self._deferrals = 0
        self.render_now()

    def render_now(self) -> np.ndarray:
        """Render the canvas offscreen now and show the image; returns it (RGBA uint8); after
        `release` the last image (or an empty one)."""
        self._render_timer.stop()
        if self.released:
            return np.zeros((0, 0, 4), np.uint8)
        image = self.canvas.render()
        self.surface.set_image(image, image.shape[1] / max(self.canvas.size[0], 1))
        return image

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._warmed:
            self._warmed = True
            QTimer.singleShot(0, self._prewarm)

    def _prewarm(self) -> None:
        """Draw every visual and every glyph once while nothing plays: compiling shaders and
        rasterising new glyphs (hundreds of ms with software OpenGL) would otherwise stall the
        first frame that shows a skeleton."""
        if self.released:
            return
        pose = np.zeros((len(JOINT_NAMES), 3))
        pose[:, 2] = np.arange(len(JOINT_NAMES))
        self.pred_bones.set_data(pos=_segments(pose), color=np.repeat(_BONE_RGBA, 2, axis=0))
        self.pred_joints.set_data(pose, face_color="white", edge_color=None, size=6)
        self.gt_bones.set_data(pos=_segments(pose))
        self.joint_labels.text = list(JOINT_NAMES)
        self.joint_labels.pos = pose[:, :2]
        self.info.text = string.ascii_letters + string.digits + string.punctuation  # glyph atlas
        hidden = [v for v in (self.pred_bones, self.pred_joints, self.gt_bones, self.joint_labels,
                              self.frusta, self.cam_labels) if not v.visible]
        self._set_visible(*hidden, on=True)
        try:
            self.canvas.render()
        finally:
            self._set_visible(*hidden, on=False)
            self.refresh()

    @staticmethod
    def _set_visible(*visuals, on: bool) -> None:
        for v in visuals:
            v.visible = on

    # -- scene --------------------------------------------------------------------------------
    def _sequence_changed(self, seq) -> None:
        if self.released:
            return
        calibrated = seq is not None and seq.is_calibrated
        if calibrated:
            cals = [c.calibration for c in seq.cameras]
            self.frusta.set_data(pos=np.concatenate([camera_frustum(c) for c in cals]))
            self.cam_labels.text = [c.name for c in seq.cameras]
            self.cam_labels.pos = np.stack([c.center for c in cals]) + np.array([0, 0, 150.0])
        self._set_visible(self.frusta, self.cam_labels, on=calibrated)
        rig, person, grid_size = scene_points(seq)
        rig_framing, person_framing = rig_and_person(rig, person)
        self.framings = {"rig": rig_framing, "person": person_framing}
        self._make_grid(np.array([*person_framing.centre[:2], 0.0]), grid_size)
        self.reset_camera()
        self.refresh()

    def _make_grid(self, centre: np.ndarray, size: float, step: float = 500.0) -> None:
        half = np.ceil(size / 2 / step) * step
        ticks = np.arange(-half, half + step / 2, step)
        segs = []
        for v in ticks:
            segs += [[v, -half, 0], [v, half, 0], [-half, v, 0], [half, v, 0]]
        self.grid.set_data(pos=np.asarray(segs, dtype=np.float64) + [centre[0], centre[1], 0])

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
        """Look at the current framing's sphere from the default direction, from just far
        enough for all of it to be in view at the canvas's present aspect ratio."""
        if self.released:
            return
        framing = self._framing_now()
        width, height = self.canvas.size
        distance = framing.distance(FOV_DEG, max(width, 1) / max(height, 1))
        cam = self.view.camera
        cam.center = tuple(float(v) for v in framing.centre)
        cam.distance = distance
        cam.elevation, cam.azimuth = 22.0, 35.0
        self._fitted = (cam.center, cam.distance)
        self.canvas.update()

    def _framing_changed(self, _name: str) -> None:
        if self.released:
            return
        self.reset_camera()
        self.refresh()

    def _refit_if_untouched(self) -> None:
        """A resize changes what fits; refit unless the user has moved the camera since."""
        if self.released:
            return
        cam = self.view.camera
        if self._fitted is not None and (cam.center, cam.distance) == self._fitted:
            self.reset_camera()

    def schedule(self) -> None:
        """Redraw soon: at once when paused, at most PLAYING_REDRAW_MS apart during playback."""
        if not self._redraw.isActive():
            self._redraw.start(PLAYING_REDRAW_MS if self.state.playing else 0)

    # -- content ------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.released:
            return
        state, seq = self.state, self.state.sequence
        pred = state.prediction
        on = state.overlays
        show_pred = pred is not None and on["skeleton"]
        if show_pred:
            pose = display_pose(pred)
            seg = _segments(pose)
            colors = np.repeat(_BONE_RGBA, 2, axis=0)
            self.pred_bones.set_data(pos=seg, color=colors)
            self.pred_joints.set_data(pose, face_color="white", edge_color=None, size=6)
        self._set_visible(self.pred_bones, self.pred_joints, on=show_pred)
        self._label_pose = pose if show_pred and on["names"] else None
        self._place_labels()
        gt = None
        if (
            seq is not None
            and seq.joints3d is not None
            and on["gt"]
            and state.frame < len(seq.joints3d)
        ):
            gt = np.asarray(seq.joints3d[state.frame], dtype=np.float64)
            if not seq.is_calibrated and pred is not None:
                gt = gt - gt[0] + np.array([1000.0, 0, 0]) + display_pose(pred)[0]
            self.gt_bones.set_data(pos=_segments(gt))
        self.gt_bones.visible = gt is not None
        self._show_label(seq)
        text = ""
        if pred is not None:
            where = "world" if pred.pose_world is not None else "centred (no calibration)"
            # the frame number only when paused: during playback it would change with every
            # answer, and laying out new text costs a software-OpenGL render several ms
            shown = "live" if state.playing else f"for frame {pred.frame}"
            text = f"prediction {shown}, {where}   "
        if seq is not None and seq.is_calibrated:
            other = FRAMINGS[(FRAMINGS.index(self.state.framing) + 1) % len(FRAMINGS)]
            text += f"F: frame the {other}"
        if self.info.text != text:  # vispy lays text out again on every assignment
            self.info.text = text
        self.canvas.update()

    def _show_label(self, seq) -> None:
        """The stored 3D label of the frame: bones whose both joints have a 3D point, and
        every joint that has one (only a calibrated sequence has labels in the world)."""
        store = self.state.label_store
        label = None
        if store is not None and seq is not None and seq.is_calibrated:
            label = store.get(seq.name, self.state.frame)
        points = None if label is None else label.joints3d
        self.label_points = points
        has = None if points is None else np.all(np.isfinite(points), axis=-1)
        show = has is not None and bool(has.any())
        if show:
            bones = [(a, b) for a, b in BONES if has[a] and has[b]]
            if bones:
                seg = np.array([[points[a], points[b]] for a, b in bones]).reshape(-1, 3)
                self.label_bones.set_data(pos=seg)
            self.label_bones.visible = bool(bones)
            self.label_joints.set_data(points[has], face_color=_LABEL_RGBA, edge_color=None,
                                       size=7)
            self.label_joints.visible = True
        else:
            self._set_visible(self.label_bones, self.label_joints, on=False)

    def _place_labels(self) -> None:
        """Joint names at the canvas pixels label_layout finds free for them."""
        if self.released:
            return
        pose = self._label_pose
        if pose is None:
            self.joint_labels.visible = False
            return
        mapped = self.pred_joints.get_transform("visual", "canvas").map(pose)
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = mapped[:, :2] / mapped[:, 3:4]
        xy[mapped[:, 3] <= 0] = np.nan  # behind the camera
        px = _LABEL_PT * self.canvas.dpi / 72.0
        sizes = [(0.62 * px * len(n) + 4, 1.4 * px) for n in JOINT_NAMES]
        rects = place_joint_labels([tuple(p) for p in xy], sizes, tuple(self.canvas.size))
        shown = [(n, r) for n, r in zip(JOINT_NAMES, rects) if r is not None]
        self.label_rects = rects
        self.joint_labels.visible = bool(shown)
        if shown:
            self.joint_labels.text = [n for n, _ in shown]
            self.joint_labels.pos = np.array([[r[0] + 2, r[1] + r[3] / 2] for _, r in shown])

    def render_image(self) -> np.ndarray:
        """The canvas as RGBA uint8 (for screenshots and tests), with any pending redraw done."""
        self._redraw.stop()
        self.refresh()
        return self.render_now()
