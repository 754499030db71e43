"""The embedding index on disk: computed in the background, keyed by checkpoint and crops,
resumable after a kill, never used when damaged.

Layout, inside a project's (or the user) cache folder:

    embeddings/<checkpoint digest>/meta.json        sequences, fingerprints, sizes, CRC-32s;
                                                    written last, it alone says "complete"
    embeddings/<checkpoint digest>/embeddings.f32   float32 (N, D), rows as core/embeddings.py
    embeddings/<checkpoint digest>/poses.f32        float32 (N, J, 3) predicted camera-frame poses
    embeddings/<checkpoint digest>/gt.f32           float32 (instants, J, 3) world GT, NaN = none
    embeddings/<checkpoint digest>/chunks/*.npz     the work in progress (removed when complete)

The key: the checkpoint's content digest names the folder, and meta.json records each sequence's
crop-cache fingerprint (core/cache.py: the videos, crop size, margin and boxes). An index whose
checkpoint or any fingerprint differs is stale and is rebuilt; chunks of sequences whose crops did
not change are kept (their file names carry the fingerprint).

Resume: the work is done in chunks of CHUNK_FRAMES frames of one sequence (all cameras), each
written to a temporary name and renamed when whole (core/atomic.py), so a chunk file is complete
or absent; a killed build starts again where it stopped. The final files are assembled from the
chunks and meta.json is written after them, so nothing half-written ever claims to be complete.

Damage: opening checks every size and CRC-32 in meta.json and a chunk is read through zip's own
CRC; a truncated or corrupt file makes the index (or chunk) stale, and it is rebuilt, never used.
Float32 storage on disk; an int8 copy for fast candidate scans is made in memory when queries
need it (core/knn.py, EmbeddingIndex.enable_fast_search).

Opening: every sequence is opened twice (to plan, then to embed) but its videos are demuxed at
most once: the second open, and every open in a later build with the same cache folder, takes
the stream indexes remembered there (core/video_index.py) and, the crops coming from the crop
cache, never opens the video containers at all.

Throughput: a second thread cuts the next chunk's crops while the model embeds this one
(_Cutter). It hides what releases the GIL (reading crop files from disk); Python work there
(opening a sequence, per-frame cutting) still competes with the forward for the GIL, so for the
small demo model it was measured a wash (README, embedding throughput).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .atomic import atomic_open, writing
from .cache import CropCache, build_cache
from .checkpoint import checkpoint_digest
from .embeddings import EmbeddingIndex, SequenceInfo
from .errors import UserInputError
from .joints import JOINT_NAMES
from .media import MediaAccess
from .sequence import MultiviewSequence
from .sources.dataset import Dataset
from .video_index import INDEX_MEMO, remember_video_indexes, save_video_indexes

INDEX_VERSION = 1
CHUNK_FRAMES = 32
KEEP_BYTES = 256 << 20  # chunks computed in this build kept in memory for the final files
ProgressFn = Callable[[int, int], None]
_FILES = ("embeddings.f32", "poses.f32", "gt.f32")


class StaleIndexError(Exception):
    """The index on disk is missing, incomplete, damaged or for other inputs: rebuild it."""


def index_folder(cache_dir: str | os.PathLike[str], digest: str) -> Path:
    return Path(cache_dir) / "embeddings" / digest


# -- reading ------------------------------------------------------------------------------------
def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise StaleIndexError(f"{folder / 'meta.json'}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("version") != INDEX_VERSION:
        raise StaleIndexError(f"{folder}: index of another version")
    if not meta.get("complete"):
        raise StaleIndexError(f"{folder}: incomplete")
    return meta


def _sequence_infos(meta: dict) -> list[SequenceInfo]:
    try:
        return [SequenceInfo(name=s["name"], subject=s["subject"], action=s["action"],
                             frames=int(s["frames"]), cameras=tuple(s["cameras"]),
                             first_row=int(s["first_row"]), first_instant=int(s["first_instant"]),
                             crops=s.get("crops"), crop_size=int(s.get("crop_size", 0)))
                for s in meta["sequences"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise StaleIndexError(f"damaged index metadata ({exc})") from None


def open_index(
    folder: str | os.PathLike[str], fingerprints: dict[str, str] | None = None,
    verify: bool = True,
) -> EmbeddingIndex:
    """The complete index in `folder`, memory-mapped. StaleIndexError when it is missing,
    incomplete, of other crops (`fingerprints`: sequence name -> crop fingerprint, None: not
    checked), or a file's size or (with `verify`) CRC-32 differs from meta.json."""
    folder = Path(folder)
    meta = _read_meta(folder)
    if fingerprints is not None and meta.get("fingerprints") != fingerprints:
        raise StaleIndexError(f"{folder}: made from other crops")
    infos = _sequence_infos(meta)
    n, d, j = int(meta["rows"]), int(meta["dim"]), int(meta["joints"])
    instants = sum(s.frames for s in infos)
    shapes = {"embeddings.f32": (n, d), "poses.f32": (n, j, 3), "gt.f32": (instants, j, 3)}
    arrays = {}
    for name, shape in shapes.items():
        path = folder / name
        expected = int(np.prod(shape)) * 4
        if not path.is_file() or path.stat().st_size != expected:
            raise StaleIndexError(f"{path}: missing or truncated")
        if verify and _crc32(path) != meta["crc32"].get(name):
            raise StaleIndexError(f"{path}: corrupt (CRC-32 differs)")
        arrays[name] = (np.memmap(path, np.float32, "r", shape=shape) if expected
                        else np.zeros(shape, np.float32))
    return EmbeddingIndex(infos, arrays["embeddings.f32"], arrays["poses.f32"],
                          arrays["gt.f32"], checkpoint=str(meta.get("checkpoint", "")))


