"""The crop cache: square person crops of every camera and frame, memory-mapped, resumable.

Layout (inside a project's `cache/`, see docs/ARCHITECTURE.md):

    crops/<seq.key>/meta.json        settings, cameras, box method, fingerprints, complete flag
    crops/<seq.key>/<c>.u8           uint8 (T, S, S, 3) RGB crops in synchronised frame order
    crops/<seq.key>/<c>.done         uint8 (T,) 1 = crop t written
    crops/<seq.key>/boxes.npy        float64 (C, T, 4) integer crop squares x0 y0 x1 y1 used
    crops/<seq.key>/person_boxes.npy float64 (C, T, 4) the person boxes they were made from
    proxies/<seq.key>/...            display proxies (core/proxies.py), fed by the same decode;
                                     they resume on their own (ProxyWriter)
    video_indexes.npz                the videos' stream indexes, kept after a build so that the
                                     crops' later readers need not demux (core/video_index.py)

Crop pixel (u, v) of an S-pixel crop covers image pixels x0 + [u, u+1) * side / S (same for y)
of its square in boxes.npy. Square parts outside the image are black (zeros): padding with
edge pixels would smear streaks into the crop that the network could mistake for limbs.

One sequential decode pass per camera (no seeking) feeds both the crops and the proxies; cameras
run in parallel threads (decoding, resizing and JPEG encoding release the GIL). Interrupted
builds resume from the done-bitmaps: a crop's done-byte is written only after its pixels, so a
killed process (Ctrl-C, crash, kill -9) loses at most the frame in flight; files are flushed to
disk when the build ends or stops. meta.json is replaced atomically and says `complete: true`
only after every crop is written and flushed. A cache built from different inputs or settings
has a different fingerprint and is rebuilt, never reused.

The fingerprint holds the box values whenever they are known without running the detector
(given, a box file, ground truth, the whole frame), so the same boxes reached another way (the
Studio passes the boxes it shows, a trainer asks for "auto") share one cache.
Boxes changed (a user's correction, another box method) with everything else the same (meta's
`base_fingerprint`): only the crops whose square changed are re-cut, by the same resumable
build; the others keep their bytes. The crops of a camera with changes move to a copy of its
file first, so an open CropCache keeps its own consistent pixels and squares (see
`_invalidate_changed` for the order that keeps every kill point safe), and each camera's
decode stops after its last crop to re-cut.

Crops are written with ordinary file I/O (pwrite) into files preallocated with posix_fallocate
where the system has it, never through writable memory maps: on a full disk a write through a
map kills the process with SIGBUS, a pwrite fails with ENOSPC. A full disk or an unwritable
folder is therefore a one-line UserInputError (core/atomic.py `writing`), and the build resumes
where it stopped once space is freed. Only readers map the (complete) files.

An opened CropCache keeps reading the files it opened, whatever happens to the folder later: it
maps every camera's file when it opens (the maps hold the files' inodes), and a rebuild (another
crop size or margin: one folder holds one crop size) unlinks the old files and creates new ones,
never truncating or overwriting a file in place. A cache rebuilt while it was being opened is
refused with a one-line UserInputError (open it again once the build is complete), never
returned with pixels of the new build under the old metadata.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from .atomic import atomic_open, atomic_path, write_all, write_error, writing
from .boxes import (
    BOX_METHODS,
    boxes_digest,
    choose_box_method,
    compute_boxes_with_method,
    square_crop_box,
)
from .errors import UserInputError
from .proxies import ProxyWriter, proxy_dir
from .sequence import MultiviewSequence
from .video_index import save_video_indexes

try:
    import fcntl
except ImportError:  # Windows: no advisory lock, builds must not overlap
    fcntl = None  # type: ignore[assignment]

CACHE_VERSION = 1  # bump when crop pixels for the same inputs change
PERSON_BOXES = "person_boxes.npy"  # the person boxes the squares were made from
PADDING = "black"
ProgressFn = Callable[[int, int], None]


# -- paths and fingerprints --------------------------------------------------------------------
def crops_dir(cache_dir: str | os.PathLike[str], seq: MultiviewSequence) -> Path:
    """Folder holding this sequence's crops."""
    return Path(cache_dir) / "crops" / seq.key


