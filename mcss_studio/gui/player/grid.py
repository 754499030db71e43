"""All cameras of the sequence in one grid, kept on the state's current frame.

Frames come from the display proxies at once (scrubbing); during playback the next frames'
proxies are read ahead and fitted to the views by a background worker (prefetch.py), so that
showing them is a blit; the full-resolution frame of a paused position is decoded by a
background worker and swapped in when it arrives.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QWidget

from ..state import StudioState
from ..workers import FrameDecodeWorker
from .camera_view import CameraView
from .prefetch import READ_AHEAD, ProxyPrefetcher

FULL_RES_DELAY_MS = 60


def best_grid(sizes: list[tuple[int, int]], width: int, height: int) -> tuple[int, int]:
    """(rows, cols) that shows the most image area for views of these sizes in width x height."""
    n = len(sizes)
    best, best_score = (1, max(n, 1)), -1.0
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        cw, ch = width / cols, height / rows
        score = sum(min(cw / w, ch / h) ** 2 * w * h for w, h in sizes)
        if score > best_score + 1e-9:
            best, best_score = (rows, cols), score
    return best


def hidden_in_window(widget: QWidget) -> bool:
    """Whether the widget stays hidden when its window is shown (it, or a parent, is hidden):
    work for it can wait until it is shown. A window not shown yet does not count."""
    return not widget.isVisibleTo(widget.window())


class CameraGrid(QWidget):
    """The camera views of the current sequence; double-click maximises one view."""

    frameShown = Signal(int)  # emitted when every view shows the frame (proxy or full-res)
    boxEdited = Signal(int, object)  # camera index, new box (native px): the window commits it
    view_class: type[CameraView] = CameraView  # a grid of other views (labelling) subclasses

    def __init__(self, state: StudioState, decoder: FrameDecodeWorker,
                 prefetcher: ProxyPrefetcher | None = None, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.decoder = decoder
        self.prefetcher = prefetcher  # None: every proxy is decoded here, none read ahead
        self.views: list[CameraView] = []
        self.layout_ = QGridLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.setSpacing(2)
        self.shown_frame = -1
        self.full_res_frame = -1
        self._last_played = -1  # the previous frame shown during playback
        self._gt2d: np.ndarray | None = None  # (C, T, 17, 2)
        self._full_res_timer = QTimer(self)
        self._full_res_timer.setSingleShot(True)
        self._full_res_timer.timeout.connect(self._request_full_res)
        state.sequenceChanged.connect(self._rebuild)
        state.frameChanged.connect(self.show_frame)
        state.mediaChanged.connect(lambda: self.show_frame(self.state.frame, force=True))
        state.maximisedChanged.connect(self._relayout)
        state.overlaysChanged.connect(self._update_overlays)
        state.predictionChanged.connect(lambda _p: self._update_overlays())
        state.selectionChanged.connect(self._select)
        state.playingChanged.connect(self._playing_changed)
        state.viewsResetRequested.connect(self._reset_views)
        state.boxEditingChanged.connect(lambda _on: self._update_overlays())
        state.boxesChanged.connect(lambda _track: self._update_overlays())
        decoder.done.connect(self._full_res_arrived)

    # -- building -----------------------------------------------------------------------------
    def _rebuild(self, seq) -> None:
        for v in self.views:
            self.layout_.removeWidget(v)
            v.deleteLater()
        self.views = []
        self.shown_frame = self.full_res_frame = -1
        self._gt2d = None
        if seq is None:
            return
        for i, cam in enumerate(seq.cameras):
            view = self.view_class(i, cam.name, (cam.width, cam.height), self)
            view.doubleClicked.connect(self.state.toggle_maximised)
            view.clicked.connect(self.state.select_camera)
            view.boxEdited.connect(self.boxEdited)
            self.views.append(view)
        if seq.joints3d is not None and seq.is_calibrated:
            joints = seq.joints3d[: seq.num_frames]
            self._gt2d = np.stack([c.calibration.project(joints) for c in seq.cameras])
        self._relayout()

    def _relayout(self, *_args) -> None:
        for v in self.views:
            self.layout_.removeWidget(v)
        maxi = self.state.maximised_camera
        if 0 <= maxi < len(self.views):
            for v in self.views:
                v.setVisible(v.index == maxi)
            self.layout_.addWidget(self.views[maxi], 0, 0)
            return
        sizes = [(v.native_w, v.native_h) for v in self.views]
        rows, cols = best_grid(sizes, max(self.width(), 1), max(self.height(), 1))
        for i, v in enumerate(self.views):
            v.setVisible(True)
            self.layout_.addWidget(v, i // cols, i % cols)
        self._grid_shape = (rows, cols)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.views and self.state.maximised_camera < 0:
            sizes = [(v.native_w, v.native_h) for v in self.views]
            if best_grid(sizes, self.width(), self.height()) != getattr(self, "_grid_shape", None):
                self._relayout()

    # -- frames -------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.catch_up()

    def setVisible(self, visible: bool) -> None:  # noqa: N802
        super().setVisible(visible)
        self.catch_up()  # a window not shown yet sends no showEvent

    def catch_up(self) -> None:
        """Show the state's frame if frames were skipped while hidden."""
        if self.shown_frame != self.state.frame:
            self.show_frame(self.state.frame, force=True)

    def show_frame(self, t: int, force: bool = False) -> None:
        media = self.state.media
        if media is None or not self.views or hidden_in_window(self):
            return  # a hidden grid (labelling mode's, or the player's in it) catches up on show
        if t == self.shown_frame and not force:
            return
        shown_all = True
        for view in self.views:
            ahead = self._take_ahead(media, view, t)
            if ahead is not None:
                view.set_prepared(ahead, t)
                continue
            proxy = media.proxy_frame(view.index, t)
            if proxy is None:
                shown_all = False
                continue
            view.set_frame(proxy[0], proxy[1], t, full_res=False)
        self._update_overlays()
        if self.prefetcher is not None and self.state.playing and media.has_proxies:
            self._read_ahead(media, t)
        if shown_all:
            self.shown_frame = t
            self.state.report_frame_displayed()
            self.frameShown.emit(t)
        if not media.has_proxies:
            self.decoder.submit((media, t))  # the only source until proxies exist
        elif not self.state.playing:
            self._full_res_timer.start(FULL_RES_DELAY_MS)

    def _take_ahead(self, media, view: CameraView, t: int):
        if self.prefetcher is None:
            return None
        return self.prefetcher.take(media, view.index, t, view.fitted_size())

    def _read_ahead(self, media, t: int) -> None:
        """Ask for the frames the playback clock shows next (it skips frames when the display
        falls behind, so the step is the one between the last two frames shown)."""
        step = t - self._last_played if 0 < t - self._last_played <= 8 else 1
        self._last_played = t
        n = self.state.num_frames
        frames = [(t + step * k) % n for k in range(1, READ_AHEAD + 1)]
        sizes = [v.fitted_size() if v.isVisible() else None for v in self.views]
        self.prefetcher.submit((media, frames, sizes))

    def _request_full_res(self) -> None:
        media = self.state.media
        if media is not None and not self.state.playing and self.full_res_frame != self.state.frame:
            self.decoder.submit((media, self.state.frame))

    def _full_res_arrived(self, result) -> None:
        media, t, frames = result
        if media is not self.state.media or t != self.state.frame or len(frames) != len(self.views):
            return  # stale: the user has moved on
        for view, rgb in zip(self.views, frames):
            view.set_frame(rgb, 1.0, t, full_res=True)
        self.full_res_frame = t
        if self.shown_frame != t:
            self.shown_frame = t
            self.state.report_frame_displayed()
            self.frameShown.emit(t)

    def _playing_changed(self, playing: bool) -> None:
        if playing:
            return
        if self.prefetcher is not None:
            self.prefetcher.clear()
        self._full_res_timer.start(FULL_RES_DELAY_MS)

    # -- overlays -----------------------------------------------------------------------------
    def _update_overlays(self) -> None:
        media, t, on = self.state.media, self.state.frame, self.state.overlays
        if media is None:
            return
        boxes = media.person_boxes(t) if on["box"] else None
        pred = self.state.prediction
        use_pred = on["skeleton"] and pred is not None and (pred.frame == t or self.state.playing)
        # the player's own views only: a grid of other views (labelling) has its own mouse
        editing = self.state.box_editing and self.view_class is CameraView
        for view in self.views:
            c = view.index
            gt = self._gt2d[c, t] if (on["gt"] and self._gt2d is not None) else None
            view.set_overlays(
                None if boxes is None else boxes[c],
                pred.points2d[c] if use_pred else None,
                gt,
                on["names"],
            )
            view.set_box_editing(editing, self.state.box_keyed(c, t))

    def _reset_views(self) -> None:
        for v in self.views:
            v.reset_view()

    def _select(self, index: int) -> None:
        for v in self.views:
            v.selected = v.index == index
            v.update()
