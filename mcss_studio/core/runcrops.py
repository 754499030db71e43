"""Crops and ground-truth poses of the frames a training run names (its logged triplets), from
the run's dataset: crops cut the way the trainer cut them, for thumbnails, and the distance of
an anchor's and its negative's true poses, which flags likely false negatives. No Qt; call it
from one worker thread.

Each crop comes from the run's crop cache when that cache was built at the run's crop size and
margin, otherwise it is cut from the full-resolution frame (core/media.py MediaAccess.crop), so
a thumbnail shows what the network saw. Sequences are opened on first use and the few most
recent are kept open; `close` releases them.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from .contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE
from .errors import UserInputError
from .geometry import paired_pose_distance
from .media import MediaAccess
from .sources.dataset import Dataset, open_dataset

OPEN_SEQUENCES = 4  # open videos cost file handles and decoders; a table shows a few at a time


class RunCrops:
    """crop(sequence, camera_index, frame) -> (S, S, 3) uint8 RGB of one dataset."""

    def __init__(self, data: Path, cache_dir: Path | None, crop_size: int = DEFAULT_CROP_SIZE,
                 margin: float = DEFAULT_CROP_MARGIN) -> None:
        self.data, self.cache_dir = Path(data), cache_dir
        self.crop_size, self.margin = int(crop_size), float(margin)
        self._dataset: Dataset | None = None
        self._open: OrderedDict[str, MediaAccess] = OrderedDict()
        self._joints: dict[str, np.ndarray | None] = {}

    def crop(self, sequence: str, camera_index: int, frame: int) -> np.ndarray:
        """The crop; UserInputError naming the dataset when the sequence, camera or frame is
        not in it (the dataset changed since the run)."""
        media = self._media(sequence)
        cameras, frames = len(media.sequence.cameras), media.sequence.num_frames
        if not (0 <= camera_index < cameras and 0 <= frame < frames):
            raise UserInputError(self.data, f"{sequence} has no camera {camera_index} frame "
                                 f"{frame} ({cameras} cameras, {frames} frames)")
        return media.crop(camera_index, frame, self.crop_size, self.margin)

    def pose_distance(self, names: list[str], a_seq: np.ndarray, a_frame: np.ndarray,
                      n_seq: np.ndarray, n_frame: np.ndarray) -> tuple[np.ndarray, str]:
        """Per triplet (sequences as codes into `names`), the unit-scale Procrustes distance
        of the anchor's and the negative's ground-truth poses (core/geometry.py, the retrieval
        protocol's pose match); NaN where either has none. With it, a one-line problem ('' if
        none), such as a sequence the dataset lacks."""
        out = np.full(len(a_seq), np.nan)
        problem = ""
        for code in np.unique(np.concatenate([a_seq, n_seq])):
            try:
                self._ground_truth(names[int(code)])
            except UserInputError as exc:
                problem, self._joints[names[int(code)]] = str(exc), None
        pairs = np.unique(np.stack([a_seq, n_seq], axis=1), axis=0) if len(a_seq) else []
        for sa, sn in pairs:
            ja, jn = self._joints[names[int(sa)]], self._joints[names[int(sn)]]
            if ja is None or jn is None:
                continue
            rows = np.flatnonzero((a_seq == sa) & (n_seq == sn))
            fa, fn = a_frame[rows], n_frame[rows]
            ok = (fa >= 0) & (fa < len(ja)) & (fn >= 0) & (fn < len(jn))
            if ok.any():
                out[rows[ok]] = paired_pose_distance(ja[fa[ok]], jn[fn[ok]])
        return out, problem

    def _ground_truth(self, sequence: str) -> np.ndarray | None:
        if sequence not in self._joints:
            joints = self._media(sequence).sequence.joints3d
            self._joints[sequence] = None if joints is None else np.asarray(joints, np.float64)
        return self._joints[sequence]

    def _media(self, sequence: str) -> MediaAccess:
        media = self._open.get(sequence)
        if media is not None:
            self._open.move_to_end(sequence)
            return media
        if self._dataset is None:
            self._dataset = open_dataset(self.data)
        if sequence not in self._dataset.names:
            raise UserInputError(self.data, f"no sequence {sequence!r} in the run's dataset")
        media = MediaAccess(self._dataset.open(sequence), self.cache_dir)
        media.attach_caches()
        self._open[sequence] = media
        while len(self._open) > OPEN_SEQUENCES:
            self._open.popitem(last=False)[1].close()
        return media

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()
