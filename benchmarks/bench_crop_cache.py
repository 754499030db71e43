"""Crop-cache build rate vs plain sequential decode of the same videos, side by side.

Generates a multi-camera 1080p H.264 recording in a temporary folder (a moving "person" on a
textured static background), then times, in this one process and alternating:

- decode: every frame of every camera through FrameSource.iter_frames (RGB), nothing else;
- build:  build_cache (crops + display proxies; --no-proxies: crops only) into a fresh folder.

Prints frames/s of each and the ratio build/decode (target >= 0.7). Best of --repeats runs.

    .venv/bin/python benchmarks/bench_crop_cache.py [--frames 240] [--cameras 4] [--no-proxies]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mcss_studio.core.cache import build_cache
from mcss_studio.core.sequence import CameraView, MultiviewSequence
from mcss_studio.core.video import open_frame_source
from mcss_studio.core.video_writer import VideoWriter


def make_recording(folder: Path, cameras: int, frames: int, width: int, height: int) -> np.ndarray:
    """Write cam<i>.mp4 files; return the true person boxes (C, T, 4)."""
    rng = np.random.default_rng(0)
    boxes = np.zeros((cameras, frames, 4))
    for c in range(cameras):
        small = rng.integers(0, 255, size=(height // 16, width // 16, 3), dtype=np.uint8)
        background = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        bw, bh = width // 8, height // 2
        with VideoWriter(folder / f"cam{c}.mp4", 25.0, width, height, codec="h264") as w:
            for t in range(frames):
                frame = background.copy()
                x0 = int((width - bw) * (0.5 + 0.45 * np.sin(t / 20 + c)))
                y0 = height // 4 + int(20 * np.sin(t / 7))
                cv2.rectangle(frame, (x0, y0), (x0 + bw, y0 + bh), (200, 60, 40), -1)
                cv2.circle(frame, (x0 + bw // 2, y0 - bw // 3), bw // 3, (230, 190, 160), -1)
                boxes[c, t] = (x0, y0 - 2 * bw // 3, x0 + bw, y0 + bh)
                w.write(frame)
    return boxes


def open_recording(folder: Path, cameras: int) -> MultiviewSequence:
    views = [
        CameraView(name=f"cam{c}", source=open_frame_source(folder / f"cam{c}.mp4"))
        for c in range(cameras)
    ]
    T = min(v.frames for v in views)
    return MultiviewSequence(path=folder, name="bench", cameras=views, num_frames=T, fps=25.0)


def time_decode(seq: MultiviewSequence) -> float:
    start = time.perf_counter()
    n = 0
    for c in range(len(seq.cameras)):
        for _ in seq.iter_frames(c):
            n += 1
    assert n == len(seq.cameras) * seq.num_frames
    return time.perf_counter() - start


def time_build(seq: MultiviewSequence, cache_dir: Path, boxes: np.ndarray, proxies: bool,
               workers: int | None) -> float:
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    build_cache(seq, cache_dir, crop_size=128, margin=0.2, boxes=boxes, proxies=proxies,
                workers=workers)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="camera threads (default: auto)")
    ap.add_argument("--no-proxies", action="store_true", help="time the crops alone")
    args = ap.parse_args()
    proxies = not args.no_proxies
    with tempfile.TemporaryDirectory(prefix="bench_crop_cache_") as tmp:
        folder = Path(tmp) / "rec"
        folder.mkdir()
        t0 = time.perf_counter()
        boxes = make_recording(folder, args.cameras, args.frames, args.width, args.height)
        print(f"generated {args.cameras} x {args.frames} frames {args.width}x{args.height} H.264 "
              f"in {time.perf_counter() - t0:.1f} s")
        total = args.cameras * args.frames
        decode_s, build_s = [], []
        for _ in range(args.repeats):
            with open_recording(folder, args.cameras) as seq:
                decode_s.append(time_decode(seq))
            with open_recording(folder, args.cameras) as seq:
                build_s.append(time_build(seq, Path(tmp) / "cache", boxes, proxies, args.workers))
        dec, bld = total / min(decode_s), total / min(build_s)
        what = "crops + proxies" if proxies else "crops only"
        print(f"plain sequential decode : {dec:7.1f} frames/s  (runs: "
              f"{', '.join(f'{s:.2f}s' for s in decode_s)})")
        print(f"build_cache ({what}): {bld:7.1f} frames/s  (runs: "
              f"{', '.join(f'{s:.2f}s' for s in build_s)})")
        print(f"ratio build/decode      : {bld / dec:.2f}  (target >= 0.70)")


if __name__ == "__main__":
    main()
