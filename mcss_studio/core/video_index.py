"""Remembered video stream indexes: what demuxing a video found, so that opening it again costs
no demux and no container.

Opening a video frame-exactly (core/video.py) demuxes every packet and opens a decoder: about
5 ms per short video here and far more for long ones, paid again by every reader. A StreamIndex
holds what that pass found (size, rate, every frame's timestamp, the keyframes, slow mode); the
process keeps them in INDEX_MEMO, and a folder can keep them on disk across processes
(`remember_video_indexes` / `save_video_indexes`; the embedding index build does so in the
user's cache folder).

Guarantees: an index is used only for the very file it was made from. The key is the file's
resolved path, size, modification time, inode, device and a CRC-32 of its first and last 64 KiB
(where containers keep their headers and frame tables), so a file rewritten in place, copied
over or appended to is indexed anew. A damaged or foreign index file on disk is ignored (the
videos are demuxed as if it were absent), and one is written complete or not at all
(core/atomic.py). Memory is bounded: the least recently used indexes are dropped beyond
MAX_FRAMES frames in all (8 bytes a frame). Thread-safe.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open

FILE_NAME = "video_indexes.npz"
_FORMAT = 1
_PROBE = 64 << 10


@dataclass(frozen=True)
class StreamIndex:
    """What opening a video learnt by demuxing it: enough to read it without demuxing again."""

    width: int
    height: int
    fps: float
    truncated: bool
    frame_pts: np.ndarray  # int64, sorted
    slow: bool
    key_indices: np.ndarray  # int64 frame indices
    frame_count: int


Key = tuple[str, int, int, int, int, int]


def file_identity(path: Path) -> Key | None:
    """The key of the file's current content; None when it cannot be read (nothing is kept)."""
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            crc = zlib.crc32(fh.read(_PROBE))
            if st.st_size > _PROBE:
                fh.seek(max(_PROBE, st.st_size - _PROBE))
                crc = zlib.crc32(fh.read(_PROBE), crc)
    except OSError:
        return None
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, crc)


class IndexMemo:
    """The stream indexes known to this process, least recently used first."""

    MAX_FRAMES = 4_000_000  # 32 MiB of timestamps

    def __init__(self) -> None:
        self._known: OrderedDict[Key, StreamIndex] = OrderedDict()
        self._frames = 0
        self._lock = threading.Lock()
        self.learnt = 0  # indexes put so far: a caller saves only when it grew

    def get(self, key: Key | None) -> StreamIndex | None:
        with self._lock:
            facts = self._known.get(key) if key is not None else None
            if facts is not None:
                self._known.move_to_end(key)
            return facts

    def put(self, key: Key | None, facts: StreamIndex) -> None:
        if key is None or len(facts.frame_pts) > self.MAX_FRAMES:
            return
        with self._lock:
            old = self._known.pop(key, None)
            self._frames -= 0 if old is None else len(old.frame_pts)
            self._known[key] = facts
            self._frames += len(facts.frame_pts)
            self.learnt += 1
            while self._frames > self.MAX_FRAMES:
                _, dropped = self._known.popitem(last=False)
                self._frames -= len(dropped.frame_pts)

    def items(self) -> list[tuple[Key, StreamIndex]]:
        with self._lock:
            return list(self._known.items())

    def clear(self) -> None:
        with self._lock:
            self._known.clear()
            self._frames = 0


INDEX_MEMO = IndexMemo()


def forget_video_indexes() -> None:
    """Drop the indexes this process knows: the next open of every video demuxes it again
    (benchmarks time a first open with it)."""
    INDEX_MEMO.clear()


def remember_video_indexes(folder: str | os.PathLike[str]) -> int:
    """Learn the indexes kept in `folder` (those of files still unchanged are then used);
    returns how many were read. A missing, damaged or foreign file counts as none."""
    try:
        entries = _read(Path(folder) / FILE_NAME)
    except Exception:  # noqa: BLE001 - a damaged file fails in many ways: demux instead
        return 0
    known = {key for key, _ in INDEX_MEMO.items()}
    for key, facts in entries:
        if key not in known:  # what this process found itself is at least as new
            INDEX_MEMO.put(key, facts)
    return len(entries)


def save_video_indexes(folder: str | os.PathLike[str]) -> None:
    """Keep the indexes this process knows in `folder` (with those already kept there),
    complete or not at all. Raises UserInputError when the folder cannot be written."""
    path = Path(folder) / FILE_NAME
    remember_video_indexes(folder)
    entries = INDEX_MEMO.items()
    header = [[*key, f.width, f.height, f.fps, f.truncated, f.slow, f.frame_count,
               len(f.frame_pts), len(f.key_indices)] for key, f in entries]
    arrays = {
        "header": np.frombuffer(json.dumps({"format": _FORMAT, "entries": header}).encode(),
                                np.uint8),
        "pts": np.concatenate([f.frame_pts for _, f in entries] or [np.zeros(0, np.int64)]),
        "keys": np.concatenate([f.key_indices for _, f in entries] or [np.zeros(0, np.int64)]),
    }
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def _read(path: Path) -> list[tuple[Key, StreamIndex]]:
    with np.load(path, allow_pickle=False) as z:
        doc = json.loads(bytes(z["header"]).decode())
        pts, keys = z["pts"].astype(np.int64), z["keys"].astype(np.int64)
    if doc.get("format") != _FORMAT:
        return []
    entries, p, k = [], 0, 0
    for row in doc["entries"]:
        (where, size, mtime, ino, dev, crc, width, height, fps, truncated, slow, count,
         n_pts, n_keys) = row
        facts = StreamIndex(
            width=int(width), height=int(height), fps=float(fps), truncated=bool(truncated),
            frame_pts=pts[p:p + n_pts], slow=bool(slow), key_indices=keys[k:k + n_keys],
            frame_count=int(count))
        if not _consistent(facts, n_pts, n_keys):
            raise ValueError("index entry does not fit its header")
        entries.append(((str(where), int(size), int(mtime), int(ino), int(dev), int(crc)), facts))
        p, k = p + n_pts, k + n_keys
    if p != len(pts) or k != len(keys):
        raise ValueError("index file longer than its header")
    return entries


def _consistent(facts: StreamIndex, n_pts: int, n_keys: int) -> bool:
    """An entry a reader can use without indexing out of range (slow mode, which distrusts
    the timestamps, may hold repeated ones and counts its frames by decoding)."""
    pts, keys = facts.frame_pts, facts.key_indices
    if len(pts) != n_pts or len(keys) != n_keys or not n_pts or not n_keys:
        return False
    steps = np.diff(pts)
    ordered = bool(np.all(steps >= 0)) if facts.slow else bool(np.all(steps > 0))
    counted = facts.frame_count > 0 and (facts.slow or facts.frame_count == n_pts)
    return (ordered and counted and 0 <= int(keys.min()) and int(keys.max()) < n_pts
            and facts.width > 0 and facts.height > 0)
