"""A training run's logs: the event stream (`events.jsonl`) and the mined-triplet log
(`triplets.jsonl`), written by the trainer and read by the Studio.

Both are JSON lines: one object per line, each appended with unbuffered writes. Guarantees,
whatever happened to the writer before (a kill mid-write, a full disk, then `--resume` appending
to the same file):

- the writer starts on a fresh line: a last line without its newline is a record a killed writer
  never finished, and it is cut off when the file is opened for writing, so a new record is
  never fused with a half-written one; a record that cannot be written whole (disk full) is cut
  back at once and reported as a one-line UserInputError;
- the readers return complete records only: a last line without its newline is a record still
  being written and is left for later; a damaged complete line can only be corruption of the
  file and is a one-line UserInputError naming where it is, never skipped silently.

Every event record has "event" and "time" (Unix seconds). Events: start, step, eval,
checkpoint, status. Triplet records: step, anchor/positive/negative as (sequence, camera, frame),
distances and margin violation.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_all, write_error, writing
from .errors import UserInputError

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


def _complete_length(fd: int) -> int:
    """Bytes of the open file up to and including its last newline (0 if it has none)."""
    size = os.lseek(fd, 0, os.SEEK_END)
    tail = 4096
    while True:
        start = max(0, size - tail)
        data = os.pread(fd, size - start, start)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        if start == 0:
            return 0
        tail *= 2


class JsonLines:
    """Appends one JSON object per line; a None path makes every call a no-op."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._fd: int | None = None
        if self.path is not None:
            with writing(self.path):  # unwritable run folder, full disk: one line, not a trace
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
                complete = _complete_length(self._fd)
                if complete < os.fstat(self._fd).st_size:  # a record a killed writer left
                    os.ftruncate(self._fd, complete)

    def write(self, record: dict) -> None:
        if self._fd is None or self.path is None:
            return
        data = (json.dumps(_clean(record), separators=(",", ":")) + "\n").encode()
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            write_all(self._fd, data, start)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)  # no half record stays to be fused with the next
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


@dataclass
class Tail:
    """What follow_records read: complete records, the offset to continue from, and the damage
    that stopped it (None when it read to the last complete line or to max_bytes)."""

    records: list[dict]
    offset: int
    damage: UserInputError | None = None
    starts: list[int] = field(default_factory=list)  # byte offset of each record's line


def follow_records(
    path: str | os.PathLike[str], offset: int = 0, max_bytes: int | None = None
) -> Tail:
    """Complete records from byte `offset` on, reading at most about `max_bytes` (whole lines:
    a line longer than that is still read whole), for a reader following a live run.

    A last line still being written is left for the next call. A complete line that is no JSON
    object stops the reading there: the records before it are returned with `damage`, a
    UserInputError naming its byte offset, and the offset stays at the damaged line.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read() if max_bytes is None else fh.read(max_bytes)
        long_line = False
        while max_bytes is not None and b"\n" not in data:  # one line longer than max_bytes
            more = fh.read(max_bytes)
            if not more:
                break
            data, long_line = data + more, True
    # a long line is read whole and alone: the slice that completed it may hold more lines,
    # and taking them too would read past max_bytes again
    end = (data.find(b"\n") if long_line else data.rfind(b"\n")) + 1  # 0: no complete line
    records: list[dict] = []
    starts: list[int] = []
    at = offset
    for line in data[:end].splitlines(keepends=True):
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict):
            return Tail(records, at, UserInputError(
                path, f"damaged record at byte {at}: not a JSON object"), starts)
        records.append(record)
        starts.append(at)
        at += len(line)
    return Tail(records, offset + end, None, starts)


def tail_records(
    path: str | os.PathLike[str], offset: int = 0, limit: int | None = None
) -> tuple[list[dict], int]:
    """Complete records from byte `offset` on, and the offset to continue from next time.

    For a reader following a live run: a last line still being written is left for the next
    call (the returned offset stops before it). `limit` bounds the bytes read per call (a reader
    catching up with a long run takes it in slices; a single line longer than `limit` is still
    read whole). A complete line that is no JSON object is a UserInputError naming its byte
    offset.
    """
    tail = follow_records(path, offset, limit)
    if tail.damage is not None:
        raise tail.damage
    return tail.records, tail.offset


def read_records(path: str | os.PathLike[str]) -> list[dict]:
    """All complete records of a JSON-lines run log."""
    return tail_records(path)[0]


def read_events(path: str | os.PathLike[str]) -> list[dict]:
    """The event stream's complete records, in order."""
    return read_records(path)


def read_triplets(path: str | os.PathLike[str]) -> list[dict]:
    """The triplet log's complete records, in order."""
    return read_records(path)
