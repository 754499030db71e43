"""User edits as undoable commands on the Session's one undo stack.

The pattern every edit follows: the window (or a panel) asks the user what to do, builds a
command and hands it to `Session.execute`; the command's `redo` does the edit and its `undo`
takes it back, both through the state's setters (or a data store), never through widgets, so a
command is tested without a window. Labelling fills this module with label edits.
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
