"""One camera's view: the frame with its overlays, zoom and pan of its own."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QPainter,
    QPen,
    QTransform,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from ...core.joints import BONES, JOINT_NAMES, bone_colors
from ...core.label_layout import place_joint_labels
from ..box_editor import MOVE_ALL, BoxDrag
from ..pass_budget import note_heavy_work_done, note_heavy_work_requested
from .prefetch import PreparedFrame, fit_to_view

_BONE_QCOLORS = [QColor(*rgb) for rgb in bone_colors()]
GT_COLOR = QColor(60, 230, 90)


def _bone_pens() -> tuple[list, list]:
    """([(pen, bones)] of the prediction, one entry per bone colour; [(pen, bones)] of the
    ground truth, dashed, all bones)."""
    by_colour: dict[tuple, list] = {}
    for bone, colour in zip(BONES, _BONE_QCOLORS):
        by_colour.setdefault(colour.getRgb(), []).append(bone)
    predicted = [(QPen(QColor(*rgb), 2.5), bones) for rgb, bones in by_colour.items()]
    gt_pen = QPen(GT_COLOR, 1.5)
    gt_pen.setStyle(Qt.PenStyle.DashLine)
    return predicted, [(gt_pen, list(BONES))]


_BONES_BY_COLOUR, _GT_BONES = _bone_pens()
BOX_COLOR = QColor(255, 210, 0)
KEYED_BOX_COLOR = QColor(0, 220, 255)  # a box the user corrected at this frame
EDIT_BOX_COLOR = QColor(255, 80, 200)  # the box being dragged
_CURSORS = {(0,): Qt.CursorShape.SizeHorCursor, (2,): Qt.CursorShape.SizeHorCursor,
            (1,): Qt.CursorShape.SizeVerCursor, (3,): Qt.CursorShape.SizeVerCursor,
            (0, 1): Qt.CursorShape.SizeFDiagCursor, (2, 3): Qt.CursorShape.SizeFDiagCursor,
            (0, 3): Qt.CursorShape.SizeBDiagCursor, (1, 2): Qt.CursorShape.SizeBDiagCursor,
            MOVE_ALL: Qt.CursorShape.SizeAllCursor}


def to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage sharing the array's memory (the caller keeps the array alive)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888)


BOX_PEN = 1.5  # the person box's pen width
BOX_EDGE_PAD = 6.0  # widget px the box's pen and editing handles reach around its edges


def _box_edges(rect: QRectF, area: QRect) -> list[QLineF]:
    """The box's edges that reach into widget region `area`, as flat-capped lines meeting
    squarely at the corners: one antialiased rectangle is stroked whole however little of it
    a repaint shows (80 us for a person box), an edge line costs a tenth of that."""
    h, pad = BOX_PEN / 2, BOX_EDGE_PAD
    left, top, right, bottom = rect.left(), rect.top(), rect.right(), rect.bottom()
    x0, y0 = area.left() - pad, area.top() - pad
    x1, y1 = area.right() + 1 + pad, area.bottom() + 1 + pad
    across = left <= x1 and right >= x0  # the horizontal edges' span meets the area's
    down = top <= y1 and bottom >= y0
    edges = []
    for y in (top, bottom):
        if across and y0 <= y <= y1:
            edges.append(QLineF(left - h, y, right + h, y))
    for x in (left, right):
        if down and x0 <= x <= x1:
            edges.append(QLineF(x, top + h, x, bottom - h))
    return edges


_CAPTION_FONT: list[tuple[QFont, QFontMetrics]] = []  # made on first use: fonts need the app


def _caption_font() -> tuple[QFont, QFontMetrics]:
    if not _CAPTION_FONT:
        font = QFont("Sans", 8)
        _CAPTION_FONT.append((font, QFontMetrics(font)))
    return _CAPTION_FONT[0]


class CameraView(QWidget):
    """Paints a frame fitted into the widget; wheel zooms at the cursor, drag pans.

    Overlay geometry is given in the camera's native pixels; `scale` maps native to the shown
    image's pixels (proxies are smaller than the native frame).
    """

    doubleClicked = Signal(int)
    clicked = Signal(int)
    boxEdited = Signal(int, object)  # view index, the new box (4,) in native px

    def __init__(self, index: int, name: str, native_size: tuple[int, int], parent=None) -> None:
        super().__init__(parent)
        self.index = index
        self.name = name
        self.native_w, self.native_h = native_size
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(80, 60)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        # paintEvent fills every pixel it repaints: Qt need not paint the parents' background
        # under it first (a labelling drag repaints small regions of many views)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self._array: np.ndarray | None = None
        self._image: QImage | None = None
        self._scaled: QImage | None = None  # the frame scaled for the fitted zoom
        self._scaled_pixels: np.ndarray | None = None  # its memory
        self._scaled_key: tuple | None = None  # (image, size) it was made for
        self._scale = 1.0  # shown-image px per native px
        self.frame_index = -1
        self.full_res = False
        self.zoom = 1.0
        self.pan = QPointF(0.0, 0.0)  # in widget px
        self._drag_from: QPointF | None = None
        self.selected = False
        # overlays (native pixels), set by the grid from the state
        self.box: np.ndarray | None = None
        self.box_keyed = False  # the box was corrected by the user at this frame
        self.box_editing = False  # left drags edit the box (set by the grid from the state)
        self.box_drag: BoxDrag | None = None
        self.skeleton: np.ndarray | None = None
        self.gt: np.ndarray | None = None
        self.show_labels = True
        self.label_rects: list = []  # where the last paint put each joint's name (None: left out)
        self.paint_count = 0
        self._caption_memo: tuple[str, QRect] = ("", QRect())  # caption text, its box

    def update(self, *area) -> None:  # noqa: D102 - QWidget.update, noted for pass_budget
        if self.isVisible():  # a hidden view is never painted: nothing to wait for
            note_heavy_work_requested()
        super().update(*area)

    # -- content ------------------------------------------------------------------------------
    def set_frame(self, rgb: np.ndarray, scale: float, frame_index: int, full_res: bool) -> None:
        self._array = np.ascontiguousarray(rgb)
        self._image = to_qimage(self._array)
        self._scale = scale
        self.frame_index = frame_index
        self.full_res = full_res
        self.update()

    def set_prepared(self, frame: PreparedFrame, frame_index: int) -> None:
        """A proxy already fitted to this view's size (read ahead during playback): painting it
        is a blit."""
        self.set_frame(frame.rgb, frame.scale, frame_index, full_res=False)
        self._scaled, self._scaled_pixels = frame.fitted, frame.pixels
        self._scaled_key = (self._image.cacheKey(), frame.size)

    def fitted_size(self) -> tuple[int, int] | None:
        """Size (w, h) of the frame as shown at the fitted zoom; None when zoomed in."""
        if self.zoom != 1.0:
            return None
        shown = self.native_to_widget().mapRect(QRectF(0, 0, self.native_w, self.native_h))
        size = (round(shown.width()), round(shown.height()))
        return size if min(size) > 0 else None

    def set_overlays(self, box, skeleton, gt, labels: bool) -> None:
        self.box, self.skeleton, self.gt, self.show_labels = box, skeleton, gt, labels
        self.update()

    def set_box_editing(self, on: bool, keyed: bool = False) -> None:
        self.box_editing, self.box_keyed = bool(on), bool(keyed)
        self.setMouseTracking(self.box_editing)  # hover cursors over edges and corners
        if not on:
            self.box_drag = None
            self.unsetCursor()
        self.update()

    def reset_view(self) -> None:
        self.zoom = 1.0
        self.pan = QPointF(0.0, 0.0)
        self.update()

    # -- geometry -----------------------------------------------------------------------------
    def _clamp_pan(self) -> None:
        """Keep the image covering the widget along every axis where it is larger than the
        widget, and centred where it is smaller: panning can never lose the image."""
        s = min(self.width() / self.native_w, self.height() / self.native_h) * self.zoom
        room_x = max(0.0, (self.native_w * s - self.width()) / 2)
        room_y = max(0.0, (self.native_h * s - self.height()) / 2)
        self.pan = QPointF(min(max(self.pan.x(), -room_x), room_x),
                           min(max(self.pan.y(), -room_y), room_y))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._clamp_pan()

    def native_to_widget(self) -> QTransform:
        """Transform from native camera pixels to widget pixels (fit, then zoom and pan)."""
        fit = min(self.width() / self.native_w, self.height() / self.native_h)
        s = fit * self.zoom
        ox = (self.width() - self.native_w * s) / 2 + self.pan.x()
        oy = (self.height() - self.native_h * s) / 2 + self.pan.y()
        return QTransform(s, 0, 0, s, ox, oy)

    # -- painting -----------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(18, 18, 20))
        self.label_rects = []
        xf = self.native_to_widget()
        if self._image is not None:
            self._draw_frame(p, xf)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self._draw_box(p, xf, event.rect())
        if self.gt is not None:
            self._draw_skeleton(p, xf, self.gt, gt=True)
        if self.skeleton is not None:
            self._draw_skeleton(p, xf, self.skeleton, gt=False)
        if self.selected or event.rect().intersects(self._caption_rect()):
            self._draw_caption(p)
        self.paint_over(p, xf, event.rect())
        p.end()
        self.paint_count += 1
        note_heavy_work_done()  # the 3D view's render waits for the next pass

    def box_rect(self) -> QRectF | None:
        """The shown box in widget px, None without one."""
        if self.box is None:
            return None
        x0, y0, x1, y1 = np.asarray(self.box, np.float64).tolist()
        if not all(map(math.isfinite, (x0, y0, x1, y1))):
            return None
        xf = self.native_to_widget()  # only scales and moves: the corners map to corners
        s, dx, dy = xf.m11(), xf.dx(), xf.dy()
        return QRectF(QPointF(x0 * s + dx, y0 * s + dy),
                      QPointF(x1 * s + dx, y1 * s + dy)).normalized()

    def _draw_box(self, p: QPainter, xf: QTransform, area: QRect) -> None:
        """The person box (only its edges that reach into the repainted `area`); while editing
        also its handles, and a drag's box over the old one (dashed)."""
        rect = self.box_rect()
        dragged = None if self.box_drag is None else self.box_drag.box
        if rect is not None:
            pen = QPen(KEYED_BOX_COLOR if self.box_keyed else BOX_COLOR, BOX_PEN)
            p.setBrush(Qt.BrushStyle.NoBrush)
            if dragged is not None:
                pen.setStyle(Qt.PenStyle.DashLine)
                p.setPen(pen)
                p.drawRect(rect)
            else:
                edges = _box_edges(rect, area)
                pen.setCapStyle(Qt.PenCapStyle.FlatCap)
                p.setPen(pen)
                if edges:
                    p.drawLines(edges)
                if self.box_editing and edges:
                    self._draw_handles(p, rect, pen.color())
        if dragged is not None:
            p.setPen(QPen(EDIT_BOX_COLOR, 2.5))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(xf.mapRect(QRectF(QPointF(*map(float, dragged[:2])),
                                         QPointF(*map(float, dragged[2:])))))

    @staticmethod
    def _draw_handles(p: QPainter, rect: QRectF, color: QColor) -> None:
        p.setPen(QPen(QColor(0, 0, 0), 1))
        p.setBrush(color)
        xs = (rect.left(), rect.center().x(), rect.right())
        ys = (rect.top(), rect.center().y(), rect.bottom())
        for i, x in enumerate(xs):
            for j, y in enumerate(ys):
                if (i, j) != (1, 1):
                    p.drawRect(QRectF(x - 3, y - 3, 6, 6))

    def native_at(self, pos: QPointF) -> QPointF:
        """Widget position -> native camera pixel."""
        inv, _ = self.native_to_widget().inverted()
        return inv.map(pos)

    def paint_over(self, p: QPainter, xf: QTransform, area: QRect) -> None:
        """Drawn last, in the same painter (subclasses: the labelling marks); `area` is the
        region being repainted, in widget pixels."""

    def _draw_frame(self, p: QPainter, xf: QTransform) -> None:
        """The frame scaled into place. At the fitted zoom the scaled frame is kept as a pixmap,
        so a repaint that changes only overlays (a joint dragged in labelling) is a blit; during
        playback it usually arrives fitted already (prefetch.py)."""
        target = QRectF(0, 0, self.native_w, self.native_h)
        size = self.fitted_size()
        if size is not None:
            key = (self._image.cacheKey(), size)
            if self._scaled_key != key:
                self._scaled, self._scaled_pixels = fit_to_view(self._array, size)
                self._scaled_key = key
            p.drawImage(xf.mapRect(target).topLeft(), self._scaled)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.setTransform(xf)
        p.drawImage(target, self._image, QRectF(self._image.rect()))
        p.resetTransform()

    def _draw_skeleton(self, p: QPainter, xf: QTransform, pts: np.ndarray, gt: bool) -> None:
        """Bones in one call per colour, then the joints: every view repaints it on every
        frame of playback, so the points are mapped by arrays and the pens made once."""
        if not np.all(np.isfinite(pts)):
            return
        shown = np.asarray(pts, np.float64) * (xf.m11(), xf.m22()) + (xf.dx(), xf.dy())
        mapped = [QPointF(x, y) for x, y in shown.tolist()]
        for pen, bones in (_GT_BONES if gt else _BONES_BY_COLOUR):
            p.setPen(pen)
            p.drawLines([QLineF(mapped[a], mapped[b]) for a, b in bones])
        if not gt:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(255, 255, 255))
            for q in mapped:
                p.drawEllipse(q, 2.2, 2.2)
        if self.show_labels and (not gt or self.skeleton is None):
            self._draw_labels(p, mapped)

    def _draw_labels(self, p: QPainter, mapped: list[QPointF]) -> None:
        """Joint names where they fit without covering another name or joint (label_layout)."""
        p.setFont(QFont("Sans", 8))
        metrics = p.fontMetrics()
        sizes = [(metrics.horizontalAdvance(n) + 4, metrics.height()) for n in JOINT_NAMES]
        anchors = [(q.x(), q.y()) for q in mapped]
        self.label_rects = place_joint_labels(anchors, sizes, (self.width(), self.height()))
        for rect, name in zip(self.label_rects, JOINT_NAMES):
            if rect is None:
                continue
            box = QRectF(*rect)
            p.fillRect(box, QColor(0, 0, 0, 150))
            p.setPen(QColor(255, 255, 255))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, name)

    def _caption(self) -> str:
        text = f"{self.name}  {self.native_w}x{self.native_h}"
        if self.frame_index >= 0:
            text += f"  #{self.frame_index}" + ("" if self.full_res else "  proxy")
        return text

    def _caption_rect(self) -> QRect:
        text = self._caption()
        if self._caption_memo[0] != text:  # measured once per text: every repaint asks
            metrics = _caption_font()[1]
            self._caption_memo = (text, QRect(0, 0, metrics.horizontalAdvance(text) + 8,
                                              metrics.height() + 4))
        return QRect(self._caption_memo[1])

    def _draw_caption(self, p: QPainter) -> None:
        font, metrics = _caption_font()
        p.setFont(font)
        p.fillRect(self._caption_rect(), QColor(0, 0, 0, 150))
        p.setPen(QColor(255, 255, 255))
        p.drawText(QPointF(4, metrics.ascent() + 2), self._caption())
        if self.selected:
            p.setPen(QPen(QColor(80, 160, 255), 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(self.rect().adjusted(1, 1, -1, -1))

    # -- interaction --------------------------------------------------------------------------
    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps == 0:
            return
        self.zoom_at(event.position(), 1.25**steps)

    def zoom_at(self, pos: QPointF, factor: float) -> None:
        """Zoom by factor keeping the point under pos fixed."""
        old = self.zoom
        new = float(min(max(old * factor, 1.0), 32.0))
        if new == old:
            return
        inv, _ = self.native_to_widget().inverted()
        anchor = inv.map(pos)
        self.zoom = new
        moved = self.native_to_widget().map(anchor)
        self.pan += pos - moved
        self._clamp_pan()
        self.update()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        editing = self.box_editing and event.button() == Qt.MouseButton.LeftButton
        if editing:  # left drags edit the box; the right button pans instead
            moves = BoxDrag.grab(self.box, self.box_rect(), event.position())
            self.box_drag = BoxDrag(self.box, moves, self.native_at(event.position()))
            self.clicked.emit(self.index)
        elif event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self._drag_from = event.position()
            if event.button() == Qt.MouseButton.LeftButton:
                self.clicked.emit(self.index)
        elif event.button() == Qt.MouseButton.MiddleButton:
            self.reset_view()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self.box_drag is not None:
            self.box_drag.move_to(self.native_at(event.position()))
            self.update()
        elif self._drag_from is not None and self.zoom > 1.0:
            self.pan += event.position() - self._drag_from
            self._drag_from = event.position()
            self._clamp_pan()
            self.update()
        elif self.box_editing:
            grab = BoxDrag.grab(self.box, self.box_rect(), event.position())
            self.setCursor(_CURSORS.get(grab, Qt.CursorShape.CrossCursor))

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._drag_from = None
        drag, self.box_drag = self.box_drag, None
        if drag is not None:
            drag.move_to(self.native_at(event.position()))
            scale = self.native_to_widget().m11()
            box = drag.result(scale)
            if box is not None:
                self.box = box  # shown at once; the state confirms it (or an error undoes it)
                self.boxEdited.emit(self.index, box.copy())
            self.update()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.doubleClicked.emit(self.index)
