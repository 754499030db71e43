"""The embedding map: every crop of the index as a point of the 2D PCA projection.

Colour by camera, time, sequence, subject, action or pose error (P-MPJPE of the predicted pose to
ground truth). Points are one pyqtgraph ScatterPlotItem made once per index; a colouring is a
group per point (computed once per mode) and a few shared brushes (the 12 palette colours, or 12
bins of a continuous value, + grey), set by `set_point_brushes` as arrays: pyqtgraph's own
per-point setBrush looks each point up in its symbol atlas (1 s at 100,000 points), and one
item per colour (the previous design) cost 0.43 s to rebuild; this takes about 10 ms plus the
paint (benchmarks/bench_embeddings.py measures recolour, repaint and pick).

Hovering shows the crop under the pointer; a click asks the Session to show that crop
(state.request_goto); Shift+drag selects a box or draws a lasso (the "Select" choice), whose
crops go to the shared frame set (source "map"), which the gallery then shows; the gallery's
neighbours (source "gallery") are outlined here. The crop the player shows is marked and follows
playback. The projection is computed with the index, in the Session's worker.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.embedding_store import crop_of
from ..core.embeddings import points_in_polygon
from .gallery import crop_image, no_index_text
from .state import StudioState

COLOUR_BY = ("camera", "time", "sequence", "subject", "action", "pose error")
PALETTE = [QColor(c) for c in ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                               "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295")]
BINS = 12
SELECT_MODES = ("box", "lasso")
# drawing order over the points (z 0): the selection's rings, the box or lasso drawn, the
# current crop's star on top
RINGS_Z, SHAPE_Z, CURRENT_Z = 10, 15, 20
PICK_PX = 8.0  # how near (screen pixels) the pointer must be to pick a point


def colour_groups(index, mode: str) -> tuple[np.ndarray, list[QColor], list[str]]:
    """(group of each row, colour of each group, legend text of each group)."""
    if mode in ("time", "pose error"):
        if mode == "time":
            frames = np.array([s.frames for s in index.sequences])[index.seq_id]
            value = index.frame / np.maximum(frames - 1, 1)
            lo, hi, unit = 0.0, 1.0, "of the sequence"
        else:
            value = index.pose_errors()
            finite = value[np.isfinite(value)]
            lo, hi = (float(np.percentile(finite, 2)), float(np.percentile(finite, 98))) \
                if len(finite) else (0.0, 1.0)
            unit = "mm"
        cmap = pg.colormap.get("viridis")
        colours = [cmap.mapToQColor((i + 0.5) / BINS) for i in range(BINS)]
        span = max(hi - lo, 1e-9)
        group = np.clip(((value - lo) / span * BINS).astype(np.int64), 0, BINS - 1)
        group = np.where(np.isfinite(value), group, BINS)  # no value: grey
        colours.append(QColor(120, 120, 120))
        legend = [f"{lo:.0f}" if unit == "mm" else "start"] + [""] * (BINS - 2) + \
            [f"{hi:.0f} {unit}" if unit == "mm" else "end", "none"]
        return group, colours, legend
    if mode == "camera":
        names = sorted({c for s in index.sequences for c in s.cameras})
        group = np.zeros(len(index), np.int64)
        for s in index.sequences:  # camera names, not indices: rigs may differ per sequence
            rows = slice(s.first_row, s.first_row + s.rows)
            group[rows] = np.array([names.index(c) for c in s.cameras])[index.camera[rows]]
        labels = names
    else:
        attr = {"sequence": "name", "subject": "subject", "action": "action"}[mode]
        values = [str(getattr(s, attr)) for s in index.sequences]
        labels = list(dict.fromkeys(values))
        group = np.array([labels.index(v) for v in values], np.int64)[index.seq_id]
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(labels))]
    return group, colours, labels


def set_point_brushes(item: pg.ScatterPlotItem, group: np.ndarray, brushes: list) -> None:
    """Give point i of `item` brushes[group[i]], with array writes only.

    pyqtgraph's setBrush(array) renders or looks up each point's symbol in the item's atlas one
    by one; here each distinct brush is looked up once (the atlas returns every coordinate after
    adding the new symbols, so they are consistent) and the per-point brush and atlas rectangle
    are written as arrays. Uses ScatterPlotItem's documented point fields `brush` and
    `sourceRect` (pyqtgraph 0.13/0.14); tests/test_embedding_panels.py checks the painted
    colours."""
    data = item.data
    if len(group) != len(data):
        raise ValueError(f"{len(group)} groups for {len(data)} points")
    styles = [(item.opts["symbol"], item.opts["size"], item.opts["pen"], b) for b in brushes]
    table = np.zeros(len(styles), dtype=data["sourceRect"].dtype)
    table[:] = item.fragmentAtlas[styles]
    shared = np.empty(len(brushes), object)
    shared[:] = brushes
    data["brush"] = shared[group]
    data["sourceRect"] = table[group]
    item.invalidate()


class _MapViewBox(pg.ViewBox):
    """Pan and zoom as usual; Shift+drag draws a selection box or a lasso (`mode`); a click
    picks."""

    boxSelected = Signal(QRectF)  # in view coordinates
    lassoSelected = Signal(object)  # (M, 2) float64 polygon in view coordinates
    clickedAt = Signal(QPointF)

    def __init__(self) -> None:
        super().__init__()
        self.mode = "box"
        pen = pg.mkPen((255, 210, 0), width=2, style=Qt.PenStyle.DashLine)
        self.band = QGraphicsRectItem()
        self.lasso = QGraphicsPathItem()
        for item in (self.band, self.lasso):
            item.setPen(pen)
            item.setBrush(pg.mkBrush(255, 210, 0, 40))
            item.setZValue(SHAPE_Z)  # above the selection rings, which would hide the outline
            item.hide()
            self.addItem(item, ignoreBounds=True)
        self._lasso_points: list[QPointF] = []

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph's name
        if not ev.modifiers() & Qt.KeyboardModifier.ShiftModifier or \
                ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if self.mode == "lasso":
            self._lasso_drag(ev)
            return
        rect = QRectF(self.mapToView(ev.buttonDownPos()), self.mapToView(ev.pos())).normalized()
        self.band.setRect(rect)
        self.band.setVisible(not ev.isFinish())
        if ev.isFinish():
            self.boxSelected.emit(rect)

    def _lasso_drag(self, ev) -> None:
        """Grow the lasso by the pointer's path; on release, emit it closed."""
        if ev.isStart() or not self._lasso_points:
            self._lasso_points = [self.mapToView(ev.buttonDownPos())]
        self._lasso_points.append(self.mapToView(ev.pos()))
        path = QPainterPath(self._lasso_points[0])
        for point in self._lasso_points[1:]:
            path.lineTo(point)
        path.closeSubpath()
        self.lasso.setPath(path)
        self.lasso.setVisible(True)
        if ev.isFinish():
            polygon = np.array([(p.x(), p.y()) for p in self._lasso_points], np.float64)
            self._lasso_points = []
            self.lassoSelected.emit(polygon)

    def clear_selection_shape(self) -> None:
        """Hide the last lasso (it stays drawn while its selection is shown)."""
        self.lasso.hide()

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.clickedAt.emit(self.mapToView(ev.pos()))
        else:
            super().mouseClickEvent(ev)


