"""Detector keypoints of a recording, per (camera, frame), on disk: resumable, never stale.

Layout, inside a project's (or the user's) cache folder:

    keypoints/<seq.key>.npz     meta (JSON), joints float32 (C, T, 17, 2) native px (NaN: no
                                person), confidence float32 (C, T, 17), boxes float32 (C, T, 4)
                                x0 y0 x1 y1 (NaN: none), done bool (C, T)

What it guarantees:

- The file is only ever replaced whole (core/atomic.py): a process killed at any moment leaves
  the previous file or the new one, never a mix. `done` says which (camera, frame) pairs hold
  a detector's answer, so an interrupted `compute_keypoints` resumes where its last save was
  (it saves every `save_seconds` and when it stops, also on Ctrl+C or an error).
- The file is keyed to what it was computed from: the recording's input fingerprint (its video
  files' paths, sizes and modification times, cameras, offsets and frame range; core/cache.py),
  the detector (model and version) and the landmark mapping's version. A file whose key differs
  is stale: `load_keypoints` returns None and `compute_keypoints` starts afresh over it.
- A file at that path that is not a keypoint store of ours (or is damaged) is reported in one
  UserInputError naming it, and is never overwritten: the user decides what it is.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open, make_dirs
from .cache import input_fingerprint
from .errors import UserInputError
from .joints import NUM_JOINTS
from .pose_detector import MAPPING_VERSION, Detection, PoseDetector
from .sequence import MultiviewSequence

FORMAT = "mcss-keypoints"
STORE_VERSION = 1
ProgressFn = Callable[[int, int], None]
_ARRAYS = ("joints", "confidence", "boxes", "done")


@dataclass
class KeypointStore:
    """Detector output for every (camera, frame) of one recording (arrays as in the layout)."""

    path: Path
    key: dict
    cameras: list[str]
    joints: np.ndarray
    confidence: np.ndarray
    boxes: np.ndarray
    done: np.ndarray

    @classmethod
    def empty(cls, path: Path, key: dict, cameras: list[str], frames: int) -> KeypointStore:
        c = len(cameras)
        return cls(path, key, list(cameras),
                   np.full((c, frames, NUM_JOINTS, 2), np.nan, np.float32),
                   np.zeros((c, frames, NUM_JOINTS), np.float32),
                   np.full((c, frames, 4), np.nan, np.float32),
                   np.zeros((c, frames), bool))

    @property
    def num_frames(self) -> int:
        return self.done.shape[1]

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def set(self, camera: int, frame: int, detection: Detection) -> None:
        self.joints[camera, frame] = detection.joints
        self.confidence[camera, frame] = detection.confidence
        self.boxes[camera, frame] = detection.box
        self.done[camera, frame] = True

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(joints (C, 17, 2) float64, confidence (C, 17)) of synchronised frame t, or None
        while some camera's detection of it is missing."""
        if not self.done[:, t].all():
            return None
        return self.joints[:, t].astype(np.float64), self.confidence[:, t].astype(np.float64)

    def save(self) -> None:
        """Replace the file with this state, atomically."""
        meta = {"format": FORMAT, **self.key,
                "cameras": self.cameras, "complete": self.complete}
        make_dirs(self.path.parent)
        with atomic_open(self.path, "wb") as fh:
            np.savez(fh, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                     **{name: getattr(self, name) for name in _ARRAYS})


def keypoints_path(cache_dir: str | os.PathLike[str], seq: MultiviewSequence) -> Path:
    return Path(cache_dir) / "keypoints" / f"{seq.key}.npz"


def store_key(seq: MultiviewSequence, detector_id: str) -> dict:
    """What a store must have been computed from to be used for `seq` with this detector."""
    return {"version": STORE_VERSION, "input": input_fingerprint(seq), "detector": detector_id,
            "mapping": MAPPING_VERSION, "frames": seq.num_frames}


def _foreign(path: Path, why: str) -> UserInputError:
    return UserInputError(path, f"not a keypoint store of MCSS Studio ({why}); it is left as "
                          "it is: move or delete it to compute the keypoints")


def _read(path: Path) -> KeypointStore:
    """The store in the file, whatever its key; UserInputError when it is not one of ours."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "meta" not in npz.files or any(a not in npz.files for a in _ARRAYS):
                raise _foreign(path, "arrays missing")
            meta = json.loads(npz["meta"].tobytes().decode())
            arrays = {a: npz[a] for a in _ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _foreign(path, f"unreadable: {' '.join(str(exc).split())[:80]}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _foreign(path, "no keypoint-store marker")
    cameras = meta.get("cameras")
    key = {k: meta.get(k) for k in ("version", "input", "detector", "mapping", "frames")}
    shape_ok = isinstance(cameras, list) and arrays["done"].ndim == 2 and \
        arrays["joints"].shape == arrays["done"].shape + (NUM_JOINTS, 2) and \
        arrays["confidence"].shape == arrays["done"].shape + (NUM_JOINTS,) and \
        arrays["boxes"].shape == arrays["done"].shape + (4,) and \
        arrays["done"].shape[0] == len(cameras) and arrays["done"].dtype == bool
    if not shape_ok:
        raise _foreign(path, "arrays of the wrong shape")
    return KeypointStore(path, key, cameras, **arrays)


def load_keypoints(path: str | os.PathLike[str], seq: MultiviewSequence, detector_id: str
                   ) -> KeypointStore | None:
    """The store at `path` if it was computed for `seq` with `detector_id` (complete or not);
    None when there is none or it is stale; UserInputError when the file is not ours."""
    path = Path(path)
    if not path.exists():
        return None
    store = _read(path)
    if store.key != store_key(seq, detector_id) or store.cameras != seq.camera_names:
        return None
    return store


def compute_keypoints(seq: MultiviewSequence, path: str | os.PathLike[str],
                      detector: PoseDetector, progress: ProgressFn | None = None,
                      cancelled: Callable[[], bool] | None = None, save_seconds: float = 10.0
                      ) -> KeypointStore:
    """Detect every (camera, frame) not yet in the store at `path` (resuming a partial one,
    replacing a stale one), saving every `save_seconds` and when it stops. Returns the store;
    it is incomplete only when `cancelled()` said so."""
    path = Path(path)
    store = load_keypoints(path, seq, detector.detector_id) or KeypointStore.empty(
        path, store_key(seq, detector.detector_id), seq.camera_names, seq.num_frames)
    total, done = store.done.size, int(store.done.sum())
    last_save = time.monotonic()
    try:
        for c in range(len(seq.cameras)):
            todo = np.flatnonzero(~store.done[c])
            if todo.size == 0:
                continue
            # one sequential decode of the span still to do (seeking per frame is slower)
            for t, rgb in zip(range(todo[0], todo[-1] + 1),
                              seq.iter_frames(c, int(todo[0]), int(todo[-1]) + 1)):
                if cancelled is not None and cancelled():
                    return store
                if store.done[c, t]:
                    continue
                store.set(c, t, detector.detect(rgb))
                done += 1
                if progress is not None:
                    progress(done, total)
                if time.monotonic() - last_save >= save_seconds:
                    store.save()
                    last_save = time.monotonic()
    finally:
        store.save()
    return store