def _sha1(obj: object) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def input_fingerprint(seq: MultiviewSequence) -> str:
    """Hash of what the pixels come from: cameras, offsets, frame range and the files' stats.

    Files are identified by path, size and modification time (an image folder by its own
    mtime and frame count), so opening a cache never reads the videos.
    """
    cams = []
    for cam in seq.cameras:
        path = Path(cam.source.path)
        try:
            st = os.stat(path)
            stat = [st.st_size if path.is_file() else 0, st.st_mtime_ns]
        except OSError:
            stat = None
        cams.append(
            [cam.name, str(path), stat, cam.width, cam.height, cam.source.frame_count, cam.offset]
        )
    return _sha1({"version": CACHE_VERSION, "frames": seq.num_frames, "cameras": cams})


def _auto_boxes_digest(seq: MultiviewSequence) -> str:
    """Hash of everything "auto" box selection reads besides the pixels."""
    h = hashlib.sha1()
    for arr in (seq.joints3d, seq.boxes):
        h.update(b"none" if arr is None else boxes_digest(np.asarray(arr)).encode())
    for cam in seq.cameras:
        cal = cam.calibration
        h.update(b"none" if cal is None else json.dumps(cal.to_dict()).encode())
    return h.hexdigest()


def _base_fingerprint(seq: MultiviewSequence, crop_size: int, margin: float) -> str:
    """Hash of everything a crop depends on except the boxes: crops of a cache with the same
    base fingerprint are reusable wherever their crop square is unchanged."""
    return _sha1({"input": input_fingerprint(seq), "crop_size": int(crop_size),
                  "margin": float(margin), "padding": PADDING})


def _crop_fingerprint(
    seq: MultiviewSequence, crop_size: int, margin: float, boxes: np.ndarray | None, method: str
) -> str:
    return _sha1(
        {
            "input": input_fingerprint(seq),
            "crop_size": int(crop_size),
            "margin": float(margin),
            "padding": PADDING,
            "boxes": _box_request(seq, boxes, method),
        }
    )


def _box_request(seq: MultiviewSequence, boxes: np.ndarray | None, method: str) -> dict:
    """What the crops are cut with, for the fingerprint: the box values whenever they are known
    without running the detector (given, a box file, ground truth, the whole frame), so that
    the same boxes reached another way (the Studio passes the boxes it shows, a trainer asks
    for "auto") find the same cache; else the detector and everything it reads."""
    if boxes is None:
        resolved = choose_box_method(seq) if method == "auto" else method
        if resolved == "background":
            return {"method": method, "inputs": _auto_boxes_digest(seq)}
        boxes = compute_boxes_with_method(seq, resolved)[0]
    return {"given": boxes_digest(boxes)}


