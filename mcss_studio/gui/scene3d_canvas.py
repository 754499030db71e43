"""The 3D view's vispy scene: predicted skeleton, ground truth, the stored 3D label (orange),
ground grid, camera frusta, joint names and a caption, seen through a turntable camera.

A `Scene3D` is used from one thread only, the thread that made it (its OpenGL context is
current there): the Studio's render thread, or the UI thread where no context can be made off
it (see `render3d`). It is given plain data (numpy arrays, strings, `Framing`s), never the
Studio's state, so whichever thread owns it reads nothing another thread writes. Its mouse
input comes as vispy events made from the view's Qt events.

World convention for display: z up (as the synthetic data and Human3.6M use), mm.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.framing import Framing
from ..core.joints import BONES, JOINT_NAMES, bone_colors
from ..core.label_layout import place_joint_labels

_BONE_RGBA = np.array([[*c, 255] for c in bone_colors()], dtype=np.float32) / 255.0
_GT_RGBA = np.array([0.25, 0.9, 0.35, 1.0], dtype=np.float32)
_FRUSTUM_RGBA = np.array([0.85, 0.85, 0.5, 1.0], dtype=np.float32)
_LABEL_RGBA = np.array([1.0, 0.62, 0.1, 1.0], dtype=np.float32)  # labels: orange everywhere
_BACKGROUND = (0.08, 0.08, 0.1, 1.0)
FOV_DEG = 45.0
_LABEL_PT = 7


@dataclass(frozen=True)
class Rig:
    """What a sequence puts in the scene for as long as it is shown."""

    frusta: np.ndarray | None  # (2 * segments, 3) line pairs; None: not calibrated
    camera_names: list[str]
    camera_label_points: np.ndarray | None  # (cameras, 3)
    grid_centre: np.ndarray  # (3,)
    grid_size: float


@dataclass(frozen=True)
class Content:
    """What a frame puts in the scene; poses are (joints, 3) in display mm."""

    prediction: np.ndarray | None = None
    joint_names: bool = False  # name the predicted joints
    ground_truth: np.ndarray | None = None
    label: np.ndarray | None = None  # NaN where a joint has no 3D point
    caption: str = ""


@dataclass(frozen=True)
class MouseInput:
    """One mouse event in canvas pixels, in vispy's terms (buttons 1 left, 2 right, 3 middle;
    modifiers from vispy.util.keys)."""

    kind: str  # "press", "release", "move", "double_click", "wheel"
    pos: tuple[float, float]
    button: int = 0
    buttons: tuple[int, ...] = ()
    modifiers: tuple = ()
    delta: tuple[float, float] = (0.0, 0.0)


def _segments(points: np.ndarray) -> np.ndarray:
    """(2 * bones, 3) vertex pairs of the skeleton's bones."""
    return np.stack([points[[a for a, _ in BONES]], points[[b for _, b in BONES]]], 1).reshape(
        -1, 3
    )


