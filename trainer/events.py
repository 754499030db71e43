"""JSON-lines event stream (`--events FILE`) and the mined-triplet log, read by the Studio.

One JSON object per line, flushed at once, so a reader tailing the file never sees half a record.
Every record has "event" and "time" (Unix seconds). Events: start, step, eval, checkpoint, status.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import IO, Any

from mcss_studio.core.atomic import writing


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
    """Appends one JSON object per line; a None path makes every call a no-op."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._fh: IO[str] | None = None
        if self.path is not None:
            with writing(self.path):  # unwritable run folder, full disk: one line, not a trace
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        if self._fh is None:
            return
        with writing(self.path or "events"):
            self._fh.write(json.dumps(_clean(record), separators=(",", ":")) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class EventWriter(JsonLines):
    """The training event stream: emit(kind, **fields)."""

    def emit(self, kind: str, **fields: Any) -> dict:
        record = {"event": kind, "time": round(time.time(), 3), **fields}
        self.write(record)
        return record


def read_events(path: str | os.PathLike[str]) -> list[dict]:
    """All complete records of an event file (a trailing partial line is ignored)."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                records.append(json.loads(line))
    return records