# -- crop geometry ----------------------------------------------------------------------------
def crop_squares(
    boxes: np.ndarray, margin: float, sizes: list[tuple[int, int]], crop_size: int
) -> np.ndarray:
    """(C, T, 4) integer-valued squares (x0, y0, x0 + side, y0 + side) the cache cuts.

    `sizes` holds each camera's (width, height); frames without a box get the largest centred
    square of the image. A side that `crop_square` halves n times is trimmed to a multiple of
    2**n (less than a quarter of one output pixel).
    """
    out = np.empty(boxes.shape, dtype=np.float64)
    for c, (w, h) in enumerate(sizes):
        sq = square_crop_box(boxes[c], margin, w, h)
        side = np.maximum(1.0, np.round(sq[:, 2] - sq[:, 0]))
        step = np.ones_like(side)  # 2**n, n = number of halvings
        while True:
            more = side >= step * 4 * crop_size
            if not more.any():
                break
            step[more] *= 2
        side = (side // step) * step
        x0 = np.floor((sq[:, 0] + sq[:, 2]) / 2 - side / 2 + 0.5)
        y0 = np.floor((sq[:, 1] + sq[:, 3]) / 2 - side / 2 + 0.5)
        out[c] = np.stack([x0, y0, x0 + side, y0 + side], axis=1)
    return out


def crop_square(frame: np.ndarray, square: np.ndarray, crop_size: int) -> np.ndarray:
    """Cut the integer square (x0, y0, x1, y1) out of frame, black outside, area-resize.

    Resizing is cv2.INTER_AREA. While the square is at least 4x the crop size it is first
    halved by exact 2x2 means (OpenCV's vectorised integer path), leaving a final INTER_AREA
    step of factor 2..4: ~3x faster than one large fractional step, and the same box filter
    except that its edges are blurred by one intermediate pixel.
    """
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in square)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix0 >= ix1 or iy0 >= iy1:
        return np.zeros((crop_size, crop_size, 3), np.uint8)
    region = frame[iy0:iy1, ix0:ix1]
    if (ix0, iy0, ix1, iy1) != (x0, y0, x1, y1):
        region = cv2.copyMakeBorder(
            region, iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1, cv2.BORDER_CONSTANT, value=(0, 0, 0)
        )
    side = x1 - x0
    while side >= 4 * crop_size and side % 2 == 0:
        side //= 2
        region = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(region, (crop_size, crop_size), interpolation=cv2.INTER_AREA)


# -- meta.json -------------------------------------------------------------------------------
def _write_json_atomic(path: Path, doc: dict) -> None:
    with atomic_open(path, "w", fsync=True) as f:
        json.dump(doc, f, indent=1)


def _read_meta(folder: Path) -> dict | None:
    try:
        with open(folder / "meta.json", encoding="utf-8") as f:
            doc = json.load(f)
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