class EmbeddingMapPanel(QWidget):
    """2D map of the embedding index: hover, click, box or lasso selection, the current crop."""

    def __init__(self, state: StudioState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.xy = np.zeros((0, 2), np.float32)
        self._colourings: dict[str, tuple[np.ndarray, list, list[QColor], list[str]]] = {}
        self.hovered: int | None = None
        self._build()
        state.embeddingIndexChanged.connect(lambda _i: self.redraw())
        state.frameSetChanged.connect(lambda *_: self._show_frame_set())
        for signal in (state.frameChanged, state.selectionChanged, state.sequenceChanged):
            signal.connect(lambda *_: self._mark_current())
        self.redraw()

    def _build(self) -> None:
        self.colour_by = QComboBox()
        self.colour_by.addItems(COLOUR_BY)
        self.colour_by.currentIndexChanged.connect(lambda _i: self.recolour())
        self.select_mode = QComboBox()
        self.select_mode.addItems(SELECT_MODES)
        self.select_mode.setToolTip("What Shift+drag selects: a box or a free-hand lasso")
        self.select_mode.currentTextChanged.connect(self._mode_chosen)
        clear = QPushButton("Clear selection")
        clear.clicked.connect(lambda: self.state.set_frame_set((), "map"))
        self.caption = QLabel()
        top = QHBoxLayout()
        top.addWidget(QLabel("Colour by"))
        top.addWidget(self.colour_by)
        top.addWidget(QLabel("Select"))
        top.addWidget(self.select_mode)
        top.addWidget(clear)
        top.addWidget(self.caption, 1)
        self.view = _MapViewBox()
        self.plot = pg.PlotWidget(viewBox=self.view)
        self.plot.setBackground((24, 25, 28))
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.view.boxSelected.connect(self._box_selected)
        self.view.lassoSelected.connect(self._lasso_selected)
        self.view.clickedAt.connect(self._clicked)
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.points = pg.ScatterPlotItem(size=4, pen=None, pxMode=True)
        self.plot.addItem(self.points)
        self.picked = pg.ScatterPlotItem(size=9, pen=pg.mkPen("w", width=1.5), brush=None)
        self.current = pg.ScatterPlotItem(size=20, symbol="star", pen=pg.mkPen("k", width=1),
                                          brush=pg.mkBrush(255, 220, 0))
        self.picked.setZValue(RINGS_Z)
        self.current.setZValue(CURRENT_Z)
        for item in (self.picked, self.current):
            self.plot.addItem(item)
        self.hover_image = QLabel()
        self.hover_image.setFixedSize(128, 128)
        self.hover_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hover_text = QLabel()
        self.hover_text.setWordWrap(True)
        self.hover_text.setFixedWidth(128)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.legend.setFixedWidth(128)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        side = QVBoxLayout()
        for w in (self.hover_image, self.hover_text, self.legend):
            side.addWidget(w)
        side.addStretch(1)
        body = QHBoxLayout()
        body.addWidget(self.plot, 1)
        body.addLayout(side)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(body, 1)

    # -- drawing --------------------------------------------------------------------------------
    def redraw(self) -> None:
        """All points of the state's index (its projection), coloured; the current crop and the
        shared selection marked."""
        index = self.state.embedding_index
        self._colourings = {}
        if index is None:
            self.xy = np.zeros((0, 2), np.float32)
            self.points.setData(x=[], y=[])
            self.caption.setText(no_index_text(self.state))
            self.legend.setText("")
        else:
            self.xy = index.projection()
            self.points.setData(x=self.xy[:, 0], y=self.xy[:, 1])
            self.recolour()
            self.caption.setText(f"{len(index)} crops, PCA of {index.dim}-d embeddings. "
                                 "Shift+drag: select; click: show")
            self.view.autoRange(padding=0.02)
        self._show_frame_set()
        self._mark_current()

    def colouring(self, mode: str) -> tuple[np.ndarray, list, list[QColor], list[str]]:
        """(group per point, brush per group, colour per group, legend text per group) of the
        index shown, computed once per mode."""
        if mode not in self._colourings:
            group, colours, labels = colour_groups(self.state.embedding_index, mode)
            brushes = [pg.mkBrush(c) for c in colours]
            self._colourings[mode] = (group, brushes, colours, labels)
        return self._colourings[mode]

    def recolour(self) -> None:
        """Colour the points by the chosen mode (array writes: interactive at 100,000+)."""
        if self.state.embedding_index is None:
            return
        group, brushes, colours, labels = self.colouring(self.colour_by.currentText())
        set_point_brushes(self.points, group, brushes)
        shown = [(c, t) for c, t in zip(colours, labels) if t]
        self.legend.setText("<br>".join(
            f"<span style='color:{c.name()}'>&#9632;</span> {t}" for c, t in shown[:24])
            + (f"<br>... {len(shown) - 24} more" if len(shown) > 24 else ""))

    def _show_frame_set(self) -> None:
        if self.state.frame_set_source != "map" or not self.state.frame_set:
            self.view.clear_selection_shape()  # the lasso goes with its selection
        index = self.state.embedding_index
        rows = index.rows_of(self.state.frame_set) if index is not None else []
        self.picked.setData(x=self.xy[rows, 0], y=self.xy[rows, 1]) if rows else \
            self.picked.setData(x=[], y=[])

    def current_row(self) -> int | None:
        s, index = self.state, self.state.embedding_index
        if index is None or s.sequence is None:
            return None
        rows = index.rows_of([(s.sequence.name, max(s.selected_camera, 0), s.frame)])
        return rows[0] if rows else None

    def _mark_current(self) -> None:
        row = self.current_row()
        if row is None:
            self.current.setData(x=[], y=[])
        else:
            self.current.setData(x=[float(self.xy[row, 0])], y=[float(self.xy[row, 1])])

    # -- picking --------------------------------------------------------------------------------
    def nearest(self, point: QPointF) -> int | None:
        """The row drawn within PICK_PX screen pixels of a view point, nearest first."""
        if not len(self.xy):
            return None
        px, py = self.view.viewPixelSize()
        d2 = ((self.xy[:, 0] - point.x()) / px) ** 2 + ((self.xy[:, 1] - point.y()) / py) ** 2
        row = int(np.argmin(d2))
        return row if d2[row] <= PICK_PX ** 2 else None

    def rows_in(self, rect: QRectF) -> np.ndarray:
        x, y = self.xy[:, 0], self.xy[:, 1]
        inside = (x >= rect.left()) & (x <= rect.right()) & (y >= rect.top()) & \
            (y <= rect.bottom())
        return np.flatnonzero(inside)

    def lasso(self, polygon: np.ndarray) -> None:
        """Select the crops inside `polygon` (view coordinates) as a drawn lasso does, and show
        it (scripts and screenshots)."""
        polygon = np.asarray(polygon, np.float64)
        self.select_mode.setCurrentText("lasso")
        path = QPainterPath(QPointF(*polygon[0]))
        for x, y in polygon[1:]:
            path.lineTo(QPointF(x, y))
        path.closeSubpath()
        self.view.lasso.setPath(path)
        self.view.lasso.show()
        self._lasso_selected(polygon)

    def lasso_around_current(self, fraction: float = 0.03, vertices: int = 24) -> None:
        """A round lasso around the crop the player shows, of `fraction` of the map's extent."""
        row = self.current_row()
        if row is None or not len(self.xy):
            return
        radius = fraction * (self.xy.max(0) - self.xy.min(0))
        angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
        self.lasso(self.xy[row] + np.c_[np.cos(angles), np.sin(angles)] * radius)

    def rows_in_polygon(self, polygon: np.ndarray) -> np.ndarray:
        return np.flatnonzero(points_in_polygon(self.xy, polygon))

    def _mode_chosen(self, mode: str) -> None:
        self.view.mode = mode

    def _box_selected(self, rect: QRectF) -> None:
        self._select(self.rows_in(rect))

    def _lasso_selected(self, polygon: np.ndarray) -> None:
        self._select(self.rows_in_polygon(polygon))

    def _select(self, rows: np.ndarray) -> None:
        index = self.state.embedding_index
        if index is not None:
            self.state.set_frame_set([index.key(int(r)) for r in rows], "map")

    def _clicked(self, point: QPointF) -> None:
        row = self.nearest(point)
        index = self.state.embedding_index
        if row is not None and index is not None:
            self.state.request_goto(*index.key(row))

    def _hover(self, scene_pos) -> None:
        index = self.state.embedding_index
        if index is None or not self.view.sceneBoundingRect().contains(scene_pos):
            return
        row = self.nearest(self.view.mapSceneToView(scene_pos))
        if row is None or row == self.hovered:
            return
        self.hovered = row
        crop = crop_of(index, row)
        if crop is not None:
            self.hover_image.setPixmap(QPixmap.fromImage(crop_image(crop)).scaled(
                128, 128, Qt.AspectRatioMode.KeepAspectRatio))
        seq, cam, frame = index.key(row)
        error = index.pose_errors()[row]
        self.hover_text.setText(f"{seq}\n{index.info(row).cameras[cam]}, frame {frame}"
                                + (f"\nP-MPJPE {error:.0f} mm" if np.isfinite(error) else ""))

    def ready(self) -> bool:
        return self.state.embedding_index is not None and len(self.points.data) == len(self.xy) \
            > 0
