"""Summaries of a project's training runs, read on a background thread for the run table.

A summary (core/runs.py `summarize_run`) reads a run's event log (whole up to 8 MiB, else its
ends), its launch record and its log tail: milliseconds to a hundred for each run, so a project
with many runs would freeze the UI for seconds if the table read them itself each time a run
starts or ends. The worker reads them instead and hands the whole list back at once; a run
whose files have not changed since it was last read (same size and modification time of each)
is not read again, so a refresh costs only the runs that moved. Requests coalesce: only the
latest list of folders is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserInputError
from ..core.runs import EVENTS_FILE, LAUNCH_FILE, LOG_FILE, RunSummary, summarize_run
from .workers import LatestRequestWorker


@dataclass(frozen=True, eq=False)
class RunRow:
    """One run of the table: its summary, or the one-line message of why it cannot be read.
    Compared by identity: the worker hands back the same RunRow while a run's files do not
    change, so a row that is not the one shown is news."""

    run: Path
    summary: RunSummary | None
    error: str = ""


def files_signature(run: Path) -> tuple:
    """(size, mtime) of each file a summary reads; None for a missing one."""
    signature = []
    for name in (EVENTS_FILE, LAUNCH_FILE, LOG_FILE):
        try:
            st = os.stat(run / name)
            signature.append((st.st_size, st.st_mtime_ns))
        except OSError:
            signature.append(None)
    return tuple(signature)


class RunSummaryWorker(LatestRequestWorker):
    """Request: (serial, run folders); result: (serial, a RunRow per folder, in order). The
    serial lets the caller tell which request a table answers."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._cache: dict[Path, tuple[tuple, RunRow]] = {}  # worker thread only

    def process(self, request: object) -> tuple[int, list[RunRow]]:
        serial, folders = request  # type: ignore[misc]
        runs = [Path(r) for r in folders]
        rows = [self._row(run) for run in runs]
        self._cache = {run: self._cache[run] for run in runs if run in self._cache}
        return serial, rows

    def _row(self, run: Path) -> RunRow:
        signature = files_signature(run)
        cached = self._cache.get(run)
        if cached is not None and cached[0] == signature:
            return cached[1]
        try:
            row = RunRow(run, summarize_run(run))
        except UserInputError as exc:
            row = RunRow(run, None, str(exc))
        except OSError as exc:  # unreadable, or removed while it was read: a row that says so
            row = RunRow(run, None, str(UserInputError(run, f"cannot read: {exc.strerror}")))
        self._cache[run] = (signature, row)
        return row