# -- the reader -------------------------------------------------------------------------------
class CropCache:
    """Read-only view of a complete crop cache; opening maps files, reads no pixels."""

    def __init__(self, folder: Path, meta: dict, boxes: np.ndarray, maps: list[np.ndarray],
                 person_boxes: np.ndarray | None = None) -> None:
        self.folder = folder
        self.meta = meta
        self.crop_size: int = int(meta["crop_size"])
        self.margin: float = float(meta["margin"])
        self.num_frames: int = int(meta["num_frames"])
        self.camera_names: list[str] = list(meta["camera_names"])
        self.box_method: str = str(meta["box_method"])
        self.boxes = boxes  # (C, T, 4) crop squares in native pixels
        self.person_boxes = person_boxes  # (C, T, 4) the boxes they were made from; None: older
        self._maps: list[np.ndarray] | None = maps  # per camera, mapped at open; None: closed

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str], seq: MultiviewSequence) -> CropCache:
        """Open the complete cache of `seq`; UserInputError if missing, incomplete or stale."""
        folder = crops_dir(cache_dir, seq)
        meta = _read_meta(folder)
        if meta is None:
            raise UserInputError(folder, "no crop cache here; build it first")
        if meta.get("version") != CACHE_VERSION:
            raise UserInputError(folder, "crop cache from another version; rebuild it")
        if not meta.get("complete"):
            raise UserInputError(folder, "crop cache is incomplete; resume the build")
        if meta.get("input_fingerprint") != input_fingerprint(seq):
            raise UserInputError(folder, "crop cache is stale (the videos changed); rebuild it")
        try:
            C, T, S = len(meta["camera_names"]), int(meta["num_frames"]), int(meta["crop_size"])
            float(meta["margin"]), str(meta["box_method"])
        except (KeyError, TypeError, ValueError):
            raise UserInputError(folder / "meta.json", "damaged crop cache metadata; rebuild "
                                 "the cache") from None
        for c in range(C):
            p = folder / f"{c}.done"
            if not p.is_file() or p.stat().st_size != T:
                raise UserInputError(p, "missing or truncated cache file; rebuild the cache")
        opened: list[IO[bytes]] = []
        try:
            try:
                opened.append(open(folder / "boxes.npy", "rb"))  # noqa: SIM115 - closed below
                boxes = np.load(opened[0], allow_pickle=False)
            except (OSError, ValueError, EOFError):
                raise UserInputError(folder / "boxes.npy", "missing or unreadable") from None
            if boxes.shape != (C, T, 4):
                raise UserInputError(folder / "boxes.npy",
                                     f"shape {boxes.shape}, expected {(C, T, 4)}")
            maps = [_map_crops(folder / f"{c}.u8", (T, S, S, 3), opened) for c in range(C)]
            person = _load_array(folder / PERSON_BOXES, (C, T, 4))  # a cache older than it: None
            _check_unchanged(folder, meta, opened)
        finally:
            for fh in opened:
                fh.close()  # the maps keep their own hold on the files
        boxes.flags.writeable = False
        if person is not None:
            person.flags.writeable = False
        return cls(folder, meta, boxes, maps, person)

    def crops(self, cam_index: int) -> np.ndarray:
        """Read-only memmap (T, S, S, 3) uint8 RGB of one camera, of the files opened."""
        if not 0 <= cam_index < len(self.camera_names):
            raise IndexError(f"camera index {cam_index} out of range")
        maps = self._maps
        if maps is None:
            raise UserInputError(self.folder, "the crop cache was closed")
        return maps[cam_index]

    def get(self, cam_index: int, t: int) -> np.ndarray:
        """Crop (S, S, 3) of camera cam_index at synchronised frame t (a read-only view)."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} out of range 0..{self.num_frames - 1}")
        return self.crops(cam_index)[t]

    def close(self) -> None:
        """Drop the memory maps (they also close when garbage collected); reads then raise
        UserInputError."""
        self._maps = None

    def __enter__(self) -> CropCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _map_crops(path: Path, shape: tuple[int, ...], opened: list[IO[bytes]]) -> np.ndarray:
    """Map one camera's crop file read-only, checking its size on the opened file itself (a
    file replaced after a check by name would not be the one mapped)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError:
        raise UserInputError(path, "missing cache file; rebuild the cache") from None
    opened.append(fh)
    if os.fstat(fh.fileno()).st_size != int(np.prod(shape)):
        raise UserInputError(path, "missing or truncated cache file; rebuild the cache")
    if not np.prod(shape):  # no frames: nothing to map (an empty file cannot be mapped)
        empty = np.zeros(shape, np.uint8)
        empty.flags.writeable = False
        return empty
    return np.memmap(fh, np.uint8, "r", shape=shape)


def _check_unchanged(folder: Path, meta: dict, opened: list[IO[bytes]]) -> None:
    """The files opened are those the metadata read first describes: meta.json still says the
    same and every opened file is still the one under its name (a rebuild in between replaces
    meta.json first and creates new files)."""
    same = _read_meta(folder) == meta
    for fh in opened:
        try:
            now, mine = os.stat(fh.name), os.fstat(fh.fileno())
        except OSError:
            same = False
            break
        same = same and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev)
    if not same:
        raise UserInputError(folder, "the crop cache was rebuilt while it was being opened; "
                             "open it again when the build is complete")


