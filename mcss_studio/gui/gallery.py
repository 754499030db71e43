"""The neighbour gallery: which crops the model's embedding puts next to the current one.

For the current (sequence, camera, frame) it shows the top-k rows of the embedding index under
the chosen filters as tiles: crop, a small drawing of the predicted pose, distance, camera,
sequence, frame and dt; with ground truth each tile is marked correct or wrong by the retrieval
criterion (core/retrieval.py, kappa 0.1) with the P-MPJPE of its ground truth to the query's.
A click asks the Session to show that crop (state.request_goto). A box or lasso selection on
the map (state.frame_set from "map") replaces the neighbours by the selected crops; the
neighbours shown are published to the state (source "gallery") so the map highlights them.

The queries run in the Session's NeighbourWorker: during playback only the newest request is
worked on and answers to older ones are dropped here, so the gallery never slows the player.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.embeddings import NeighbourFilter
from ..core.joints import BONES, bone_colors
from ..core.retrieval import KAPPA
from .embedding_jobs import GalleryAnswer, GalleryItem, GalleryRequest, NeighbourWorker
from .state import StudioState

TILE = QSize(176, 140)
THUMB = 84
COLUMNS = 5
MAX_SHOWN = 60  # of a map selection; the rest is counted
CORRECT, WRONG = QColor(60, 190, 90), QColor(225, 70, 60)


def no_index_text(state: StudioState) -> str:
    """Why there is nothing to show yet."""
    if state.checkpoint is None or state.dataset is None:
        return "No embedding index: load a checkpoint on a dataset"
    return "Computing the embedding index (progress in the status bar)..."


def crop_image(crop: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(crop[..., :3], np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888).copy()


def draw_pose(painter: QPainter, pose: np.ndarray, box: QRectF) -> None:
    """The camera-frame pose (x right, y down) as seen by its camera, fitted into box."""
    xy = np.asarray(pose, np.float64)[:, :2]
    if not np.isfinite(xy).all():
        return
    lo, hi = xy.min(0), xy.max(0)
    scale = 0.9 * min(box.width(), box.height()) / max(float((hi - lo).max()), 1e-6)
    centre = (lo + hi) / 2
    pts = (xy - centre) * scale + [box.center().x(), box.center().y()]
    for (a, b), colour in zip(BONES, bone_colors()):
        painter.setPen(QPen(QColor(*colour), 2))
        painter.drawLine(*(float(v) for v in (*pts[a], *pts[b])))


class GalleryTile(QWidget):
    """One neighbour: crop, pose drawing, numbers; a click jumps there."""

    clicked = Signal(str, int, int)

    def __init__(self, item: GalleryItem, rank: int, query_key, camera_names, parent=None):
        super().__init__(parent)
        self.item, self.rank = item, rank
        self.query_key, self.camera_names = query_key, camera_names
        self.image = crop_image(item.crop) if item.crop is not None else None
        self.highlighted = False
        self.setFixedSize(TILE)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        seq, cam, frame = item.key
        self.setToolTip(f"{seq}, camera {self._camera(cam)}, frame {frame}: click to show it")

    def _camera(self, cam: int) -> str:
        return self.camera_names(self.item.row) if callable(self.camera_names) else str(cam)

    def dt_text(self) -> str:
        seq, _cam, frame = self.item.key
        if self.query_key is None or seq != self.query_key[0]:
            return "other seq"
        return f"dt {frame - self.query_key[2]:+d}"

    def paintEvent(self, _event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(34, 36, 40))
        border = {True: CORRECT, False: WRONG}.get(self.item.correct, QColor(90, 90, 96))
        p.setPen(QPen(border, 4 if self.item.correct is not None else 1))
        p.drawRect(self.rect().adjusted(2, 2, -2, -2))
        if self.image is not None:
            p.drawImage(QRectF(6, 6, THUMB, THUMB), self.image)
        draw_pose(p, self.item.pose, QRectF(THUMB + 10, 6, TILE.width() - THUMB - 16, THUMB))
        seq, cam, frame = self.item.key
        p.setPen(QColor(230, 230, 230))
        lines = [f"#{self.rank}  d {self.item.distance:.3f}  {self._camera(cam)}",
                 f"{seq}  f {frame}  {self.dt_text()}"]
        if self.item.correct is not None:
            mark = "correct" if self.item.correct else "wrong"
            lines.append(f"{mark}  P-MPJPE {self.item.p_mpjpe:.0f} mm")
        for i, line in enumerate(lines):
            p.drawText(6, THUMB + 20 + 13 * i, line)
        if self.highlighted:
            p.setPen(QPen(QColor(255, 210, 0), 2))
            p.drawRect(self.rect().adjusted(5, 5, -6, -6))
        p.end()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(*self.item.key)


class GalleryPanel(QWidget):
    """Top-k neighbours of the current crop (or the map's selection), with filters."""

    def __init__(self, state: StudioState, worker: NeighbourWorker, parent=None) -> None:
        super().__init__(parent)
        self.state, self.worker = state, worker
        self.serial = 0  # of the newest request: answers to older ones are stale
        self.answer: GalleryAnswer | None = None
        self.dropped = 0
        self.tiles: list[GalleryTile] = []
        self._build()
        worker.done.connect(self._answered)
        for signal in (state.frameChanged, state.selectionChanged, state.sequenceChanged,
                       state.embeddingIndexChanged):
            signal.connect(lambda *_: self.refresh())
        state.frameSetChanged.connect(self._frame_set_changed)
        state.retrievalChanged.connect(self._show_retrieval)
        self.refresh()

    # -- controls -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.k_box = QSpinBox(minimum=1, maximum=50, value=10, prefix="k ")
        self.other_cameras = QCheckBox("other cameras", checked=True)
        self.min_dt = QSpinBox(minimum=0, maximum=10000, value=0, prefix="|dt| >= ")
        self.min_dt.setToolTip("Exclude crops of the same sequence closer in time than this "
                               "(0: none)")
        self.sequence_scope = QComboBox()
        self.sequence_scope.addItems(["any sequence", "same sequence", "other sequences"])
        self.subject_scope = QComboBox()
        self.subject_scope.addItems(["any subject", "same subject", "other subjects"])
        self.least = QCheckBox("least similar")
        controls = QHBoxLayout()
        for w in (self.k_box, self.other_cameras, self.min_dt, self.sequence_scope,
                  self.subject_scope, self.least):
            controls.addWidget(w)
            signal = getattr(w, "valueChanged", None) or getattr(w, "toggled", None) or \
                w.currentIndexChanged
            signal.connect(lambda *_: self.refresh())
        controls.addStretch(1)
        self.caption = QLabel()
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(4)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        self.retrieval = QLabel()
        self.retrieval.setWordWrap(True)
        self.retrieval.setTextFormat(Qt.TextFormat.PlainText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.caption)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.retrieval)
        self._show_retrieval(self.state.retrieval)

    def neighbour_filter(self) -> NeighbourFilter:
        scopes = ("any", "same", "other")
        return NeighbourFilter(
            other_cameras=self.other_cameras.isChecked(), min_dt=self.min_dt.value(),
            sequence=scopes[self.sequence_scope.currentIndex()],
            subject=scopes[self.subject_scope.currentIndex()],
            least_similar=self.least.isChecked())

    # -- requests -------------------------------------------------------------------------------
    def query_row(self) -> int | None:
        """The index row of what the player shows (selected camera, else the first)."""
        s, index = self.state, self.state.embedding_index
        if index is None or s.sequence is None:
            return None
        try:
            return index.row(s.sequence.name, max(s.selected_camera, 0), s.frame)
        except KeyError:
            return None

    def refresh(self) -> None:
        """Ask for the current crop's neighbours (or the map selection's crops)."""
        index, row = self.state.embedding_index, self.query_row()
        self.serial += 1
        if index is None or row is None:
            self.caption.setText(no_index_text(self.state)
                                 if index is None else "This frame is not in the index")
            self._show([], None)
            return
        request = GalleryRequest(self.serial, index, row, self.k_box.value(),
                                 self.neighbour_filter())
        if self.state.frame_set_source == "map" and self.state.frame_set:
            request.rows = tuple(index.rows_of(self.state.frame_set[:MAX_SHOWN]))
        self.worker.submit(request)

    def _frame_set_changed(self, _items, source: str) -> None:
        if source == "map":
            self.refresh()
        else:
            self._mark_highlights()

    # -- answers --------------------------------------------------------------------------------
    def _answered(self, answer: GalleryAnswer) -> None:
        if answer.serial != self.serial or answer.index is not self.state.embedding_index:
            self.dropped += 1  # about a frame or filter that is no longer current
            return
        index = answer.index
        self.answer = answer
        seq, cam, frame = index.key(answer.query)
        from_map = self.state.frame_set_source == "map" and bool(self.state.frame_set)
        if from_map:
            extra = len(self.state.frame_set) - len(answer.items)
            self.caption.setText(f"Map selection: {len(self.state.frame_set)} crops"
                                 + (f" ({extra} not shown)" if extra > 0 else "")
                                 + f"; distances to {seq} camera {cam} frame {frame}")
        else:
            self.caption.setText(f"{len(answer.items)} neighbours of {seq}, camera "
                                 f"{index.info(answer.query).cameras[cam]}, frame {frame}"
                                 + self._score_text(answer))
        self._show(answer.items, (seq, cam, frame))
        if not from_map:
            self.state.set_frame_set([it.key for it in answer.items], "gallery")

    @staticmethod
    def _score_text(answer: GalleryAnswer) -> str:
        judged = [it.correct for it in answer.items if it.correct is not None]
        if not judged:
            return ""
        return f"; {sum(judged)}/{len(judged)} correct (kappa {KAPPA:g})"

    def _show(self, items: list[GalleryItem], query_key) -> None:
        for tile in self.tiles:
            tile.setParent(None)
            tile.deleteLater()
        self.tiles = []
        index = self.state.embedding_index
        names = (lambda r: index.info(r).cameras[int(index.camera[r])]) if index else None
        for i, item in enumerate(items):
            tile = GalleryTile(item, i + 1, query_key, names, self.grid_host)
            tile.clicked.connect(self.state.request_goto)
            self.grid.addWidget(tile, i // COLUMNS, i % COLUMNS)
            self.tiles.append(tile)
        self._mark_highlights()

    def _mark_highlights(self) -> None:
        """Outline the tiles of crops the map has selected (when the gallery shows neighbours)."""
        picked = set(self.state.frame_set) if self.state.frame_set_source == "map" else set()
        for tile in self.tiles:
            on = tile.item.key in picked
            if on != tile.highlighted:
                tile.highlighted = on
                tile.update()

    def _show_retrieval(self, report: dict | None) -> None:
        if not report:
            waiting = report is None and self.state.embedding_index is not None
            self.retrieval.setText("Retrieval: computing..." if waiting else
                                   "Retrieval: no ground truth" if report == {} else "")
            return
        f = report["figures"]
        parts = [f"{key} {f[key]:.2f} (chance {f['chance_' + key]:.2f})"
                 for key in ("hit@1", "hit@5", "hit@10", "map@10", "hit@1_kappa0.05",
                             "map@10_kappa0.05", "strict_hit@1", "strict_hit@10") if key in f]
        worst = min(report["pairs"].items(), key=lambda kv: kv[1]["map@10"])
        self.retrieval.setToolTip("mAP@10 per camera pair (query -> gallery):\n" + "\n".join(
            f"{i} -> {j}: {v['map@10']:.3f} (chance {f['chance_map@10']:.3f})"
            for (i, j), v in sorted(report["pairs"].items())))
        self.retrieval.setText(
            f"Retrieval over {report['instants']} instants, all camera pairs: "
            + ", ".join(parts)
            + f". Weakest pair {worst[0][0]}->{worst[0][1]}: mAP@10 {worst[1]['map@10']:.2f}")

    def ready(self) -> bool:
        """Whether the tiles answer the current request (screenshots wait for it)."""
        return self.answer is not None and self.answer.serial == self.serial
