"""User edits as undoable commands on the Session's one undo stack.

The pattern every edit follows: the window (or a panel) asks the user what to do, builds a
command and hands it to `Session.execute`; the command's `redo` does the edit and its `undo`
takes it back, both through the state's setters (or a data store), never through widgets, so a
command is tested without a window. Label edits (`LabelEditCommand`) store whole frame labels
before and after, so undo and redo restore exact states.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QUndoCommand


class SetValueCommand(QUndoCommand):
    """Change one value through its setter; undo restores the value it had before."""

    def __init__(self, text: str, get: Callable[[], Any], set_: Callable[[Any], None],
                 value: Any) -> None:
        super().__init__(text)
        self._set = set_
        self._old = get()
        self._new = value

    def redo(self) -> None:
        self._set(self._new)

    def undo(self) -> None:
        self._set(self._old)


class LabelEditCommand(QUndoCommand):
    """One edit of one frame's labels (a click, a drag, "accept all", a multi-joint edit):
    `redo` stores the label after it, `undo` the label before it (None: the frame had none),
    each as one committed transaction of the store. Undo works from any frame: the state is
    sent to the edited frame first, so the user sees what changed. A write the store refuses
    (read-only, full disk) is reported through the state and the command becomes obsolete, so
    the stack never claims an edit that is not on disk."""

    def __init__(self, text: str, state, store, before, after) -> None:
        super().__init__(text)
        self._state = state
        self._store = store
        self.before = before.copy() if before is not None else None
        self.after = after.copy()
        self.sequence, self.frame = after.sequence, after.frame

    def _write(self, label) -> None:
        from ..core.errors import UserInputError

        self._state.show_edited_frame(self.sequence, self.frame)
        try:
            if label is None or label.is_empty:
                self._store.delete(self.sequence, self.frame)
            else:
                self._store.put(label)
        except UserInputError as exc:
            self.setObsolete(True)
            self._state.report_error(str(exc))
        self._state.notify_labels()

    def redo(self) -> None:
        self._write(self.after)

    def undo(self) -> None:
        self._write(self.before)
