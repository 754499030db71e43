"""Box correction in the player: the drag of a box in one view, its undoable command, and the
bar that sets how a correction spreads.

- `BoxDrag`: what a press grabs (a corner, an edge, the inside to move it, or nothing: a new box
  is drawn from the press) and the box while the mouse moves; pure geometry in native pixels,
  used by the camera views (gui/player/camera_view.py).
- `BoxEditCommand`: one correction (a patch of core/box_edits.py) on the Session's undo stack;
  redo and undo write the box file first and show the frame they change, a refused write
  (read-only folder, full disk) becomes a one-line error and the command drops out.
- `BoxEditBar`: the toolbar shown while boxes are edited: spread (+-N frames), "other views"
  (calibrated sequences) and "remove box"; it changes the state through its setters only.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QUndoCommand
from PySide6.QtWidgets import QCheckBox, QLabel, QSpinBox, QToolBar, QWidget

from ..core.box_edits import BoxPatch, BoxTrack
from ..core.errors import UserInputError
from .state import StudioState

HANDLE_PX = 7.0  # a press this close to an edge (widget px) grabs it
MIN_DRAW_PX = 4.0  # a smaller drag outside the box is a click, not a new box
MOVE_ALL = (0, 1, 2, 3)


class BoxDrag:
    """One drag in one view: `moves` are the box coordinates (0 x0, 1 y0, 2 x1, 3 y1) that
    follow the mouse; empty for a new box drawn from the press point."""

    def __init__(self, box: np.ndarray | None, moves: tuple[int, ...], start: QPointF) -> None:
        self.start_box = None if box is None else np.array(box, np.float64)
        self.moves = moves
        self.start = start  # native px
        self.box: np.ndarray | None = None  # the box now, None until the mouse moved

    @staticmethod
    def grab(box: np.ndarray | None, rect: QRectF | None, pos: QPointF) -> tuple[int, ...]:
        """Coordinates a press at widget position `pos` grabs on a box shown at `rect`."""
        if box is None or rect is None or not np.all(np.isfinite(box)):
            return ()
        inside_y = rect.top() - HANDLE_PX <= pos.y() <= rect.bottom() + HANDLE_PX
        inside_x = rect.left() - HANDLE_PX <= pos.x() <= rect.right() + HANDLE_PX
        moves: tuple[int, ...] = ()
        if inside_y and abs(pos.x() - rect.left()) <= HANDLE_PX:
            moves += (0,)
        elif inside_y and abs(pos.x() - rect.right()) <= HANDLE_PX:
            moves += (2,)
        if inside_x and abs(pos.y() - rect.top()) <= HANDLE_PX:
            moves += (1,)
        elif inside_x and abs(pos.y() - rect.bottom()) <= HANDLE_PX:
            moves += (3,)
        if not moves and rect.contains(pos):
            return MOVE_ALL
        return tuple(sorted(moves))

    def move_to(self, native: QPointF) -> np.ndarray:
        """The box with the grabbed coordinates moved to the mouse (or drawn up to it)."""
        if not self.moves or self.start_box is None:
            x = sorted((self.start.x(), native.x()))
            y = sorted((self.start.y(), native.y()))
            self.box = np.array([x[0], y[0], x[1], y[1]])
        else:
            delta = (native.x() - self.start.x(), native.y() - self.start.y())
            self.box = self.start_box.copy()
            for i in self.moves:
                self.box[i] += delta[i % 2]
        return self.box

    def result(self, scale: float) -> np.ndarray | None:
        """The box to commit, or None (nothing moved, a new box smaller than a click)."""
        if self.box is None:
            return None
        if not self.moves or self.start_box is None:
            w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
            return self.box if min(w, h) * scale >= MIN_DRAW_PX else None
        return None if np.array_equal(self.box, self.start_box) else self.box


class BoxEditCommand(QUndoCommand):
    """One box correction: `redo` applies the patch, `undo` takes it back, each written to the
    box file before the arrays change. The state is sent to the edited frame first (and the
    sequence, when another one is shown), so the user sees what changed."""

    def __init__(self, text: str, state: StudioState, track: BoxTrack, patch: BoxPatch,
                 sequence: str, frame: int) -> None:
        super().__init__(text)
        self._state, self._track, self.patch = state, track, patch
        self.sequence, self.frame = sequence, frame

    def _apply(self, forward: bool) -> None:
        self._state.show_edited_frame(self.sequence, self.frame)
        try:
            self._track.apply(self.patch, forward)
        except UserInputError as exc:
            self.setObsolete(True)
            self._state.report_error(str(exc))
        self._state.notify_boxes(self._track)  # also after a refusal: the views show the file's

    def redo(self) -> None:
        self._apply(True)

    def undo(self) -> None:
        self._apply(False)


class BoxEditBar(QToolBar):
    """Spread, other views and remove: the options of the next correction, in the state."""

    def __init__(self, state: StudioState, parent: QWidget | None = None) -> None:
        super().__init__("Boxes", parent)
        self.setObjectName("box-edit-toolbar")
        self.state = state
        self.addWidget(QLabel(" Box correction: spread \u00b1"))
        self.spread_box = QSpinBox(self)
        self.spread_box.setRange(0, 500)
        self.spread_box.setSuffix(" frames")
        self.spread_box.setToolTip("A correction blends into this many frames each side "
                                   "(stopping at frames you corrected)")
        self.spread_box.setValue(state.box_spread)
        self.spread_box.valueChanged.connect(state.set_box_spread)
        self.addWidget(self.spread_box)
        self.views_check = QCheckBox("other views", self)
        self.views_check.setToolTip("Calibrated: move the other views' boxes to the person "
                                    "volume this correction triangulates")
        self.views_check.setChecked(state.box_other_views)
        self.views_check.toggled.connect(state.set_box_other_views)
        self.addWidget(self.views_check)
        self.remove_action = self.addAction("Remove box", self._remove)
        self.remove_action.setToolTip("No person in the selected view at this frame (Delete)")
        self.hint = QLabel("", self)
        self.addWidget(self.hint)
        state.boxEditingChanged.connect(self.setVisible)
        state.boxOptionsChanged.connect(self._show_options)
        state.sequenceChanged.connect(lambda _s: self._refresh())
        state.boxesChanged.connect(lambda _t: self._refresh())
        state.frameChanged.connect(lambda _t: self._refresh())
        state.selectionChanged.connect(lambda _c: self._refresh())
        self.setVisible(state.box_editing)
        self._refresh()

    def _show_options(self) -> None:
        """Options set elsewhere (a script, a test) shown here, without echoing them back."""
        for widget, value in ((self.spread_box, self.state.box_spread),
                              (self.views_check, self.state.box_other_views)):
            widget.blockSignals(True)
            if isinstance(widget, QSpinBox):
                widget.setValue(value)
            else:
                widget.setChecked(value)
            widget.blockSignals(False)

    def _remove(self) -> None:
        self.state.request_box_removal()

    def _refresh(self) -> None:
        seq = self.state.sequence
        calibrated = bool(seq is not None and seq.is_calibrated)
        self.views_check.setEnabled(calibrated)
        if not calibrated:
            self.views_check.setToolTip("Needs a calibrated sequence")
        track, cam = self.state.box_track, self.state.selected_camera
        fits = (track is not None and seq is not None and track.sequence == seq.name
                and 0 <= cam < track.keyed.shape[0])
        keyed = int(track.keyed[cam].sum()) if fits else 0
        where = "select a view" if cam < 0 else f"{keyed} corrected frame(s) in this view"
        self.hint.setText(f"  drag an edge, corner or the box; drag outside to draw  |  {where}")
