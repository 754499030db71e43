"""Pixels of one sequence for viewers and the prediction pipeline: display proxies,
full-resolution frames and model crops.

Crops follow the checkpoint's input contract (core/contract.py): the crop cache is used only when
it was built with the same crop size and margin, otherwise crops are cut from the full-resolution
frames at the checkpoint's size and margin, so a model never sees crops made differently from its
training crops (never a cached crop rescaled, never a square trimmed for another size). The
sequence's frame readers are not thread-safe, so every full-resolution read goes through one
lock; proxies and crop caches are read-only memory maps and need none.

The person boxes shown and cut with are the sequence's (a box file, ground truth), those the
user corrected (`set_person_boxes`), else those the crop cache detected. A cached crop is served
only where the cache's square is the one these boxes give: after a correction, the frames it
moved are cut from full-resolution frames until a build has re-cut them.

A MediaAccess knows when it is closed: `close` waits for a read in flight, and any read after it
raises MediaClosedError instead of touching the closed readers. Workers hold requests that name
their media, so a request that outlives its sequence (the user switched) is dropped quietly.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .boxes import choose_box_method, gt_boxes
from .cache import CropCache, build_cache, crop_square, crop_squares
from .contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE
from .errors import UserInputError
from .proxies import ProxyStore
from .sequence import MultiviewSequence
from .sources.folder import open_recording


class MediaClosedError(Exception):
    """A read of media that has been closed: the request is stale and is dropped, never shown."""


def default_cache_root() -> Path:
    """Where caches of recordings without a project go (MCSS_STUDIO_CACHE overrides it)."""
    env = os.environ.get("MCSS_STUDIO_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mcss-studio"


def _private_copy(seq: MultiviewSequence) -> MultiviewSequence | None:
    """A second opening of a recording with its own readers (for a build beside the player)."""
    try:
        other = open_recording(seq.path)
    except Exception:  # noqa: BLE001 - not a plain recording folder: share the readers instead
        return None
    if other.camera_names != seq.camera_names or other.num_frames != seq.num_frames:
        other.close()
        return None
    other.name, other.subject, other.action = seq.name, seq.subject, seq.action
    other.joints3d, other.boxes = seq.joints3d, seq.boxes
    return other


class MediaAccess:
    """Frames and crops of one sequence: proxies when built, full-res decode, crop cache."""

    def __init__(self, sequence: MultiviewSequence, cache_dir: Path | None) -> None:
        self.sequence = sequence
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.lock = threading.Lock()
        self.proxies: ProxyStore | None = None
        self.crop_cache: CropCache | None = None
        self._closed = False  # written under `lock`
        # the boxes the trainer's "auto" cuts with, so that the Studio's crops, predictions and
        # embeddings are those of the crops a model was trained on; boxes a method detects come
        # from the crop cache
        method = choose_box_method(sequence)
        self._person_boxes = (gt_boxes(sequence) if method == "gt"
                              else sequence.boxes if method == "file" else None)
        # (person boxes, size, margin, their (C, T, 4) squares): computed once per boxes, where
        # a frame at a time cost a tenth of an embedding index build's CPU
        self._squares: tuple[np.ndarray, int, float, np.ndarray] | None = None

    # -- caches -------------------------------------------------------------------------------
    def attach_caches(self) -> bool:
        """Open proxies and crop cache if they exist and are complete; True if proxies are ready."""
        if self.cache_dir is None or self._closed:
            return False
        try:
            self.crop_cache = CropCache.open(self.cache_dir, self.sequence)
        except (UserInputError, OSError):
            self.crop_cache = None
        self.proxies = _open_proxies(self.cache_dir, self.sequence)
        return self.proxies is not None

    def build_caches(
        self,
        progress: Callable[[int, int], None] | None = None,
        crop_size: int = DEFAULT_CROP_SIZE,
        margin: float = DEFAULT_CROP_MARGIN,
    ) -> None:
        """Build crops (at crop_size and margin: the loaded checkpoint's) and proxies in one
        decode pass (runs in a worker thread); complete proxies are kept. MediaClosedError when
        the media is closed before the build could start. A crop cache that is open meanwhile
        keeps reading its old files: a rebuild replaces them, never overwrites them in place."""
        if self._closed:
            raise MediaClosedError(self.sequence.path)
        if self.cache_dir is None:
            raise UserInputError(None, "no cache folder for this sequence")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        copy = _private_copy(self.sequence)
        try:
            if copy is not None:
                self._build(copy, progress, crop_size, margin)
            else:
                with self.lock:  # shared readers: the player waits for the build
                    if self._closed:
                        raise MediaClosedError(self.sequence.path)
                    self._build(self.sequence, progress, crop_size, margin)
        finally:
            if copy is not None:
                copy.close()

    def _build(self, seq: MultiviewSequence, progress, crop_size: int, margin: float) -> None:
        # the boxes shown (a box file, corrected ones) are the boxes cut with; a change of them
        # re-cuts only the crops it moves (core/cache.py)
        build_cache(seq, self.cache_dir, crop_size=crop_size, margin=margin, proxies=True,
                    progress=progress, boxes=self._person_boxes)

    @property
    def has_proxies(self) -> bool:
        return self.proxies is not None

    @property
    def closed(self) -> bool:
        return self._closed

    # -- frames -------------------------------------------------------------------------------
    def proxy_frame(self, cam: int, t: int) -> tuple[np.ndarray, float] | None:
        """(RGB proxy, proxy px per native px), or None when no proxy exists for it."""
        if self.proxies is None or self._closed:
            return None
        try:
            img = self.proxies.read(cam, t)
        except (UserInputError, LookupError, ValueError, OSError):
            return None
        if img is None:
            return None
        return img, float(img.shape[1]) / float(self.sequence.cameras[cam].width)

    def full_frame(self, cam: int, t: int) -> np.ndarray:
        """Full-resolution RGB of camera cam at frame t; MediaClosedError once closed."""
        with self.lock:
            if self._closed:
                raise MediaClosedError(self.sequence.path)
            return self.sequence.frame(cam, t)

    # -- boxes and crops ----------------------------------------------------------------------
    def person_boxes(self, t: int) -> np.ndarray | None:
        """(C, 4) person boxes of frame t in native pixels (NaN = none), or None."""
        boxes = self.all_person_boxes()
        if boxes is not None:
            return boxes[:, t]
        cache = self.crop_cache  # once: a finished build may replace it meanwhile
        if cache is not None:  # a cache from before person boxes were kept: its squares
            return np.asarray(cache.boxes[:, t], dtype=np.float64)
        return None

    def all_person_boxes(self) -> np.ndarray | None:
        """(C, T, 4) person boxes: given (a box file, ground truth, corrections) or those the
        crop cache detected; None when neither is known yet."""
        if self._person_boxes is not None:
            return self._person_boxes
        cache = self.crop_cache
        return None if cache is None else cache.person_boxes

    def set_person_boxes(self, boxes: np.ndarray) -> None:
        """Boxes corrected by the user (C, T, 4): shown, cut with, and crops of the cache made
        with other squares are no longer served (see `_crop`) until a build re-cuts them."""
        boxes = np.array(boxes, dtype=np.float64)  # a copy: the squares of it are kept
        if boxes.shape != (len(self.sequence.cameras), self.sequence.num_frames, 4):
            raise ValueError(f"boxes of shape {boxes.shape} do not fit the sequence")
        self._person_boxes = boxes

    def crops_current(self, size: int, margin: float) -> bool:
        """The crop cache is cut at this size and margin with the boxes shown, every crop."""
        cache, boxes = self.crop_cache, self._person_boxes
        if cache is None or not self.crops_cached_for(size, margin, cache):
            return False
        if boxes is None:
            return True
        sizes = [(c.width, c.height) for c in self.sequence.cameras]
        return bool(np.array_equal(cache.boxes, crop_squares(boxes, margin, sizes, size)))

    def crops_cached_for(self, size: int, margin: float, cache: CropCache | None = None
                         ) -> bool:
        """True when the crop cache (`cache`, default the attached one) was cut at this size
        with this margin (its squares and pixels are then exactly the ones the model
        expects)."""
        cache = self.crop_cache if cache is None else cache
        # np.isclose's tolerance, in scalar arithmetic: asked for every crop, where np.isclose's
        # array machinery cost 2% of an embedding index build
        return (cache is not None and cache.crop_size == size
                and abs(cache.margin - margin) <= 1e-8 + 1e-5 * abs(margin))

    def crop_regions(self, t: int, size: int, margin: float) -> np.ndarray:
        """(C, 4) square crop regions of frame t for crops of `size` px with `margin`."""
        return self._regions(self.crop_cache, t, size, margin)

    def _regions(self, cache: CropCache | None, t: int, size: int, margin: float) -> np.ndarray:
        person = self._person_boxes
        if person is None and cache is not None and self.crops_cached_for(size, margin, cache):
            return np.asarray(cache.boxes[:, t], dtype=np.float64)
        if person is not None:
            return self._person_squares(person, size, margin)[:, t].copy()
        if cache is not None:  # only the cache's squares are known: undo its margin
            boxes = _unpadded(cache.boxes[:, t], cache.margin)
        else:
            boxes = np.full((len(self.sequence.cameras), 4), np.nan)
        sizes = [(c.width, c.height) for c in self.sequence.cameras]
        return crop_squares(boxes[:, None], margin, sizes, size)[:, 0]

    def _person_squares(self, person: np.ndarray, size: int, margin: float) -> np.ndarray:
        """(C, T, 4) crop squares of the person boxes `person` for every frame (cache.crop_squares
        works box by box: the same squares as frame by frame)."""
        memo = self._squares
        if memo is None or memo[0] is not person or memo[1:3] != (size, margin):
            sizes = [(c.width, c.height) for c in self.sequence.cameras]
            memo = (person, size, margin, crop_squares(person, margin, sizes, size))
            self._squares = memo  # one assignment: a reader in another thread sees old or new
        return memo[3]

    def crops(self, t: int, size: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """All views' crops of frame t (C, size, size, 3) and their square regions (C, 4)."""
        if self._closed:
            raise MediaClosedError(self.sequence.path)
        # one cache for the whole frame: a finished rebuild may attach another one meanwhile
        cache = self.crop_cache
        regions = self._regions(cache, t, size, margin)
        out = np.empty((len(self.sequence.cameras), size, size, 3), dtype=np.uint8)
        for c in range(len(self.sequence.cameras)):
            out[c] = self._crop(cache, c, t, size, margin, regions[c])
        return out, regions

    def crop(self, cam: int, t: int, size: int, margin: float) -> np.ndarray:
        """One view's crop of frame t (size, size, 3), made as `crops` makes it."""
        if self._closed:
            raise MediaClosedError(self.sequence.path)
        cache = self.crop_cache
        return self._crop(cache, cam, t, size, margin, self._regions(cache, t, size, margin)[cam])

    def _crop(self, cache: CropCache | None, cam: int, t: int, size: int, margin: float,
              region: np.ndarray) -> np.ndarray:
        # a cached crop only where it was cut with this very square: after a box correction
        # the cache's crop of that frame is old until a build re-cuts it
        # (`cache` None is none, not "the attached one": a build may attach one meanwhile)
        if (cache is None or not self.crops_cached_for(size, margin, cache)
                or not np.array_equal(cache.boxes[cam, t], region)):
            return crop_square(self.full_frame(cam, t), region, size)
        try:
            return np.asarray(cache.get(cam, t))
        except UserInputError:  # the cache was closed with this media meanwhile
            if self._closed:
                raise MediaClosedError(self.sequence.path) from None
            raise

    def close(self) -> None:
        """Close the readers once a read in flight has finished; later reads are refused."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self.sequence.close()
        for store in (self.proxies, self.crop_cache):
            if store is not None:
                store.close()


def _unpadded(squares: np.ndarray, margin: float) -> np.ndarray:
    """(C, 4) person squares inside crop squares cut with `margin` (same centre, side divided
    by 1 + margin): re-squaring them with another margin gives that margin's crops, not the
    first margin applied twice."""
    sq = np.asarray(squares, dtype=np.float64)
    centre = (sq[:, :2] + sq[:, 2:]) / 2
    half = (sq[:, 2:3] - sq[:, 0:1]) / (2 * (1.0 + margin))
    return np.concatenate([centre - half, centre + half], axis=1)


def _open_proxies(cache_dir: Path, sequence: MultiviewSequence) -> ProxyStore | None:
    """The data layer's ProxyStore for this sequence if complete, else None."""
    store = ProxyStore(cache_dir, sequence)
    try:
        complete = all(store.complete(c) for c in range(len(sequence.cameras)))
    except (UserInputError, OSError, ValueError):  # a damaged store is simply not used
        complete = False
    if not complete:
        store.close()
        return None
    return store
