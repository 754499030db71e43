"""Rendering the window or one panel into an image, and the `--screenshot` run that waits for
the frame, its full-resolution pixels and its prediction before saving."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QPointF, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from ..core.errors import UserInputError
from .box_editor import BoxDrag

PANELS = ("window", "player", "3d", "transport", "labelling", "training", "inspector",
          "gallery", "map", "boxes", "camera:<name or index>")
EMBEDDING_PANELS = {"gallery": "gallery", "map": "embedding_map"}  # panel -> window attribute


def _rgba_to_qimage(rgba: np.ndarray) -> QImage:
    rgba = np.ascontiguousarray(
        rgba[..., :4]
        if rgba.shape[2] == 4
        else np.dstack([rgba, np.full(rgba.shape[:2], 255, np.uint8)])
    )
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, rgba.strides[0], QImage.Format.Format_RGBA8888).copy()


def wait_until(app: QApplication, done: Callable[[], object], seconds: float = 900,
               what: str = "the Studio") -> None:
    """Run the event loop until done() holds (for scripts that drive a window); exit the script
    with one line after `seconds`."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def show_training_panel(window) -> None:
    """The training dock as a window of the main window's size (it is hidden by default)."""
    dock = window.training_dock
    if not dock.isVisible():
        dock.setFloating(True)
        dock.resize(window.size())
        dock.show()
        QApplication.processEvents()


def render_panel(window, panel: str = "window") -> QImage:
    """The window or one panel as an image (the 3D view shows an offscreen render, which is
    brought up to date first, so a plain grab holds it)."""
    QApplication.processEvents()
    panel = panel.strip().lower()
    if panel == "window":
        if window.view3d is not None and window.view3d.isVisible():
            window.view3d.render_image()
        return window.grab().toImage()
    if panel in ("player", "grid"):
        return window.grid.grab().toImage()
    if panel == "3d":
        if window.view3d is None:
            raise UserInputError("--panel", "the 3D view is disabled")
        return _rgba_to_qimage(window.view3d.render_image())
    if panel == "transport":
        return window.transport.grab().toImage()
    if panel == "boxes":  # the window editing boxes, a drag of the selected view's box shown
        show_box_drag(window)
        return render_panel(window, "window")
    if panel == "labelling":
        window.set_labelling(True)
        QApplication.processEvents()
        return window.labelling.grab().toImage()
    if panel == "training":
        show_training_panel(window)
        return window.training_panel.grab().toImage()
    if panel == "inspector":
        return window.inspector.grab().toImage()
    if panel in EMBEDDING_PANELS:  # a dock of the window: floated at a readable size
        dock = window.docks[panel]
        dock.show()
        dock.setFloating(True)
        dock.resize(1280, 720)
        QApplication.processEvents()
        return getattr(window, EMBEDDING_PANELS[panel]).grab().toImage()
    if panel.startswith("camera:"):
        key = panel.split(":", 1)[1]
        for v in window.grid.views:
            if v.name.lower() == key or str(v.index) == key:
                return v.grab().toImage()
        names = ", ".join(v.name for v in window.grid.views)
        raise UserInputError("--panel", f"no camera {key!r} (cameras: {names})")
    raise UserInputError("--panel", f"unknown panel {panel!r} (choose from {', '.join(PANELS)})")


def show_box_drag(window) -> None:
    """Box editing on, the selected view (else the first) showing a drag in progress: its box's
    top edge pulled up by a quarter of the box (a box drawn in the middle of a view without
    one), as a user correcting a box that stops at the shoulders sees it."""
    state = window.state
    state.set_box_editing(True)
    if state.selected_camera < 0 and window.grid.views:
        state.select_camera(0)
    QApplication.processEvents()
    views = [v for v in window.grid.views if v.index == state.selected_camera]
    if not views:
        return
    view = views[0]
    box = view.box
    if box is None or not np.all(np.isfinite(box)):
        w, h = view.native_w, view.native_h
        drag = BoxDrag(None, (), QPointF(w * 0.35, h * 0.2))
        drag.move_to(QPointF(w * 0.65, h * 0.9))
    else:
        drag = BoxDrag(box, (1,), QPointF(float(box[0]), float(box[1])))
        drag.move_to(QPointF(float(box[0]), max(0.0, box[1] - (box[3] - box[1]) / 4)))
    view.box_drag = drag
    view.update()
    QApplication.processEvents()