# -- building -----------------------------------------------------------------------------------
class _Progress:
    """Frames embedded so far of the whole build; the callback may raise to cancel."""

    def __init__(self, total: int, callback: ProgressFn | None) -> None:
        self.total, self.done, self.callback = total, 0, callback

    def add(self, frames: int) -> None:
        self.done += frames
        self.poll()

    def poll(self) -> None:
        if self.callback is not None:
            self.callback(self.done, self.total)


def _crop_cache(seq: MultiviewSequence, cache_dir: Path, size: int, margin: float,
                progress: _Progress) -> CropCache:
    """The sequence's crop cache at the checkpoint's size and margin, built (without proxies)
    when missing; waits while another build (the Studio's own) holds the folder."""
    while True:
        try:
            return build_cache(seq, cache_dir, crop_size=size, margin=margin, proxies=False,
                               progress=lambda _d, _t: progress.poll())
        except UserInputError as exc:
            if "another crop-cache build" not in exc.problem:
                raise
        progress.poll()  # cancelling stays possible while waiting
        time.sleep(0.5)


def _chunk_path(folder: Path, fingerprint: str, start: int) -> Path:
    return folder / "chunks" / f"{fingerprint[:20]}-{start:07d}.npz"


def _read_chunk(path: Path, frames: int, cameras: int, dim: int) -> dict | None:
    """A finished chunk, or None when it is absent or damaged (then it is computed again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            chunk = {k: np.asarray(z[k]) for k in ("embedding", "pose")}
    except Exception:  # noqa: BLE001 - a damaged zip fails in many ways: compute it again
        return None
    if (chunk["embedding"].shape != (frames, cameras, dim)
            or chunk["pose"].shape != (frames, cameras, len(JOINT_NAMES), 3)):
        return None
    return chunk


def _save_chunk(predictions: list, path: Path) -> dict:
    """The chunk of embedded frames (all cameras), written complete-or-absent."""
    chunk = {"embedding": np.stack([p.embedding for p in predictions]).astype(np.float32),
             "pose": np.stack([p.pose_cam for p in predictions]).astype(np.float32)}
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **chunk)
    return chunk


class _Plan:
    """What the index will hold: each sequence's info and crop fingerprint."""

    def __init__(self) -> None:
        self.infos: list[SequenceInfo] = []
        self.fingerprints: dict[str, str] = {}

    def add(self, seq: MultiviewSequence, cache: CropCache) -> None:
        rows = sum(s.rows for s in self.infos)
        instants = sum(s.frames for s in self.infos)
        self.infos.append(SequenceInfo(
            name=seq.name, subject=seq.subject, action=seq.action, frames=seq.num_frames,
            cameras=tuple(seq.camera_names), first_row=rows, first_instant=instants,
            crops=str(cache.folder), crop_size=cache.crop_size))
        self.fingerprints[seq.name] = str(cache.meta["fingerprint"])


