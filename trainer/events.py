"""JSON-lines event stream (`--events FILE`) and the mined-triplet log, read by the Studio.

One JSON object per line, flushed at once, so a reader tailing the file never sees half a record.
Every record has "event" and "time" (Unix seconds). Events: start, step, eval, checkpoint, status.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from mcss_studio.core.atomic import write_error, writing
from mcss_studio.core.errors import UserInputError


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonLines:
    """Appends one JSON object per line; a None path makes every call a no-op.

    Each record is one unbuffered append; if it cannot be written whole (disk full), the file is
    cut back to where the record began, so no half record stays to be fused with a later one,
    and the failure is a one-line UserInputError.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._fd: int | None = None
        if self.path is not None:
            with writing(self.path):  # unwritable run folder, full disk: one line, not a trace
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def write(self, record: dict) -> None:
        if self._fd is None or self.path is None:
            return
        data = memoryview((json.dumps(_clean(record), separators=(",", ":")) + "\n").encode())
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise write_error(self.path, exc) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EventWriter(JsonLines):
    """The training event stream: emit(kind, **fields)."""

    def emit(self, kind: str, **fields: Any) -> dict:
        record = {"event": kind, "time": round(time.time(), 3), **fields}
        self.write(record)
        return record


def read_events(path: str | os.PathLike[str]) -> list[dict]:
    """All complete records of an event file (a trailing partial line is ignored); a damaged
    record before it is a one-line UserInputError naming its line."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if line.endswith("\n"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise UserInputError(path, f"line {number} is not a JSON record") from None
    return records