class ScreenshotJob(QObject):
    """Waits until the window shows `frame` at full resolution with its prediction, then saves."""

    def __init__(self, window, out: Path, frame: int | None, panel: str, timeout_s: float = 300,
                 mine_now: bool = False, lasso: bool = False):
        super().__init__(window)
        self.window, self.out, self.frame, self.panel = window, Path(out), frame, panel
        self.mine_now, self.lasso = mine_now, lasso  # actions taken once the panel is ready
        self._acted = False
        self.deadline = time.monotonic() + timeout_s
        self.exit_code: int | None = None
        self._frame_set = False
        self._settled_polls = 0  # the training panel: read and drawn on two polls in a row
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._poll)
        window.errorShown.connect(self._error)

    def start(self) -> None:
        if self.panel.strip().lower() == "inspector":  # the panel alone, at the window's size
            dock = self.window.inspector_dock
            dock.setFloating(True)
            dock.resize(self.window.size())
            dock.show()
            if self.mine_now:  # Mine now needs the embedding index, which a shown dock asks for
                self.window.docks["gallery"].show()
        dock = self.window.docks.get(self.panel.strip().lower())
        if self.panel.strip().lower() in EMBEDDING_PANELS and dock is not None:
            dock.show()  # its index is computed while the frame is made ready
        self.timer.start(50)

    def _error(self, message: str) -> None:
        print(f"mcss-studio: {message}", file=sys.stderr)
        self._finish(2)

    def _ready(self) -> bool:
        w, s = self.window, self.window.state
        if self.panel.strip().lower() == "inspector" and not self.mine_now:
            return w.inspector.ready()
        if s.sequence is None or w.session.cache_busy:
            return False
        if not self._frame_set:
            target = 0 if self.frame is None else self.frame
            if not 0 <= target < s.num_frames:
                raise UserInputError(
                    "--frame", f"frame {target} out of range 0..{s.num_frames - 1}"
                )
            s.set_frame(target)
            self._grid().show_frame(target, force=True)
            self._frame_set = True
            return False
        if self._grid().full_res_frame != s.frame:
            return False
        if self.panel.strip().lower() == "training":
            show_training_panel(w)
            self._settled_polls = self._settled_polls + 1 if w.training_panel.settled() else 0
            if self._settled_polls < 3:
                return False
        if s.checkpoint_requested is not None or s.checkpoint is not None:
            return (
                s.checkpoint is not None
                and s.prediction is not None
                and (s.prediction.frame == s.frame)
                and self._panel_ready()
            )
        return True

    def _grid(self):
        """The camera grid on screen: the labelling panel's in labelling mode."""
        labelling = self.window.labelling
        return labelling.grid if labelling.isVisible() else self.window.grid
    def _panel_ready(self) -> bool:
        """An embedding panel waits for the index and its answer (the gallery also for the
        retrieval figures); with --mine-now or --lasso, the action is then taken once and
        waited for."""
        if self.panel.strip().lower() == "inspector":
            return self._mined()
        name = EMBEDDING_PANELS.get(self.panel.strip().lower())
        if name is None:
            return True
        panel = getattr(self.window, name)
        waiting = name == "gallery" and self.window.state.retrieval is None
        if not panel.ready() or waiting:
            return False
        if self.lasso and name == "embedding_map" and not self._acted:
            self._acted = True
            panel.lasso_around_current()
        return True

    def _mined(self) -> bool:
        """Mine now once the index is there; then ready when its triplets and crops are."""
        inspector = self.window.inspector
        if not self._acted:
            if self.window.state.embedding_index is None:
                return False
            self._acted = inspector.mine_now()
            if not self._acted:
                raise UserInputError("--frame", "the shown frame is not in the embedding index")
            return False
        return inspector.mined is not None and inspector.ready()

    def _poll(self) -> None:
        if self.exit_code is not None:
            return
        try:
            ready = self._ready()
        except UserInputError as exc:
            self._error(str(exc))
            return
        if not ready and time.monotonic() < self.deadline:
            return
        if not ready:
            print(
                "mcss-studio: timed out waiting for the frame; saving what is shown",
                file=sys.stderr,
            )
        try:
            image = render_panel(self.window, self.panel)
        except UserInputError as exc:
            self._error(str(exc))
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".tmp.png")
        if not image.save(str(tmp), "PNG"):
            self._error(f"{self.out}: cannot write the screenshot")
            return
        tmp.replace(self.out)
        print(f"saved {self.out} ({image.width()}x{image.height()}, panel {self.panel})")
        self._finish(0)

    def _finish(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
            self.timer.stop()
            QApplication.instance().exit(code)
