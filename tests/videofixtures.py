"""Tiny fixture videos and image folders for tests (generated at test time, never stored).

Other tests may import these helpers: `synthetic_frames`, `write_video`, `write_image_folder`,
and `count_container_opens`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mcss_studio.core import video
from mcss_studio.core.video_writer import VideoWriter


def count_container_opens(monkeypatch) -> list:
    """The paths of the video containers VideoReader opens from now on (this test only)."""
    opened, real = [], video.av.open

    def counting(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(video.av, "open", counting)
    return opened


def synthetic_frames(count: int, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """(count, H, W, 3) uint8 frames that all differ visibly: moving texture, moving box, and
    a brightness bar that encodes the frame number (so a wrong frame cannot look right)."""
    rng = np.random.default_rng(seed)
    texture = cv2.resize(
        rng.integers(0, 256, (max(2, height // 4), max(2, width // 4), 3), dtype=np.uint8),
        (width, height),
        interpolation=cv2.INTER_LINEAR,
    )
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    box = max(4, min(width, height) // 4)
    for t in range(count):
        img = np.roll(texture, shift=(t % height, (2 * t) % width), axis=(0, 1)).copy()
        img[..., 2] = ((xx + yy + 3 * t) % 256).astype(np.uint8) // 2 + img[..., 2] // 2
        x0 = (5 * t) % max(1, width - box)
        y0 = (3 * t) % max(1, height - box)
        img[y0 : y0 + box, x0 : x0 + box] = (255 - (7 * t) % 200, (13 * t) % 256, 40)
        img[: max(2, height // 12), :, :] = (t * 37) % 256  # frame-number bar
        frames[t] = img
    return frames


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 30.0,
    codec: str = "h264",
    gop: int | None = None,
    bframes: int | None = None,
    quality: int | None = None,
) -> Path:
    """Encode frames (T, H, W, 3) with VideoWriter; returns the path."""
    path = Path(path)
    t, h, w, _ = frames.shape
    with VideoWriter(path, fps, w, h, codec=codec, gop=gop, bframes=bframes, quality=quality) as vw:
        for f in frames:
            vw.write(f)
    return path


def write_image_folder(
    folder: str | Path, frames: np.ndarray, ext: str = ".png", pattern: str = "img{}"
) -> Path:
    """One image per frame, named pattern.format(i) WITHOUT zero padding (tests natural sort)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext.lower() in (".jpg", ".jpeg") else []
    for i, f in enumerate(frames):
        ok = cv2.imwrite(str(folder / f"{pattern.format(i)}{ext}"), f[..., ::-1], params)
        assert ok, f"could not write fixture image {i}"
    return folder
