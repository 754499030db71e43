"""A training run's logs: the event stream (`events.jsonl`) and the mined-triplet log
(`triplets.jsonl`), written by the trainer and read by the Studio.

Both are JSON lines: one object per line, flushed at once. Guarantees, whatever happened to the
writer before (a kill mid-write, then `--resume` appending to the same file):

- the writer starts on a fresh line: if the file does not end in a newline, a newline is written
  first, so a new record is never fused with a half-written one;
- the readers return complete records only: a last line without its newline is a record still
  being written (or cut off by a kill) and is skipped, and so is a cut-off line that a resumed
  run closed with its fresh-line newline.

Every event record has "event" and "time" (Unix seconds). Events: start, step, eval,
checkpoint, status. Triplet records: step, anchor/positive/negative as (sequence, camera, frame),
distances and margin violation.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import IO, Any

EVENTS_FILE = "events.jsonl"
TRIPLETS_FILE = "triplets.jsonl"


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


def _ends_mid_line(path: Path) -> bool:
    """True when the file exists, is not empty and its last byte is not a newline."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except FileNotFoundError:
        return False


class JsonLines:
    """Appends one JSON object per line; a None path makes every call a no-op."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._fh: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh_line = _ends_mid_line(self.path)
            self._fh = open(self.path, "a", encoding="utf-8")
            if fresh_line:  # close the record a killed writer left half-written
                self._fh.write("\n")
                self._fh.flush()

    def write(self, record: dict) -> None:
        if self._fh is None:
            return
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


def _parse(line: bytes) -> dict | None:
    """The record on one complete line, or None for a line cut off by a killed writer."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def tail_records(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict], int]:
    """Complete records from byte `offset` on, and the offset to continue from next time.

    For a reader following a live run: a last line still being written is left for the next
    call (the returned offset stops before it).
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1  # 0 when no line is complete yet
    records = [r for r in map(_parse, data[:end].splitlines()) if r is not None]
    return records, offset + end


def read_records(path: str | os.PathLike[str]) -> list[dict]:
    """All complete records of a JSON-lines run log."""
    return tail_records(path)[0]


def read_events(path: str | os.PathLike[str]) -> list[dict]:
    """The event stream's complete records, in order."""
    return read_records(path)


def read_triplets(path: str | os.PathLike[str]) -> list[dict]:
    """The triplet log's complete records, in order."""
    return read_records(path)
