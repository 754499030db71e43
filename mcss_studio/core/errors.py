"""The one exception type for problems a user can cause (bad files, bad arguments).

The CLI prints its message on one line without a traceback and exits non-zero; the GUI shows it
in a dialog. Anything else escaping is a bug in our code.
"""

from __future__ import annotations

import os


class UserInputError(Exception):
    """A bad input the user can fix; the message names the file (or argument) and the problem."""

    def __init__(self, source: str | os.PathLike[str] | None, problem: str) -> None:
        self.source = None if source is None else str(source)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.problem if self.source is None else f"{self.source}: {self.problem}")


class DataWarning(UserWarning):
    """Odd but usable input (e.g. frame counts differ and the common range is used)."""
