"""What every per-camera frame reader offers (video file or image folder)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def natural_key(name: str) -> list[object]:
    """Sort key that compares digit runs as numbers: img2 < img10."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


class FrameSource(Protocol):
    """Frame-exact access to one camera's frames, native indices 0..frame_count-1.

    `read(i)` returns exactly the pixels that `iter_frames()` yields for frame i: RGB uint8 HxWx3.
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int

    def read(self, index: int) -> np.ndarray: ...

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...
