"""Dataset folder -> SequenceData list: opens sequences, builds or opens crop caches, splits."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mcss_studio.core import open_dataset
from mcss_studio.core.cache import build_cache
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.model import crop_keypoints, crop_rays

from .data import SequenceData


def default_cache_dir(data: str | os.PathLike[str]) -> Path:
    return Path(data) / "cache"


def load_sequences(
    data: str | os.PathLike[str],
    subjects: Sequence[str] | None,
    cache_dir: str | os.PathLike[str] | None = None,
    crop_size: int = 128,
    margin: float = 0.2,
    progress: Callable[[str], None] | None = None,
) -> list[SequenceData]:
    """Sequences of `subjects` (None = all) with crop caches (built on first use)."""
    dataset = open_dataset(data)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(data)
    entries = dataset.sequences if subjects is None else dataset.for_subjects(list(subjects))
    out = []
    for entry in entries:
        seq = entry.open()
        try:
            if progress is not None:
                progress(f"crop cache {entry.name}")
            cache = build_cache(seq, cache_dir, crop_size=crop_size, margin=margin, proxies=False)
            rotations = translations = rays = keypoints = None
            if seq.is_calibrated:
                rotations = np.stack([c.calibration.R for c in seq.cameras])
                translations = np.stack([c.calibration.t for c in seq.cameras])
                rays = [crop_rays(cache.boxes[i], cam.calibration.K, cam.calibration.dist)
                        for i, cam in enumerate(seq.cameras)]
                if seq.joints3d is not None:
                    keypoints = [crop_keypoints(seq.joints3d, cache.boxes[i], cam.calibration)
                                 for i, cam in enumerate(seq.cameras)]
            out.append(SequenceData(
                name=entry.name, subject=str(seq.subject or entry.subject or ""),
                crops=[cache.crops(c) for c in range(len(cache.camera_names))],
                camera_names=list(cache.camera_names), rotations=rotations,
                translations=translations, joints3d=seq.joints3d, rays=rays,
                keypoints2d=keypoints,
            ))
        finally:
            seq.close()
    return out


def dataset_splits(data: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The dataset's subject splits (train / test / labelled / ...), possibly empty."""
    return dict(open_dataset(data).splits)


def resolve_subjects(
    data: str | os.PathLike[str], given: Sequence[str], split: str, required: bool = True
) -> list[str]:
    """`given` subjects, or the dataset's `split` when none are given."""
    if given:
        return list(given)
    splits = dataset_splits(data)
    if split in splits:
        return list(splits[split])
    if required:
        raise UserInputError(data, f"no '{split}' split in the dataset; name the subjects")
    return []