def build_index(
    dataset: Dataset, cache_dir: str | os.PathLike[str], checkpoint: str | os.PathLike[str],
    progress: ProgressFn | None = None, device: str = "cpu", pipeline=None,
) -> EmbeddingIndex:
    """The index of every crop of `dataset` for `checkpoint`: the one on disk when it is
    complete, intact and of the same crops; otherwise computed (resuming finished chunks) and
    written. progress(done frames, total frames) may raise to stop; the work done stays."""
    from .pipeline import PosePipeline  # torch: imported by the worker, not by readers

    cache_dir = Path(cache_dir)
    digest = checkpoint_digest(checkpoint)
    folder = index_folder(cache_dir, digest)
    if pipeline is None:
        pipeline = PosePipeline.load(checkpoint, device)
    size, margin = pipeline.contract.crop_size, pipeline.contract.crop_margin
    plan, gt = _Plan(), []
    counter = _Progress(0, progress)
    remember_video_indexes(cache_dir)
    learnt = INDEX_MEMO.learnt
    for name in dataset.names:  # one sequence open at a time: a dataset may have thousands
        with dataset.open(name) as seq:
            plan.add(seq, _crop_cache(seq, cache_dir, size, margin, counter))
            gt.append(_gt_of(seq))
    if INDEX_MEMO.learnt != learnt:
        save_video_indexes(cache_dir)  # the next build (a new checkpoint) demuxes nothing
    try:
        return open_index(folder, plan.fingerprints)
    except StaleIndexError:
        pass
    counter.total = sum(s.frames for s in plan.infos)
    kept = _Kept()
    chunks = _embed_all(pipeline, dataset, plan, cache_dir, folder, counter, kept)
    _write_index(folder, plan, chunks, gt, digest, counter, kept)
    return open_index(folder, plan.fingerprints, verify=False)


def _gt_of(seq: MultiviewSequence) -> np.ndarray:
    shape = (seq.num_frames, len(JOINT_NAMES), 3)
    j = seq.joints3d
    if j is None or np.shape(j) != shape:
        return np.full(shape, np.nan, np.float32)
    return np.asarray(j, np.float32)


class _Kept:
    """Chunks this build computed, kept in memory (up to KEEP_BYTES) so that assembling the
    final files need not read them back from disk."""

    def __init__(self) -> None:
        self.chunks: dict[Path, dict] = {}
        self.bytes = 0

    def add(self, path: Path, chunk: dict) -> None:
        size = sum(a.nbytes for a in chunk.values())
        if self.bytes + size <= KEEP_BYTES:
            self.chunks[path] = chunk
            self.bytes += size

    def load(self, path: Path) -> dict:
        return self.chunks.get(path) or _load_any(path)


def _embed_all(pipeline, dataset: Dataset, plan: _Plan, cache_dir: Path, folder: Path,
               counter: _Progress, kept: _Kept) -> list[list[Path]]:
    """Every sequence's chunk paths in frame order, computing those not on disk yet: a
    _Cutter thread cuts the next chunk's crops while the model embeds this one."""
    with writing(folder):
        (folder / "chunks").mkdir(parents=True, exist_ok=True)
    dim = pipeline.contract.embedding_dim
    chunks, jobs = [], []
    for info in plan.infos:
        paths, missing = [], []
        for start in range(0, info.frames, CHUNK_FRAMES):
            frames = range(start, min(info.frames, start + CHUNK_FRAMES))
            path = _chunk_path(folder, plan.fingerprints[info.name], start)
            paths.append(path)
            if _read_chunk(path, len(frames), len(info.cameras), dim) is None:
                missing.append((frames, path))
            else:
                counter.add(len(frames))  # done by an earlier build
        chunks.append(paths)
        if missing:
            jobs.append((info.name, missing))
    cutter = _Cutter(pipeline, dataset, cache_dir, jobs)
    try:
        for path, cut in cutter:
            kept.add(path, _save_chunk(pipeline.predict_cut(cut, place=False), path))
            counter.add(len(cut.frames))
    finally:
        cutter.stop()
    return chunks