# -- the builder ------------------------------------------------------------------------------
class _Build:
    """Shared state of one build: meta, progress and stop signal across camera threads."""

    def __init__(self, folder: Path, meta: dict, total: int, progress: ProgressFn | None):
        self.folder = folder
        self.meta = meta
        self.total = total
        self.done = 0
        self.progress = progress
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def tick(self) -> None:
        """Count one decoded frame and report; an exception from the callback stops the build."""
        with self.lock:
            self.done += 1
            if self.progress is not None:
                try:
                    self.progress(self.done, self.total)
                except BaseException:
                    self.stop.set()
                    raise

    def save_meta(self, **changes: object) -> None:
        with self.lock:
            self.meta.update(changes)
            _write_json_atomic(self.folder / "meta.json", self.meta)


class _BuildLock:
    """Exclusive advisory lock on a cache folder, so two builds never write the same files."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".lock"
        self.file: IO[bytes] | None = None

    def __enter__(self) -> _BuildLock:
        with writing(self.path):
            self.file = open(self.path, "ab")  # noqa: SIM115 - closed in __exit__
        if fcntl is not None:
            try:
                fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.file.close()
                raise UserInputError(
                    self.path.parent, "another crop-cache build is running on this folder"
                ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()  # releases the lock


def _wipe(folder: Path) -> None:
    """Remove a stale build, meta first so nothing claims to be complete meanwhile."""
    (folder / "meta.json").unlink(missing_ok=True)
    for p in folder.iterdir():
        if p.is_file() and p.name != ".lock":
            p.unlink()


def _proxies_complete(cache_dir: str | os.PathLike[str], seq: MultiviewSequence, max_side: int,
                      c: int) -> bool:
    """Whether camera c has final, complete proxies of this sequence at this size."""
    p = proxy_dir(cache_dir, seq) / f"{c}.json"
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    return (
        bool(meta.get("complete"))
        and meta.get("frames") == seq.num_frames
        and meta.get("max_side") == max_side
        and (meta.get("native_width"), meta.get("native_height"))
        == (seq.cameras[c].width, seq.cameras[c].height)
    )


def build_cache(
    seq: MultiviewSequence,
    cache_dir: str | os.PathLike[str],
    crop_size: int = 128,
    margin: float = 0.2,
    boxes: np.ndarray | None = None,
    proxies: bool = True,
    proxy_max_side: int = 480,
    progress: ProgressFn | None = None,
    box_method: str = "auto",
    workers: int | None = None,
) -> CropCache:
    """Build (or resume, or reuse) the crop cache of `seq` under `cache_dir`; return it opened.

    boxes: (C, T, 4) person boxes (recorded as box method "given"); None computes them with
    `box_method` (see core/boxes.py), only when no resumable build has them already.
    proxies: also write the display proxies (core/proxies.py) from the same decode pass.
    progress(done, total) is called per decoded frame from the worker threads (serialised);
    `total` is the number of frames this run decodes (the box detector, when it runs, reports
    its own pass first). Raising from it stops the build in a resumable state.
    workers: cameras decoded in parallel threads (default: min(cameras, CPU count)).
    """
    if not isinstance(crop_size, (int, np.integer)) or crop_size < 8:
        raise UserInputError(None, f"crop size must be an integer >= 8, got {crop_size!r}")
    if not (0.0 <= margin <= 4.0):
        raise UserInputError(None, f"crop margin must be between 0 and 4, got {margin}")
    if box_method not in BOX_METHODS:
        raise UserInputError(None, f"unknown box method {box_method!r}; use one of {BOX_METHODS}")
    crop_size = int(crop_size)
    C, T = len(seq.cameras), seq.num_frames
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.shape != (C, T, 4):
            raise UserInputError(None, f"boxes have shape {boxes.shape}, expected {(C, T, 4)}")
    folder = crops_dir(cache_dir, seq)
    settings = (crop_size, margin, boxes, proxies, proxy_max_side, box_method)
    # a complete cache is only read: no lock, so several trainers / the Studio can share it
    if _complete(seq, cache_dir, folder, *settings):
        return CropCache.open(cache_dir, seq)
    with writing(folder):  # a read-only recording or a full disk: one line, not a traceback
        folder.mkdir(parents=True, exist_ok=True)
    with _BuildLock(folder), writing(folder):
        if _complete(seq, cache_dir, folder, *settings):  # another process just finished it
            return CropCache.open(cache_dir, seq)
        cache = _build_locked(
            seq, cache_dir, folder, crop_size, margin, boxes, proxies, proxy_max_side, progress,
            box_method, workers,
        )
    _keep_video_indexes(cache_dir)
    return cache


def _keep_video_indexes(cache_dir: str | os.PathLike[str]) -> None:
    """Keep the videos' stream indexes beside the crops just cut from them: whoever reads these
    crops later (an embedding index build in another process) opens the sequence without
    demuxing its videos again (core/video_index.py). Only a speed-up: a failed write is
    left for the next open to redo."""
    try:
        save_video_indexes(cache_dir)
    except UserInputError:
        pass


def _complete(
    seq: MultiviewSequence, cache_dir: str | os.PathLike[str], folder: Path, crop_size: int,
    margin: float, boxes: np.ndarray | None, proxies: bool, proxy_max_side: int, box_method: str,
) -> bool:
    """Whether the finished cache (and proxies, if wanted) match these inputs and settings."""
    old = _read_meta(folder)
    if (old is None or not old.get("complete")
            or old.get("fingerprint") != _crop_fingerprint(seq, crop_size, margin, boxes,
                                                          box_method)):
        return False
    # proxies are trusted only while the videos are those the last crop build saw
    return not proxies or (old.get("input_fingerprint") == input_fingerprint(seq) and all(
        _proxies_complete(cache_dir, seq, proxy_max_side, c) for c in range(len(seq.cameras))))


def _build_locked(
    seq: MultiviewSequence,
    cache_dir: str | os.PathLike[str],
    folder: Path,
    crop_size: int,
    margin: float,
    boxes: np.ndarray | None,
    proxies: bool,
    proxy_max_side: int,
    progress: ProgressFn | None,
    box_method: str,
    workers: int | None,
) -> CropCache:
    C, T = len(seq.cameras), seq.num_frames
    fingerprint = _crop_fingerprint(seq, crop_size, margin, boxes, box_method)
    old = _read_meta(folder)
    resume = old is not None and old.get("fingerprint") == fingerprint
    in_fp = input_fingerprint(seq)
    # proxies are trusted only while the videos are those the last crop build saw
    same_input = old is not None and old.get("input_fingerprint") == in_fp
    proxy_ok = [
        not proxies or (same_input and _proxies_complete(cache_dir, seq, proxy_max_side, c))
        for c in range(C)
    ]

    sizes = [(c.width, c.height) for c in seq.cameras]
    base = _base_fingerprint(seq, crop_size, margin)
    squares = _load_array(folder / "boxes.npy", (C, T, 4)) if resume else None
    if squares is not None:
        assert old is not None
        used = str(old.get("box_method", box_method))
    elif (old is not None and old.get("base_fingerprint") == base
          and _crop_files_intact(folder, C, T, crop_size)
          and (old_squares := _load_array(folder / "boxes.npy", (C, T, 4))) is not None):
        # only the boxes changed: re-cut the crops whose square changed, keep the others
        boxes, used = _boxes_to_use(seq, boxes, box_method, progress)
        squares = crop_squares(boxes, margin, sizes, crop_size)
        _invalidate_changed(folder, old, old_squares, squares, boxes)
        old, resume = None, False
    else:
        _wipe(folder)
        boxes, used = _boxes_to_use(seq, boxes, box_method, progress)
        squares = crop_squares(boxes, margin, sizes, crop_size)
        _save_array(folder / "boxes.npy", squares)
        _save_array(folder / PERSON_BOXES, boxes)
        old, resume = None, False
    meta = {
        "version": CACHE_VERSION,
        "sequence": seq.name,
        "key": seq.key,
        "crop_size": crop_size,
        "margin": float(margin),
        "padding": PADDING,
        "camera_names": seq.camera_names,
        "num_frames": T,
        "box_method": used,
        "input_fingerprint": in_fp,
        "fingerprint": fingerprint,
        "base_fingerprint": base,
        "complete": bool(resume and old is not None and old.get("complete")),
    }
    _write_json_atomic(folder / "meta.json", meta)

    crop_bytes = T * crop_size * crop_size * 3
    plans: list[tuple[int, int, int, ProxyWriter | None]] = []
    writers: list[ProxyWriter] = []
    try:
        for c, cam in enumerate(seq.cameras):
            files = ((folder / f"{c}.u8", crop_bytes), (folder / f"{c}.done", T))
            if any(not p.is_file() or p.stat().st_size != size for p, size in files):
                _allocate(files)  # both afresh: done-bytes must never outlive their crops
            missing = np.flatnonzero(np.fromfile(folder / f"{c}.done", dtype=np.uint8) == 0)
            start = int(missing[0]) if missing.size else T
            end = int(missing[-1]) + 1 if missing.size else T  # no proxies to add: stop there
            writer = None
            if not proxy_ok[c]:
                writer = ProxyWriter(proxy_dir(cache_dir, seq), c, T, proxy_max_side,
                                     native_size=(cam.width, cam.height))
                writers.append(writer)
                todo = writer.missing()
                start = min(start, int(todo[0]) if todo.size else T)
                end = T
            if start < T:
                plans.append((c, start, end, writer))
            elif writer is not None:
                writer.close()
        state = _Build(folder, meta, sum(end - start for _, start, end, _ in plans), progress)
        n_workers = max(1, min(len(plans), workers or os.cpu_count() or 1))
        if n_workers == 1:
            for c, start, end, writer in plans:
                _build_camera(seq, c, (start, end), writer, squares[c], crop_size, state)
        else:
            with ThreadPoolExecutor(n_workers, thread_name_prefix="crop-cache") as pool:
                futures = [
                    pool.submit(_build_camera, seq, c, (start, end), writer, squares[c],
                                crop_size, state)
                    for c, start, end, writer in plans
                ]
                try:
                    for fut in futures:
                        fut.result()
                except BaseException:
                    state.stop.set()
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        for w in writers:
            w.abort()  # no-op for closed writers; keeps partial proxies for a resume
    for c in range(C):
        if not np.fromfile(folder / f"{c}.done", dtype=np.uint8).all():
            raise RuntimeError(f"crop cache camera {c} incomplete after build")  # a bug of ours
    state.save_meta(complete=True)
    return CropCache.open(cache_dir, seq)


def _boxes_to_use(seq: MultiviewSequence, boxes: np.ndarray | None, method: str,
                  progress: ProgressFn | None) -> tuple[np.ndarray, str]:
    """The person boxes to cut with and their method: the given ones, or computed."""
    if boxes is not None:
        return boxes, "given"
    return compute_boxes_with_method(seq, method, progress)


def _load_array(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """A saved array of this shape, or None (missing, damaged, other shape)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return arr if arr.shape == shape else None


