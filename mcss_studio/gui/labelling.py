"""The labelling mode: every view of the chosen frame large, click or drag a joint in any view.

With the joint in two or more calibrated views it is triangulated live while it is dragged
(core.triangulate: DLT, refinement, the outlier view with three or more) and reprojected into
every view with each view's error; bone lengths are checked against the subject's other
labelled frames; the stored 3D label shows in the 3D view. Each edit (a drop, "occluded",
"clear", "from prediction", "accept all", "triangulate") is one LabelEditCommand handed to
`Session.execute`, so Ctrl+Z / Ctrl+Shift+Z and the history view undo and redo it on any frame.
Without calibration the 2D labels are kept and the 3D waits ("Triangulate frame" once the
sequence is calibrated). The panel keeps no labels of its own: it shows the store's label of
the state's frame, plus the drag in progress.

Keys (while the mode is shown): . / , next / previous joint; PgDown / PgUp next / previous
labelled frame (Left / Right step frames as everywhere); O occluded in the view under the mouse
(else the selected one); Del clear the joint there; Shift+Del clear the joint everywhere;
P start from the model's prediction; D start from the 2D keypoint detector (the recording's
keypoint store, else the detector run in the Session's worker thread: one undoable edit when its
answer arrives, if the frame is still the one shown); A accept all reprojections; T triangulate
the frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QKeySequence,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QUndoView,
    QVBoxLayout,
    QWidget,
)

from ..core import label_edits as edits
from ..core.joints import BONES, JOINT_NAMES, LEFT_JOINTS, RIGHT_JOINTS
from ..core.labels import OCCLUDED, SOURCES, VISIBLE, FrameLabel
from ..core.triangulate import OUTLIER_PX, CameraStack, check_bones
from .commands import LabelEditCommand
from .player.camera_view import CameraView
from .player.grid import CameraGrid, hidden_in_window

PICK_RADIUS_PX = 10.0  # a press this close to a placed joint drags it instead of placing anew
LABEL_COLOR = QColor(255, 158, 26)  # the labels' orange (also in the 3D view)
OUTLIER_COLOR = QColor(255, 60, 60)
PROVISIONAL = (SOURCES.index("model"), SOURCES.index("detector"))
SHORT_SOURCE = {"triangulated": "tri", "imported": "imp", "model": "model", "detector": "det",
                "clicked": "click"}
NAVIGATION = ("next_joint", "prev_joint", "next_frame", "prev_frame")  # also when read-only


def _side(j: int) -> str:
    return "left" if j in LEFT_JOINTS else "right" if j in RIGHT_JOINTS else "centre"


_SIDE_COLORS = {"left": QColor(60, 130, 255), "right": QColor(240, 70, 70),
                "centre": QColor(215, 215, 215)}
_BONES_BY_SIDE: dict[str, list[tuple[int, tuple[int, int]]]] = {}  # side: [(index, bone)]
for _k, _bone in enumerate(BONES):
    _BONES_BY_SIDE.setdefault(_side(_bone[1]), []).append((_k, _bone))
_BONE_A, _BONE_B = (np.array(ends) for ends in zip(*BONES))
_NEIGHBOURS = [np.array([a if b == j else b for a, b in BONES if j in (a, b)], int)
               for j in range(len(JOINT_NAMES))]
# how far (widget px) each kind of mark reaches beyond the points it joins, with a pixel of
# antialiasing and one to spare: a dot (radius 5.5 for the current joint, rim pen 1.5), an
# outlier's ring (10, pen 2.5), a cross (arms 5, square-capped pen 1.5), a line (pen 1.5)
_DOT_REACH, _RING_REACH, _CROSS_REACH, _LINE_REACH = 9.0, 14.0, 8.0, 4.0
_J = len(JOINT_NAMES)
# every mark a view draws, as the two of its points (J clicks, then J reprojections) it spans:
# the dots (a click to itself), crosses (a reprojection to itself), residual lines (a click to
# its reprojection), then the bones (a click to a click), in the order of BONES
_MARK_FROM = np.concatenate([np.arange(_J), _J + np.arange(_J), np.arange(_J), _BONE_A])
_MARK_TO = np.concatenate([np.arange(_J), _J + np.arange(_J), _J + np.arange(_J), _BONE_B])
_REACH = np.array([[_DOT_REACH]] * _J + [[_CROSS_REACH]] * _J
                  + [[_LINE_REACH]] * (_J + len(BONES)))  # (marks, 1)
_NAME_FONT: list[tuple[QFont, QFontMetrics]] = []  # made on first use: fonts need the app


def _name_font() -> tuple[QFont, QFontMetrics]:
    """The current joint's name font and its metrics (made once: a drag step measures the
    name box in every view)."""
    if not _NAME_FONT:
        font = QFont("Sans", 9, QFont.Weight.Bold)
        _NAME_FONT.append((font, QFontMetrics(font)))
    return _NAME_FONT[0]


_PHASES = 4  # dots are drawn at quarter-pixel positions, each from a ready sprite
_SPRITE_HALF = 8  # px from a sprite's corner to its dot's centre: radius 5.5, rim, antialiasing
_DOT_SPRITES: dict[tuple, QPixmap] = {}


def _dot_sprite(side: str, provisional: bool, radius: float, fx: int, fy: int, ratio: float
                ) -> QPixmap:
    """A joint's dot (filled in its side's colour, a white rim, dotted when provisional) drawn
    antialiased once into a small transparent pixmap, its centre (fx, fy) / _PHASES px past
    (_SPRITE_HALF, _SPRITE_HALF); `ratio`: the screen's device pixels per pixel. Copying it is
    a tenth of what drawing the ellipse costs, and a drag step draws dots in every view."""
    key = (side, provisional, radius, fx, fy, ratio)
    sprite = _DOT_SPRITES.get(key)
    if sprite is None:
        size = math.ceil(2 * _SPRITE_HALF * ratio)
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.setDevicePixelRatio(ratio)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pen = QPen(QColor(255, 255, 255), 1.5)
        if provisional:
            pen.setStyle(Qt.PenStyle.DotLine)
        painter.setPen(pen)
        painter.setBrush(_SIDE_COLORS[side])
        painter.drawEllipse(QPointF(_SPRITE_HALF + fx / _PHASES, _SPRITE_HALF + fy / _PHASES),
                            radius, radius)
        painter.end()
        sprite = _DOT_SPRITES[key] = QPixmap.fromImage(image)
    return sprite


def _marks_meeting(area: QRect, points: np.ndarray, outliers: np.ndarray) -> list[bool]:
    """For each mark of _MARK_FROM/_MARK_TO: whether the box its two ends span in `points`
    (a view's widget px: clicks, then reprojections), padded by how far the mark reaches, meets
    `area` (the mark may then show in it); a mark with a NaN end: False. `outliers` (J,): the
    joints whose dots have the outlier ring."""
    a, b = points[_MARK_FROM], points[_MARK_TO]
    reach = _REACH
    if outliers.any():
        reach = _REACH.copy()
        reach[:_J][outliers] = _RING_REACH
    lo, hi = (area.left(), area.top()), (area.right() + 1, area.bottom() + 1)
    return np.all((np.minimum(a, b) - reach <= hi) & (np.maximum(a, b) + reach >= lo),
                  axis=1).tolist()


class LabelView(CameraView):
    """A camera view that draws one view of a frame label and turns presses into joint drags
    (left button); the right button pans a zoomed view, the wheel zooms."""

    jointMoved = Signal(int, int, float, float)  # view, joint, native x, y (while dragging)
    jointDropped = Signal(int, int, float, float)  # view, joint, native x, y (released)
    jointPicked = Signal(int)  # a placed joint was grabbed: it becomes the current one

    def __init__(self, index: int, name: str, native_size: tuple[int, int], parent=None) -> None:
        super().__init__(index, name, native_size, parent)
        self.setMouseTracking(True)
        n = len(JOINT_NAMES)
        self.clicks = np.full((n, 2), np.nan)  # native px of the joints labelled visible here
        self.sources = np.zeros(n, np.uint8)
        self.occluded = np.zeros(n, bool)
        self.reprojected = np.full((n, 2), np.nan)  # the 3D joints projected into this view
        self.errors = np.full(n, np.nan)
        self.outliers = np.zeros(n, bool)
        self.current = 0
        self.editable = True
        self._dragging = -1
        self._region: tuple[tuple, QRect] | None = None  # (joint and view geometry, region)
        self._name_memo: tuple[str, QRect, QStaticText] = ("", QRect(), QStaticText())

    def set_marks(self, label: FrameLabel, reprojected: np.ndarray | None, outliers: np.ndarray,
                  current: int) -> None:
        c = self.index
        seen = label.visibility[c] == VISIBLE
        self.clicks = np.where(seen[:, None], label.points2d[c], np.nan)
        self.sources = label.source2d[c].copy()  # copies: move_joint changes them in place
        self.occluded = label.visibility[c] == OCCLUDED
        self.reprojected = (np.full_like(self.clicks, np.nan) if reprojected is None
                            else np.array(reprojected, np.float64))
        self.errors = label.error2d[c].copy()
        self.outliers = np.array(outliers, bool)
        self.current = current
        self._region = None
        self.update()

    def move_joint(self, label: FrameLabel, joint: int, reprojected: np.ndarray,
                   outlier: bool) -> bool:
        """A drag step: only `joint` may have changed (its click here, its 3D point, its
        errors), so only where it was and where it is now is repainted, and nothing when what
        this view draws of it is the same (the dragged view left out as the outlier leaves the
        3D point, and so every other view, as it was). Whether it repaints."""
        c, j = self.index, joint
        seen = label.visibility[c, j] == VISIBLE
        click = label.points2d[c, j] if seen else (np.nan, np.nan)
        drawn = np.array([*click, *reprojected, label.error2d[c, j], label.source2d[c, j],
                          label.visibility[c, j] == OCCLUDED, outlier], np.float64)
        if np.array_equal(drawn, self._drawn(j), equal_nan=True):
            return False
        xf = self.native_to_widget()
        key = (joint, self.current, self.width(), self.height(), self.zoom, self.pan)
        before = self._region[1] if self._region is not None and self._region[0] == key \
            else self._joint_region(joint, xf)
        self.clicks[j] = click
        self.sources[j] = label.source2d[c, j]
        self.occluded[j] = label.visibility[c, j] == OCCLUDED
        self.reprojected[j] = reprojected
        self.errors[j] = label.error2d[c, j]
        self.outliers[j] = outlier
        after = self._joint_region(j, xf)
        self._region = (key, after)  # the next step's "before", unless the view changed
        self.update(before.united(after))
        return True

    def _drawn(self, j: int) -> np.ndarray:
        """What this view draws of joint j, as move_joint compares it."""
        return np.array([*self.clicks[j], *self.reprojected[j], self.errors[j], self.sources[j],
                         self.occluded[j], self.outliers[j]], np.float64)

    def _joint_region(self, j: int, xf: QTransform) -> QRect:
        """Widget pixels that drawing joint j touches: its dot, ring, cross, residual line, the
        bones to its neighbours in this view and, for the current joint, its name box."""
        s, dx, dy = xf.m11(), xf.dx(), xf.dy()  # the transform only scales and moves
        region = QRectF()

        def add(ends: list[list[float]], reach: float) -> QRectF:
            xs, ys = [x * s + dx for x, _ in ends], [y * s + dy for _, y in ends]
            return region.united(QRectF(min(xs) - reach, min(ys) - reach,
                                        max(xs) - min(xs) + 2 * reach,
                                        max(ys) - min(ys) + 2 * reach))

        click, reproj = self.clicks[j].tolist(), self.reprojected[j].tolist()
        if math.isfinite(reproj[0]) and math.isfinite(reproj[1]):
            region = add([reproj], _CROSS_REACH)  # the residual line lies between the two
        if math.isfinite(click[0]) and math.isfinite(click[1]):
            region = add([click], _RING_REACH if self.outliers[j] else _DOT_REACH)
            for x, y in self.clicks[_NEIGHBOURS[j]].tolist():
                if math.isfinite(x) and math.isfinite(y):
                    region = add([click, [x, y]], _LINE_REACH)
        if j == self.current:
            region = region.united(QRectF(self._current_box(xf)).adjusted(-2, -2, 2, 2))
        return region.toAlignedRect()

    # -- painting -----------------------------------------------------------------------------
    def paint_over(self, p: QPainter, xf: QTransform, area: QRect) -> None:
        """The label over the frame, drawn in batches: bones per colour, crosses and residual
        lines in one call, dots per colour; a drag step repaints a small `area`, and only the
        marks that reach into it are drawn (in the order a whole repaint draws them, so the
        pixels there come out the same)."""
        scale, offset = (xf.m11(), xf.m22()), (xf.dx(), xf.dy())
        points = np.concatenate([self.clicks, self.reprojected]) * scale + offset  # widget px
        meets = _marks_meeting(area, points, self.outliers)
        finite = np.isfinite(points).all(axis=1).tolist()
        points = points.tolist()
        clicks, reproj, placed = points[:_J], points[_J:], finite[:_J]
        dots, crosses, residuals = meets[:_J], meets[_J:2 * _J], meets[2 * _J:3 * _J]
        bones = meets[3 * _J:]
        for side, side_bones in _BONES_BY_SIDE.items():
            lines = [QLineF(*clicks[a], *clicks[b]) for k, (a, b) in side_bones if bones[k]]
            if lines:
                p.setPen(QPen(_SIDE_COLORS[side], 1.5))
                p.drawLines(lines)
        hit = [d or c or r for d, c, r in zip(dots, crosses, residuals)]
        self._draw_reprojections(p, clicks, reproj, placed,
                                 [h and f for h, f in zip(hit, finite[_J:])])
        self._draw_clicks(p, clicks, [h and f for h, f in zip(hit, placed)])
        box = self._current_box(xf)
        if area.intersects(box):
            self._draw_current(p, box)

    def _draw_reprojections(self, p: QPainter, clicks: list, reproj: list, placed: list[bool],
                            shown: list[bool]) -> None:
        """An orange cross where each 3D joint projects, and a line from its click to it."""
        lines = []
        for j, (x, y) in enumerate(reproj):
            if not shown[j]:
                continue
            size = 5.0 if j == self.current else 3.5
            lines += [QLineF(x - size, y, x + size, y), QLineF(x, y - size, x, y + size)]
            if placed[j]:
                lines.append(QLineF(*clicks[j], x, y))
        if lines:
            p.setPen(QPen(LABEL_COLOR, 1.5))
            p.drawLines(lines)

    def _draw_clicks(self, p: QPainter, clicks: list, drawn: list[bool]) -> None:
        """A dot per placed joint in its side's colour (a dotted rim: still the model's or the
        detector's guess), the current one larger; a red ring around each outlier."""
        rings = QPainterPath()
        ratio = self.devicePixelRatioF()
        for j, (x, y) in enumerate(clicks):
            if not drawn[j]:
                continue
            radius = 5.5 if j == self.current else 3.5
            provisional = bool(self.sources[j] in PROVISIONAL)
            (ix, fx), (iy, fy) = divmod(round(x * _PHASES), _PHASES), \
                divmod(round(y * _PHASES), _PHASES)
            p.drawPixmap(ix - _SPRITE_HALF, iy - _SPRITE_HALF,
                         _dot_sprite(_side(j), provisional, radius, fx, fy, ratio))
            if self.outliers[j]:
                rings.addEllipse(QPointF(x, y), 10.0, 10.0)
        if not rings.isEmpty():
            p.setPen(QPen(OUTLIER_COLOR, 2.5))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawPath(rings)

    def _current_text(self) -> str:
        j = self.current
        text = JOINT_NAMES[j]
        error = float(self.errors[j])
        if self.occluded[j]:
            text += "  occluded here"
        elif math.isfinite(error):
            text += f"  {error:.1f} px"
            if self.outliers[j]:
                text += "  OUTLIER"
        elif not all(math.isfinite(v) for v in self.clicks[j].tolist()):
            text += "  click to place"
        return text

    def _current_box(self, xf: QTransform | None = None) -> QRect:
        """Where the current joint's name box goes: beside its click, else its reprojection,
        else the bottom-left corner, kept inside the view (`xf`: native_to_widget)."""
        xf = self.native_to_widget() if xf is None else xf
        s, dx, dy = xf.m11(), xf.dx(), xf.dy()  # the transform only scales and moves
        ax, ay = 6.0, self.height() - 22.0
        for x, y in (self.reprojected[self.current].tolist(),
                     self.clicks[self.current].tolist()):
            if math.isfinite(x) and math.isfinite(y):
                ax, ay = x * s + dx, y * s + dy
        box = QRect(self._name_text()[1])
        box.moveTopLeft(QPointF(ax + 12, ay - 24).toPoint())
        box.moveLeft(min(max(box.left(), 0), max(self.width() - box.width(), 0)))
        box.moveTop(min(max(box.top(), 18), max(self.height() - box.height(), 0)))
        return box

    def _name_text(self) -> tuple[str, QRect, QStaticText]:
        """The current joint's text, the size of its box and the text laid out, made once per
        text (each drag step asks in every view; laying text out is what drawing it costs)."""
        text = self._current_text()
        if self._name_memo[0] != text:
            font, metrics = _name_font()
            laid_out = QStaticText(text)
            laid_out.prepare(QTransform(), font)
            self._name_memo = (text, metrics.boundingRect(text).adjusted(-4, -2, 4, 2),
                               laid_out)
        return self._name_memo

    def _draw_current(self, p: QPainter, box: QRect) -> None:
        """Name, error and state of the current joint centred in its box (`_current_box`)."""
        _, _, laid_out = self._name_text()
        size = laid_out.size()
        p.setFont(_name_font()[0])
        p.fillRect(box, QColor(0, 0, 0, 170))
        p.setPen(OUTLIER_COLOR if self.outliers[self.current] else QColor(255, 255, 255))
        p.drawStaticText(QPointF(box.x() + (box.width() - size.width()) / 2,
                                 box.y() + (box.height() - size.height()) / 2), laid_out)

    # -- interaction --------------------------------------------------------------------------
    def native_at(self, pos: QPointF) -> QPointF:
        inv, _ = self.native_to_widget().inverted()
        return inv.map(pos)

    def joint_near(self, pos: QPointF) -> int:
        """The placed joint within PICK_RADIUS_PX of widget position pos (-1: none), the
        current joint first."""
        xf = self.native_to_widget()
        best, best_d = -1, PICK_RADIUS_PX
        for j in [self.current, *range(len(self.clicks))]:
            xy = self.clicks[j]
            if not np.all(np.isfinite(xy)):
                continue
            d = (xf.map(QPointF(*map(float, xy))) - pos).manhattanLength()
            if d < best_d:
                best, best_d = j, d
        return best

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.RightButton:
            self._drag_from = event.position()
            return
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        self.clicked.emit(self.index)
        if not self.editable:
            return
        # the current joint, not yet placed here, is placed wherever the press is (even next to
        # another joint); otherwise a press on a placed joint grabs that one
        placed = bool(np.all(np.isfinite(self.clicks[self.current])))
        grabbed = self.joint_near(event.position()) if placed else -1
        if grabbed >= 0 and grabbed != self.current:
            self.jointPicked.emit(grabbed)
        self._dragging = grabbed if grabbed >= 0 else self.current
        xy = self.native_at(event.position())
        self.jointMoved.emit(self.index, self._dragging, xy.x(), xy.y())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag_from is not None:  # the right button pans, as the left one does there
            super().mouseMoveEvent(event)
        elif self._dragging >= 0:
            xy = self.native_at(event.position())
            self.jointMoved.emit(self.index, self._dragging, xy.x(), xy.y())

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        super().mouseReleaseEvent(event)
        if self._dragging >= 0 and event.button() == Qt.MouseButton.LeftButton:
            joint, self._dragging = self._dragging, -1
            xy = self.native_at(event.position())
            self.jointDropped.emit(self.index, joint, xy.x(), xy.y())

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        """A double click is two clicks here (placing twice in one spot), never maximise."""
        self.mousePressEvent(event)


class LabelGrid(CameraGrid):
    """The camera grid with label views, which show the person box and the labels only: the
    model's skeleton and the ground truth would hide the clicks (P starts from the model)."""

    view_class = LabelView

    def _update_overlays(self) -> None:
        media, t = self.state.media, self.state.frame
        if media is None:
            return
        boxes = media.person_boxes(t) if self.state.overlays["box"] else None
        for view in self.views:
            view.set_overlays(None if boxes is None else boxes[view.index], None, None, False)


class LabellingPanel(QWidget):
    """The labelling mode (see the module docstring)."""

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.state = session.state
        self.grid = LabelGrid(self.state, session.decoder, session.prefetcher)
        self.current_joint = 0
        self.label: FrameLabel | None = None  # the stored label of the frame (or an empty one)
        self.stored: FrameLabel | None = None  # exactly what the store has (None: nothing)
        self.preview: FrameLabel | None = None  # the drag in progress
        self.cameras: CameraStack | None = None
        self._reference: tuple[tuple, np.ndarray] | None = None  # bone-check frames, cached
        self._stale = False  # a reload was skipped while hidden
        self._pending_drag: tuple[int, int, float, float] | None = None  # newest drag step
        self.repainting: list[int] = []  # the views the last drag step changed
        self._drag_timer = QTimer(self)  # applies it when the queued events are handled
        self._drag_timer.setSingleShot(True)
        self._drag_timer.setInterval(0)
        self._drag_timer.timeout.connect(self._apply_drag)
        self._build()
        self.state.sequenceChanged.connect(self._sequence_changed)
        self.state.frameChanged.connect(lambda _t: self.reload())
        self.state.labelsChanged.connect(self.reload)
        self.state.projectChanged.connect(lambda _p: self.reload())
        self.state.predictionChanged.connect(lambda _p: self._update_buttons())
        self.detecting: tuple[object, int] | None = None  # (media, frame) last asked for
        session.detector.done.connect(self._detected)
        session.detector.failed.connect(lambda _m: self._detection_over())
        self._sequence_changed(self.state.sequence)

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        side = QWidget()
        side.setMinimumWidth(360)
        lay = QVBoxLayout(side)
        lay.setContentsMargins(4, 4, 4, 4)
        self.header = QLabel()
        self.header.setWordWrap(True)
        lay.addWidget(self.header)
        self.table = QTableWidget(len(JOINT_NAMES), 4)
        self.table.setHorizontalHeaderLabels(["joint", "2D views", "3D  max err px", "note"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 4)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setWordWrap(False)
        self.table.cellClicked.connect(lambda row, _col: self.set_joint(row))
        lay.addWidget(self.table, 3)
        self.bones_note = QLabel()
        self.bones_note.setWordWrap(True)
        lay.addWidget(self.bones_note)
        buttons = QGridLayout()
        self.actions: dict[str, QAction] = {}
        for i, (key, text, shortcut, slot) in enumerate(self._action_table()):
            act = QAction(text, self)
            act.setShortcuts([QKeySequence(s) for s in shortcut])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)  # only while shown
            act.triggered.connect(lambda _=False, f=slot: f())
            self.addAction(act)
            self.actions[key] = act
            if i < 7:
                button = QPushButton(f"{text} ({shortcut[0]})")
                button.clicked.connect(act.trigger)
                buttons.addWidget(button, i // 2, i % 2)
        lay.addLayout(buttons)
        lay.addWidget(QLabel("History (Ctrl+Z undo, Ctrl+Shift+Z redo):"))
        self.history = QUndoView(self.session.undo_stack)
        self.history.setEmptyLabel("<opened>")
        lay.addWidget(self.history, 2)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.grid)
        split.addWidget(side)
        split.setStretchFactor(0, 1)
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(split)

    def _action_table(self) -> list[tuple[str, str, list[str], Callable[[], None]]]:
        return [
            ("prediction", "From prediction", ["P"], self.start_from_prediction),
            ("detector", "From detector", ["D"], self.start_from_detector),
            ("accept", "Accept all", ["A"], self.accept_all),
            ("occluded", "Occluded here", ["O"], self.toggle_occluded),
            ("clear_view", "Clear here", ["Del"], self.clear_in_view),
            ("clear", "Clear joint", ["Shift+Del"], self.clear_joint),
            ("triangulate", "Triangulate frame", ["T"], self.triangulate_frame),
            ("next_joint", "Next joint", ["."], lambda: self.set_joint(self.current_joint + 1)),
            ("prev_joint", "Previous joint", [","],
             lambda: self.set_joint(self.current_joint - 1)),
            ("next_frame", "Next labelled frame", ["PgDown"], lambda: self.goto_labelled(1)),
            ("prev_frame", "Previous labelled frame", ["PgUp"], lambda: self.goto_labelled(-1)),
        ]

    # -- what is shown ------------------------------------------------------------------------
    def _sequence_changed(self, seq) -> None:
        self.cameras = (CameraStack([c.calibration for c in seq.cameras])
                        if seq is not None and seq.is_calibrated else None)
        self._reference = None
        for view in self.grid.views:
            view.jointMoved.connect(self._dragged)
            view.jointDropped.connect(self._dropped)
            view.jointPicked.connect(self.set_joint)
        self.reload()

    @property
    def store(self):
        return self.state.label_store

    @property
    def editable(self) -> bool:
        return self.store is not None and not self.store.read_only and self.label is not None

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self._stale:
            self.reload()

    def setVisible(self, visible: bool) -> None:  # noqa: N802
        super().setVisible(visible)
        if self._stale:  # a window not shown yet sends no showEvent
            self.reload()
            self.grid.catch_up()

    def reload(self) -> None:
        """Show the store's label of the state's frame (the drag in progress is dropped); while
        the panel is hidden this waits for it to be shown (playback must not pay for it)."""
        self._stale = hidden_in_window(self)
        if self._stale:
            return
        seq = self.state.sequence
        self.preview = self._pending_drag = None
        if seq is None or self.store is None:
            self.label = self.stored = None
        else:
            stored = self.store.get(seq.name, self.state.frame)
            self.stored = stored
            self.label = (edits.align_cameras(stored, seq.camera_names) if stored is not None
                          else FrameLabel.empty(seq.name, self.state.frame, seq.camera_names,
                                                str(seq.subject or "")))
        self._show()

    def shown_label(self) -> FrameLabel | None:
        return self.preview if self.preview is not None else self.label

    def _show(self) -> None:
        """Draw the shown label into every view, the joint list, header and buttons (a drag
        step draws only its joint: `_show_joint`)."""
        label = self.shown_label()
        for view in self.grid.views:
            view.editable = self.editable
        if label is not None:
            reprojected = None
            if self.cameras is not None:
                reprojected = self.cameras.project(np.nan_to_num(label.joints3d, nan=0.0))
                reprojected[:, ~np.all(np.isfinite(label.joints3d), axis=-1)] = np.nan
            outliers = edits.outlier_views(label)
            for view in self.grid.views:
                view.set_marks(label, None if reprojected is None else reprojected[view.index],
                               outliers[view.index], self.current_joint)
        self._fill_table(label)
        self._update_header()
        self._update_buttons()

    def _update_header(self) -> None:
        seq, store = self.state.sequence, self.store
        if seq is None:
            text = "Open a project to label its frames."
        elif store is None and self.state.project is not None:
            text = ("<b>No label store</b>: the project's labels.sqlite could not be opened "
                    "(the error said why; the file was left as it is).")
        elif store is None:
            text = ("<b>No label store</b>: labels live in a project. Open a project folder, or "
                    "make one when you open a recording.")
        else:
            text = (f"<b>{seq.name}</b> frame {self.state.frame} · store revision "
                    f"{store.revision} · {len(store)} labelled frames")
            if store.read_only:
                text += f"<br><b>Read-only</b>: {store.read_only_reason}"
            if self.detecting is not None:
                text += f"<br>Detector: finding the joints of frame {self.detecting[1]}…"
            if self.cameras is None:
                text += ("<br>Not calibrated: 2D labels are kept; the 3D waits for a "
                         "calibration (then T triangulates).")
        self.header.setText(text)

    def _update_buttons(self) -> None:
        editable = self.editable
        for key, act in self.actions.items():
            act.setEnabled(key in NAVIGATION or editable)
        self.actions["prediction"].setEnabled(editable and self._prediction() is not None)
        self.actions["accept"].setEnabled(editable and self.cameras is not None)
        self.actions["triangulate"].setEnabled(editable and self.cameras is not None)

    def _fill_table(self, label: FrameLabel | None) -> None:
        issues = self._bone_issues(label)
        flagged: dict[int, str] = {}
        for issue in issues:
            for j in issue.bone:
                flagged[j] = f"bone {issue.ratio:.0%}"
        self.bones_note.setText("<b>Bone lengths off</b>: " + "; ".join(
            f"{JOINT_NAMES[i.bone[0]]}-{JOINT_NAMES[i.bone[1]]} {i.length:.0f} mm (usual "
            f"{i.expected:.0f})" for i in issues) if issues else "")
        for j, name in enumerate(JOINT_NAMES):
            cells = [name, "", "", ""]
            color = None
            if label is not None:
                cells[1:], color = joint_status(label, j, flagged.get(j, ""))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if color is not None and col == 3:
                    item.setForeground(color)
                self.table.setItem(j, col, item)
        self.table.resizeColumnsToContents()
        self.table.selectRow(self.current_joint)

    def _bone_issues(self, label: FrameLabel | None) -> list:
        if label is None or self.store is None or not np.isfinite(label.joints3d).any():
            return []
        key = (label.subject, label.sequence, label.frame)
        if self._reference is None or self._reference[0] != key:
            self._reference = (key, self.store.subject_joints3d(
                label.subject, (label.sequence, label.frame)))
        return check_bones(label.joints3d, self._reference[1])

    # -- editing ------------------------------------------------------------------------------
    def set_joint(self, joint: int) -> None:
        self.current_joint = int(joint) % len(JOINT_NAMES)
        self._show()

    def _edit(self, text: str, change: Callable[[FrameLabel], FrameLabel]) -> None:
        """One undoable edit of the shown frame's label; nothing when it changes nothing."""
        if not self.editable or self.label is None:
            return
        after = change(self.label)
        before = self.stored
        if after.same_content(self.label) and before is not None:
            self._show()
            return
        if after.is_empty and before is None:
            self._show()
            return
        self.session.execute(LabelEditCommand(text, self.state, self.store, before, after))

    def _dragged(self, view: int, joint: int, x: float, y: float) -> None:
        """A drag step. Mouse moves can come faster than frames are shown: only the newest is
        kept, and it is applied once the events already queued are handled (one triangulation
        per event-loop turn, not per move)."""
        if self.label is None:
            return
        self._pending_drag = (view, joint, x, y)
        if not self._drag_timer.isActive():
            self._drag_timer.start()

    def _apply_drag(self) -> None:
        """The newest drag step: re-triangulate the dragged joint only and repaint only its
        marks in each view; the joint list, header and history wait for the drop."""
        step, self._pending_drag = self._pending_drag, None
        if step is None or self.label is None:
            return
        view, joint, x, y = step
        picked = joint != self.current_joint
        self.current_joint = joint
        self.preview = edits.place(self.label, self.cameras, view, joint, (x, y))
        if picked:
            self._show()
        else:
            self._show_joint(self.preview, joint)

    def _show_joint(self, label: FrameLabel, joint: int) -> None:
        """Draw one joint of the shown label anew in every view (a drag step)."""
        reprojected = np.full((len(self.grid.views), 2), np.nan)
        if self.cameras is not None and np.all(np.isfinite(label.joints3d[joint])):
            reprojected = self.cameras.project(label.joints3d[joint][None])[:, 0]
        with np.errstate(invalid="ignore"):
            outlier = (label.visibility[:, joint] == VISIBLE) & \
                (label.error2d[:, joint] > OUTLIER_PX)
        self.repainting = [v.index for v in self.grid.views
                           if v.move_joint(label, joint, reprojected[v.index],
                                           bool(outlier[v.index]))]

    def _dropped(self, view: int, joint: int, x: float, y: float) -> None:
        self._drag_timer.stop()
        self._pending_drag = None
        cam = self.grid.views[view].name
        self._edit(f"{JOINT_NAMES[joint]} in {cam} (frame {self.state.frame})",
                   lambda lab: edits.place(lab, self.cameras, view, joint, (x, y)))

    def target_view(self) -> int:
        """The view under the mouse, else the selected one, else the first."""
        for view in self.grid.views:
            if view.underMouse():
                return view.index
        return max(self.state.selected_camera, 0)

    def toggle_occluded(self) -> None:
        if self.label is None or not self.grid.views:
            return
        v, j = self.target_view(), self.current_joint
        hidden = self.label.visibility[v, j] != OCCLUDED
        self._edit(f"{JOINT_NAMES[j]} {'occluded' if hidden else 'visible'} in "
                   f"{self.grid.views[v].name}",
                   lambda lab: edits.set_occluded(lab, self.cameras, v, j, hidden))

    def clear_in_view(self) -> None:
        if self.grid.views:
            v, j = self.target_view(), self.current_joint
            self._edit(f"clear {JOINT_NAMES[j]} in {self.grid.views[v].name}",
                       lambda lab: edits.clear(lab, self.cameras, j, v))

    def clear_joint(self) -> None:
        j = self.current_joint
        self._edit(f"clear {JOINT_NAMES[j]}", lambda lab: edits.clear(lab, self.cameras, j))

    def _prediction(self):
        pred = self.state.prediction
        return pred if pred is not None and pred.frame == self.state.frame else None

    def start_from_prediction(self) -> None:
        pred = self._prediction()
        if pred is not None:
            self._edit(f"from prediction (frame {self.state.frame})",
                       lambda lab: edits.from_prediction(lab, pred.points2d, pred.pose_world,
                                                         self.cameras))

    def start_from_detector(self) -> None:
        """Ask the detector worker for this frame's keypoints; `_detected` makes the edit."""
        media = self.state.media
        if not self.editable or media is None:
            return
        self.detecting = (media, self.state.frame)
        self.session.detector.submit((media, self.state.frame))
        self._update_header()

    def _detected(self, result) -> None:
        """The detector's keypoints arrived: one undoable edit, if they answer the newest
        request and are about the frame shown now (the user may have moved on meanwhile)."""
        if self.detecting is None or self.detecting != (result.media, result.frame):
            return  # an earlier request's answer: the newest one is still coming
        self._detection_over()
        if result.media is not self.state.media or result.frame != self.state.frame:
            return
        self._edit(f"from detector (frame {result.frame})",
                   lambda lab: edits.from_detector(lab, result.joints, result.confidence,
                                                   self.cameras))

    def _detection_over(self) -> None:
        self.detecting = None
        self._update_header()

    def accept_all(self) -> None:
        self._edit(f"accept all (frame {self.state.frame})",
                   lambda lab: edits.accept_all(lab, self.cameras))

    def triangulate_frame(self) -> None:
        self._edit(f"triangulate frame {self.state.frame}",
                   lambda lab: edits.refit(lab, self.cameras))

    def goto_labelled(self, direction: int) -> None:
        seq = self.state.sequence
        if seq is None or self.store is None:
            return
        frames = [f for _, f in self.store.keys(seq.name)]
        later = [f for f in frames if (f - self.state.frame) * direction > 0]
        if later:
            self.state.set_frame(min(later) if direction > 0 else max(later))


def joint_status(label: FrameLabel, j: int, bone_note: str = "") -> tuple[list[str], QColor]:
    """The joint list's cells (2D views, 3D and error, note) and the note's colour."""
    views = int((label.visibility[:, j] == VISIBLE).sum())
    hidden = int((label.visibility[:, j] == OCCLUDED).sum())
    n = len(label.cameras)
    two_d = f"{views}/{n}" + (f" +{hidden} occl." if hidden else "")
    has3d = bool(np.all(np.isfinite(label.joints3d[j])))
    errors = label.error2d[:, j]
    err = f"{np.nanmax(errors):.1f}" if np.isfinite(errors).any() else "-"
    three_d = f"{SHORT_SOURCE.get(SOURCES[label.source3d[j]], '?')} {err}" if has3d else "-"
    outliers = [label.cameras[c] for c in np.flatnonzero(edits.outlier_views(label)[:, j])]
    if outliers:
        return [two_d, three_d, f"outlier {', '.join(outliers)}"], OUTLIER_COLOR
    if bone_note:
        return [two_d, three_d, bone_note], QColor(230, 150, 0)
    if views == 0 and not has3d:
        return [two_d, three_d, "not labelled"], QColor(150, 150, 150)
    if not has3d:
        return [two_d, three_d, "needs 2 views" if views < 2 else "3D waits for calibration"], \
            QColor(150, 150, 150)
    return [two_d, three_d, "ok"], QColor(80, 200, 100)