class Scene3D:
    """The canvas and its visuals. `app` is a vispy Application (or backend name) for the
    canvas; `on_update` is called whenever the scene wants a new render (content set, camera
    moved), from the owner thread."""

    def __init__(self, app, size: tuple[int, int], dpi: float | None,
                 on_update: Callable[[], None]) -> None:
        from vispy import scene

        self.canvas = scene.SceneCanvas(app=app, keys=None, bgcolor=_BACKGROUND, show=False,
                                        size=size, dpi=dpi)
        self.canvas.update = lambda *_args, **_kw: on_update()
        self.view = self.canvas.central_widget.add_view()
        self.view.camera = scene.TurntableCamera(up="z", fov=FOV_DEG, elevation=20, azimuth=30)
        visuals = scene.visuals
        self.grid = visuals.Line(parent=self.view.scene, connect="segments",
                                 color=(0.35, 0.35, 0.4, 1.0))
        self.frusta = visuals.Line(parent=self.view.scene, connect="segments",
                                   color=_FRUSTUM_RGBA, width=1.5)
        self.pred_bones = visuals.Line(parent=self.view.scene, connect="segments", width=4)
        self.pred_joints = visuals.Markers(parent=self.view.scene)
        self.gt_bones = visuals.Line(parent=self.view.scene, connect="segments", color=_GT_RGBA,
                                     width=2)
        self.cam_labels = visuals.Text(parent=self.view.scene, color="white", font_size=7)
        self.label_bones = visuals.Line(parent=self.view.scene, connect="segments",
                                        color=_LABEL_RGBA, width=3)
        self.label_joints = visuals.Markers(parent=self.view.scene)
        for visual in (self.label_bones, self.label_joints):  # in front of the prediction
            visual.order = 10
            visual.set_gl_state(depth_test=False)
        self.label_points: np.ndarray | None = None  # the 3D label joints shown (J, 3), NaN
        # joint names live in canvas pixels, placed by label_layout so that none overlaps
        self.joint_labels = visuals.Text(parent=self.canvas.scene, color="white",
                                         font_size=_LABEL_PT, anchor_x="left",
                                         anchor_y="center")
        self._label_pose: np.ndarray | None = None
        self.label_rects: list = []  # where the names were last placed (None: left out)
        self.info = visuals.Text("", parent=self.canvas.scene, color="white", font_size=8,
                                 anchor_x="left", anchor_y="bottom", pos=(6, 16))
        self._framing = Framing(np.array([0.0, 0.0, 900.0]), 1000.0)
        self._fitted: tuple | None = None  # (centre, distance) last set by `fit`
        self._set_visible(self.pred_bones, self.pred_joints, self.gt_bones, self.joint_labels,
                          self.frusta, self.cam_labels, self.label_bones, self.label_joints,
                          on=False)
        self.view.scene.events.transform_change.connect(lambda _e: self._place_labels())

    @staticmethod
    def _set_visible(*visuals, on: bool) -> None:
        for v in visuals:
            v.visible = on

    # -- what is shown --------------------------------------------------------------------
    def set_rig(self, rig: Rig) -> None:
        calibrated = rig.frusta is not None
        if calibrated:
            self.frusta.set_data(pos=rig.frusta)
            self.cam_labels.text = list(rig.camera_names)
            self.cam_labels.pos = rig.camera_label_points
        self._set_visible(self.frusta, self.cam_labels, on=calibrated)
        self._make_grid(rig.grid_centre, rig.grid_size)

    def _make_grid(self, centre: np.ndarray, size: float, step: float = 500.0) -> None:
        half = np.ceil(size / 2 / step) * step
        ticks = np.arange(-half, half + step / 2, step)
        segs = []
        for v in ticks:
            segs += [[v, -half, 0], [v, half, 0], [-half, v, 0], [half, v, 0]]
        self.grid.set_data(pos=np.asarray(segs, dtype=np.float64) + [centre[0], centre[1], 0])

    def set_content(self, content: Content) -> None:
        pose = content.prediction
        if pose is not None:
            self.pred_bones.set_data(pos=_segments(pose), color=np.repeat(_BONE_RGBA, 2, axis=0))
            self.pred_joints.set_data(pose, face_color="white", edge_color=None, size=6)
        self._set_visible(self.pred_bones, self.pred_joints, on=pose is not None)
        self._label_pose = pose if content.joint_names else None
        self._place_labels()
        if content.ground_truth is not None:
            self.gt_bones.set_data(pos=_segments(content.ground_truth))
        self.gt_bones.visible = content.ground_truth is not None
        self._show_label(content.label)
        if self.info.text != content.caption:  # vispy lays text out again on every assignment
            self.info.text = content.caption
        self.canvas.update()

    def _show_label(self, points: np.ndarray | None) -> None:
        """Bones whose both joints have a 3D point, and every joint that has one."""
        self.label_points = points
        has = None if points is None else np.all(np.isfinite(points), axis=-1)
        if has is None or not has.any():
            self._set_visible(self.label_bones, self.label_joints, on=False)
            return
        bones = [(a, b) for a, b in BONES if has[a] and has[b]]
        if bones:
            seg = np.array([[points[a], points[b]] for a, b in bones]).reshape(-1, 3)
            self.label_bones.set_data(pos=seg)
        self.label_bones.visible = bool(bones)
        self.label_joints.set_data(points[has], face_color=_LABEL_RGBA, edge_color=None, size=7)
        self.label_joints.visible = True

    def _place_labels(self) -> None:
        """Joint names at the canvas pixels label_layout finds free for them."""
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

    # -- camera ---------------------------------------------------------------------------
    def fit(self, framing: Framing) -> None:
        """Look at the framing's sphere from the default direction, from just far enough for
        all of it to be in view at the canvas's present aspect ratio."""
        self._framing = framing
        width, height = self.canvas.size
        cam = self.view.camera
        cam.center = tuple(float(v) for v in framing.centre)
        cam.distance = framing.distance(FOV_DEG, max(width, 1) / max(height, 1))
        cam.elevation, cam.azimuth = 22.0, 35.0
        self._fitted = (cam.center, cam.distance)
        self.canvas.update()

    def resize(self, size: tuple[int, int]) -> None:
        """A new canvas size; the camera is refitted unless the user has moved it since."""
        size = (max(int(size[0]), 1), max(int(size[1]), 1))
        if tuple(self.canvas.size) == size:
            return
        self.canvas.size = size
        # a Qt canvas announces its new size itself; an EGL one does not, and the view box
        # would keep covering the old size
        self.canvas.events.resize(size=size, physical_size=size)
        cam = self.view.camera
        if self._fitted is not None and (cam.center, cam.distance) == self._fitted:
            self.fit(self._framing)
        self.canvas.update()

    def mouse(self, event: MouseInput) -> None:
        """Deliver one mouse event to the canvas (the camera orbits, pans and zooms)."""
        backend = self.canvas._backend
        common = {"pos": event.pos, "buttons": list(event.buttons), "modifiers": event.modifiers}
        if event.kind == "press":
            backend._vispy_mouse_press(button=event.button, **common)
        elif event.kind == "release":
            backend._vispy_mouse_release(button=event.button, **common)
        elif event.kind == "double_click":
            backend._vispy_mouse_double_click(button=event.button, **common)
        elif event.kind == "move":
            # vispy drops a move that comes within 10 ms of the last one; moves posted to the
            # render thread arrive in bursts, and a dropped last one would end a drag short
            backend._last_time = float("-inf")
            backend._vispy_mouse_move(**common)
        elif event.kind == "wheel":
            self.canvas.events.mouse_wheel(delta=event.delta, **common)

    # -- rendering ------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The scene as RGBA uint8, (height, width, 4)."""
        return self.canvas.render()

    def prewarm(self) -> None:
        """Draw every visual and every glyph once: compiling shaders and rasterising new
        glyphs (hundreds of ms with software OpenGL) would otherwise delay the first render
        that shows a skeleton. Leaves the scene as it was."""
        pose = np.zeros((len(JOINT_NAMES), 3))
        pose[:, 2] = np.arange(len(JOINT_NAMES))
        self.pred_bones.set_data(pos=_segments(pose), color=np.repeat(_BONE_RGBA, 2, axis=0))
        self.pred_joints.set_data(pose, face_color="white", edge_color=None, size=6)
        self.gt_bones.set_data(pos=_segments(pose))
        self.label_joints.set_data(pose, face_color=_LABEL_RGBA, edge_color=None, size=7)
        self.label_bones.set_data(pos=_segments(pose))
        names, caption = self.joint_labels.text, self.info.text
        self.joint_labels.text = list(JOINT_NAMES)
        self.joint_labels.pos = pose[:, :2]
        self.info.text = string.ascii_letters + string.digits + string.punctuation  # glyphs
        visuals = (self.pred_bones, self.pred_joints, self.gt_bones, self.joint_labels,
                   self.frusta, self.cam_labels, self.label_bones, self.label_joints)
        hidden = [v for v in visuals if not v.visible]
        self._set_visible(*hidden, on=True)
        try:
            self.canvas.render()
        finally:
            self._set_visible(*hidden, on=False)
            self.joint_labels.text, self.info.text = names, caption

    def close(self) -> None:
        self.canvas.close()