class _Cutter:
    """Cuts the crops (and rays) of the chunks to compute, in order, in a thread of its own,
    at most AHEAD chunks before the model: cutting overlaps the forward pass where it waits on
    files (the GIL is free then, and while torch computes). Iterating yields (chunk path,
    CutFrames) and re-raises the thread's error; `stop` ends the thread early (a cancelled
    build) and waits for it."""

    AHEAD = 2
    _DONE = object()

    def __init__(self, pipeline, dataset: Dataset, cache_dir: Path,
                 jobs: list[tuple[str, list[tuple[range, Path]]]]) -> None:
        self.pipeline, self.dataset, self.cache_dir, self.jobs = pipeline, dataset, cache_dir, jobs
        self.queue: queue.Queue = queue.Queue(self.AHEAD)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="embedding-crops", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for name, chunks in self.jobs:
                with self.dataset.open(name) as seq:
                    media = MediaAccess(seq, self.cache_dir)
                    media.attach_caches()
                    try:
                        for frames, path in chunks:
                            if not self._put((path, self.pipeline.cut_frames(media, frames))):
                                return
                    finally:
                        if media.crop_cache is not None:
                            media.crop_cache.close()
            self._put(self._DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(exc)

    def _put(self, item) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def _write_index(folder: Path, plan: _Plan, chunks: list[list[Path]], gt: list[np.ndarray],
                 digest: str, counter: _Progress, kept: _Kept) -> None:
    """The final files from the chunks, then meta.json; the chunks go last."""
    (folder / "meta.json").unlink(missing_ok=True)  # nothing claims completeness meanwhile
    dim = None
    crcs: dict[str, int] = {}
    for name, key in (("embeddings.f32", "embedding"), ("poses.f32", "pose")):
        with atomic_open(folder / name, "wb") as fh:
            crc = 0
            for paths in chunks:
                parts = [kept.load(p) for p in paths]
                block = np.concatenate([c[key] for c in parts])  # (T, C, ...)
                data = np.ascontiguousarray(np.swapaxes(block, 0, 1), np.float32).tobytes()
                dim = block.shape[-1] if key == "embedding" else dim
                crc = zlib.crc32(data, crc)
                fh.write(data)
            counter.poll()
        crcs[name] = crc
    gt_bytes = np.ascontiguousarray(np.concatenate(gt) if gt else np.zeros((0, 17, 3)),
                                    np.float32).tobytes()
    with atomic_open(folder / "gt.f32", "wb") as fh:
        fh.write(gt_bytes)
    crcs["gt.f32"] = zlib.crc32(gt_bytes)
    meta = {
        "version": INDEX_VERSION, "complete": True, "checkpoint": digest,
        "rows": sum(s.rows for s in plan.infos), "dim": int(dim or 0),
        "joints": len(JOINT_NAMES), "fingerprints": plan.fingerprints, "crc32": crcs,
        "sequences": [{"name": s.name, "subject": s.subject, "action": s.action,
                       "frames": s.frames, "cameras": list(s.cameras), "first_row": s.first_row,
                       "first_instant": s.first_instant, "crops": s.crops,
                       "crop_size": s.crop_size} for s in plan.infos],
    }
    with atomic_open(folder / "meta.json", fsync=True) as fh:
        json.dump(meta, fh, indent=1)
    shutil.rmtree(folder / "chunks", ignore_errors=True)


def _load_any(path: Path) -> dict:
    """A chunk this build just verified or wrote (any shape)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: np.asarray(z[k]) for k in ("embedding", "pose")}


def crop_of(index: EmbeddingIndex, row: int) -> np.ndarray | None:
    """The crop (S, S, 3) uint8 the row's embedding was computed from, read from its sequence's
    crop cache; None when that cache is gone or of another size."""
    info = index.info(row)
    if not info.crops or info.crop_size <= 0:
        return None
    path = Path(info.crops) / f"{int(index.camera[row])}.u8"
    side = info.crop_size
    try:
        if path.stat().st_size != info.frames * side * side * 3:
            return None
        crops = np.memmap(path, np.uint8, "r", shape=(info.frames, side, side, 3))
        return np.array(crops[int(index.frame[row])])
    except OSError:
        return None


__all__ = ["CHUNK_FRAMES", "StaleIndexError", "build_index", "crop_of", "index_folder",
           "open_index"]