def _save_array(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb", fsync=True) as f:
        np.save(f, np.asarray(arr, dtype=np.float64))


def _crop_files_intact(folder: Path, C: int, T: int, crop_size: int) -> bool:
    """Every camera's crop and done file is there at its full size."""
    sizes = (T * crop_size * crop_size * 3, T)
    return all((folder / f"{c}{ext}").is_file() and (folder / f"{c}{ext}").stat().st_size == n
               for c in range(C) for ext, n in zip((".u8", ".done"), sizes))


def _invalidate_changed(folder: Path, old_meta: dict, old_squares: np.ndarray,
                        squares: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mark the crops whose square changed as not done, so the build re-cuts only those;
    (C, T) bool of the crops marked.

    The order keeps "done-byte 1 => the crop was cut with the square in boxes.npy" true after
    every step, so a kill anywhere leaves a resumable build, never a complete claim: meta
    loses `complete` first; a camera with changes gets a copy of its crop file under the
    same name (an open CropCache keeps mapping the old file, pixels and squares of one
    build); its changed done-bytes are zeroed and synced; only then do the new squares
    replace boxes.npy.
    """
    changed = ~np.all(old_squares == squares, axis=-1)
    _write_json_atomic(folder / "meta.json", {**old_meta, "complete": False})
    for c in np.flatnonzero(changed.any(axis=1)):
        crop_path, done_path = folder / f"{c}.u8", folder / f"{c}.done"
        with atomic_path(crop_path, fsync=True) as tmp:
            shutil.copyfile(crop_path, tmp)
        with writing(done_path):
            fd = os.open(done_path, os.O_WRONLY)
            try:
                for t in np.flatnonzero(changed[c]):
                    write_all(fd, b"\x00", int(t))
                os.fsync(fd)
            finally:
                os.close(fd)
    _save_array(folder / "boxes.npy", squares)
    _save_array(folder / PERSON_BOXES, boxes)
    return changed


def _allocate(files: tuple[tuple[Path, int], ...]) -> None:
    """Create zero-filled files of these sizes, their disk space reserved up front.

    A disk that cannot hold them fails here, before any decoding, with the space needed; the
    files are then removed, so a half-reserved build never holds the space it could not use.
    """
    for path, size in files:
        path.unlink(missing_ok=True)  # a new file: a reader's map of the old one stays valid
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.ftruncate(fd, size)
            if hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:
                    if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                        continue  # no reservation here; writes still report a full disk
                    for p, _ in files:
                        p.unlink(missing_ok=True)
                    total = sum(n for _, n in files) / 1e6
                    err = write_error(path, exc)
                    raise UserInputError(
                        path.parent, f"{err.problem} (this camera's crops need {total:.1f} MB)"
                    ) from None
        finally:
            os.close(fd)


def _build_camera(
    seq: MultiviewSequence,
    c: int,
    frames: tuple[int, int],
    writer: ProxyWriter | None,
    squares: np.ndarray,
    crop_size: int,
    state: _Build,
) -> None:
    """One sequential decode of camera c over frames [start, end): crops and proxies where
    missing."""
    start, end = frames
    folder = state.folder
    T = seq.num_frames
    crop_path, done_path = folder / f"{c}.u8", folder / f"{c}.done"
    done = np.fromfile(done_path, dtype=np.uint8)
    frame_bytes = crop_size * crop_size * 3
    finished = False
    t = start - 1
    with writing(crop_path):
        crops_fd = os.open(crop_path, os.O_WRONLY)
    try:
        with writing(done_path):
            done_fd = os.open(done_path, os.O_WRONLY)
        try:
            for t, frame in enumerate(seq.iter_frames(c, start), start):
                if state.stop.is_set():
                    break
                if not done[t]:
                    crop = np.ascontiguousarray(crop_square(frame, squares[t], crop_size))
                    with writing(crop_path):
                        write_all(crops_fd, crop.data.cast("B"), t * frame_bytes)
                    with writing(done_path):  # after the crop: a kill between redoes frame t
                        write_all(done_fd, b"\x01", t)
                    done[t] = 1
                if writer is not None:
                    writer.add(t, frame)  # a no-op for frames a resumed writer already has
                state.tick()
                if t == end - 1:
                    finished = True
                    break
            if not finished and not state.stop.is_set():
                raise UserInputError(
                    seq.cameras[c].source.path, f"decoding stopped at frame {t + 1} of {T}"
                )
            with writing(folder):  # finished or stopped: what is done survives a power cut
                os.fsync(crops_fd)
                os.fsync(done_fd)
        finally:
            os.close(done_fd)
    finally:
        os.close(crops_fd)
    if writer is not None and finished:
        writer.close()
