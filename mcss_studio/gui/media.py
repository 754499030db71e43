"""Pixels for the Studio, without Qt: display proxies, full-resolution frames and model crops.

The sequence's frame readers are not thread-safe, so every full-resolution read goes through
one lock; proxies and crop caches are read-only memory maps and need none.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import UserInputError

CROP_MARGIN = 0.2  # the crop cache's default margin, so live crops match cached ones


def default_cache_root() -> Path:
    """Where caches of recordings without a project go (MCSS_STUDIO_CACHE overrides it)."""
    env = os.environ.get("MCSS_STUDIO_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mcss-studio"


def _private_copy(seq):
    """A second opening of a recording with its own readers (for a build beside the player)."""
    from ..core.sources.folder import open_recording

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

    def __init__(self, sequence, cache_dir: Path | None) -> None:
        self.sequence = sequence
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.lock = threading.Lock()
        self.proxies = None
        self.crop_cache = None
        self._person_boxes = sequence.boxes
        if self._person_boxes is None and sequence.joints3d is not None and sequence.is_calibrated:
            from ..core.boxes import gt_boxes

            self._person_boxes = gt_boxes(sequence)

    # -- caches -------------------------------------------------------------------------------
    def attach_caches(self) -> bool:
        """Open proxies and crop cache if they exist and are complete; True if proxies are ready."""
        if self.cache_dir is None:
            return False
        try:
            from ..core.cache import CropCache

            self.crop_cache = CropCache.open(self.cache_dir, self.sequence)
        except (ImportError, UserInputError, OSError):
            self.crop_cache = None
        self.proxies = _open_proxies(self.cache_dir, self.sequence)
        return self.proxies is not None

    def build_caches(self, progress=None) -> None:
        """Build crops and proxies in one decode pass (runs in a worker thread)."""
        if self.cache_dir is None:
            raise UserInputError(None, "no cache folder for this sequence")
        from ..core.cache import build_cache

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        copy = _private_copy(self.sequence)
        try:
            if copy is not None:
                self._build(build_cache, copy, progress)
            else:
                with self.lock:  # shared readers: the player waits for the build
                    self._build(build_cache, self.sequence, progress)
        finally:
            if copy is not None:
                copy.close()

    def _build(self, build_cache, seq, progress) -> None:
        try:
            build_cache(seq, self.cache_dir, margin=CROP_MARGIN, proxies=True, progress=progress)
        except ImportError:  # display proxies not available: crops only
            build_cache(seq, self.cache_dir, margin=CROP_MARGIN, proxies=False, progress=progress)

    @property
    def has_proxies(self) -> bool:
        return self.proxies is not None

    # -- frames -------------------------------------------------------------------------------
    def proxy_frame(self, cam: int, t: int) -> tuple[np.ndarray, float] | None:
        """(RGB proxy, proxy px per native px), or None when no proxy exists for it."""
        if self.proxies is None:
            return None
        try:
            img = self.proxies.read(cam, t)
        except (UserInputError, LookupError, ValueError, OSError):
            return None
        if img is None:
            return None
        return img, float(img.shape[1]) / float(self.sequence.cameras[cam].width)

    def full_frame(self, cam: int, t: int) -> np.ndarray:
        with self.lock:
            return self.sequence.frame(cam, t)

    # -- boxes and crops ----------------------------------------------------------------------
    def person_boxes(self, t: int) -> np.ndarray | None:
        """(C, 4) person boxes of frame t in native pixels (NaN = none), or None."""
        if self._person_boxes is not None:
            return self._person_boxes[:, t]
        if self.crop_cache is not None:
            return np.asarray(self.crop_cache.boxes[:, t], dtype=np.float64)
        return None

    def crop_regions(self, t: int, size: int = 128) -> np.ndarray:
        """(C, 4) square crop regions the model sees for frame t."""
        if self.crop_cache is not None:
            return np.asarray(self.crop_cache.boxes[:, t], dtype=np.float64)
        from ..core.cache import crop_squares

        boxes = self.person_boxes(t)
        if boxes is None:
            boxes = np.full((len(self.sequence.cameras), 4), np.nan)
        sizes = [(c.width, c.height) for c in self.sequence.cameras]
        try:
            return crop_squares(boxes[:, None], CROP_MARGIN, sizes, size)[:, 0]
        except TypeError:  # older signature without crop_size
            return crop_squares(boxes[:, None], CROP_MARGIN, sizes)[:, 0]

    def crops(self, t: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """All views' crops of frame t (C, size, size, 3) and their square regions (C, 4)."""
        from ..core.cache import crop_square

        regions = self.crop_regions(t, size)
        out = np.empty((len(self.sequence.cameras), size, size, 3), dtype=np.uint8)
        for c in range(len(self.sequence.cameras)):
            crop = None
            if self.crop_cache is not None:
                crop = np.asarray(self.crop_cache.get(c, t))
            else:
                crop = crop_square(self.full_frame(c, t), regions[c], size)
            if crop.shape[0] != size:
                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            out[c] = crop
        return out, regions

    def close(self) -> None:
        with self.lock:
            self.sequence.close()
        for store in (self.proxies, self.crop_cache):
            close = getattr(store, "close", None)
            if close is not None:
                close()


def _open_proxies(cache_dir: Path, sequence):
    """The data layer's ProxyStore for this sequence if complete, else None."""
    try:
        from ..core.proxies import ProxyStore
    except ImportError:
        return None
    attempts = [lambda: ProxyStore(cache_dir, sequence)]
    opener = getattr(ProxyStore, "open", None)
    if opener is not None:
        attempts.append(lambda: opener(cache_dir / "proxies" / sequence.key))
    for attempt in attempts:
        try:
            store = attempt()
        except (UserInputError, OSError, TypeError, ValueError, FileNotFoundError):
            continue
        complete = getattr(store, "complete", None) or getattr(store, "available", None)
        if complete is not None:
            try:
                if not all(complete(c) for c in range(len(sequence.cameras))):
                    continue
            except Exception:  # noqa: BLE001 - a broken store is simply not used
                continue
        return store
    return None
