"""Random-frame access for the multiview player: proxies vs frame-exact seeking vs OpenCV seeking.

Generates a multi-camera H.264 recording with a long GOP (like real cameras), builds display
proxies, then reads all views of random frames three ways in this one process:

- proxies        ProxyStore.read (memory-mapped JPEG, longest side --max-side)
- VideoReader    frame-exact PyAV seeking (core/video.py), full resolution
- OpenCV         cv2.VideoCapture + CAP_PROP_POS_FRAMES, full resolution

and checks every returned frame against each decoder's own sequential decode (by hash) to report
whether it was the right frame. Prints latency per random frame (all views): median, p95, worst,
and the ratios.

    .venv/bin/python benchmarks/bench_frame_access.py --frames 300 --gop 250
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcss_studio.core.proxies import ProxyStore, build_proxies  # noqa: E402
from mcss_studio.core.sequence import CameraView, MultiviewSequence  # noqa: E402
from mcss_studio.core.video import VideoReader  # noqa: E402
from mcss_studio.core.video_writer import VideoWriter  # noqa: E402


def camera_frames(cam: int, count: int, width: int, height: int):
    """Smooth moving background, a moving 'person' box and a frame-number bar (cheap to make)."""
    rng = np.random.default_rng(cam)
    blobs = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    background = cv2.resize(blobs, (width + 64, height), interpolation=cv2.INTER_CUBIC)
    texture = rng.integers(0, 24, (height, width, 1), dtype=np.uint8)
    bw, bh = width // 8, height // 3
    for t in range(count):
        shift = (2 * t) % 64
        img = background[:, shift : shift + width] // 2 + texture
        x0 = int((width - bw) * (0.5 + 0.4 * np.sin(t / 25 + cam)))
        y0 = int((height - bh) * (0.5 + 0.3 * np.cos(t / 40)))
        img[y0 : y0 + bh, x0 : x0 + bw] = (200, 80 + cam * 30, 60)
        img[:8, :] = (t * 37) % 256
        yield img


def make_recording(
    folder: Path, cameras: int, frames: int, w: int, h: int, gop: int, container: str
) -> list:
    paths = []
    for c in range(cameras):
        path = folder / f"cam{c}.{container}"
        if not path.exists():
            with VideoWriter(path, 30.0, w, h, codec="h264", gop=gop, bframes=2, quality=23) as vw:
                for img in camera_frames(c, frames, w, h):
                    vw.write(img)
        paths.append(path)
    return paths


def digest(img: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest()


def sequential_hashes_pyav(path: Path) -> list[bytes]:
    with VideoReader(path) as r:
        return [digest(f) for f in r.iter_frames()]


def sequential_hashes_cv2(path: Path) -> list[bytes]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(digest(img))
    cap.release()
    return out


def stats(ms: list[float]) -> tuple[float, float, float]:
    a = np.asarray(ms)
    return float(np.median(a)), float(np.percentile(a, 95)), float(a.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--gop", type=int, default=250)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--samples", type=int, default=30, help="random frames to read")
    ap.add_argument("--max-side", type=int, default=480)
    ap.add_argument("--container", choices=["mp4", "mkv", "mov"], default="mp4")
    ap.add_argument("--out", type=Path, default=None, help="keep the recording here (reused)")
    args = ap.parse_args()

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_frame_access_")
        root = Path(tmp.name)
    else:
        root = args.out
    rec = root / f"recording_{args.container}"
    rec.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    paths = make_recording(
        rec, args.cameras, args.frames, args.width, args.height, args.gop, args.container
    )
    print(f"recording: {args.cameras} x {args.frames} frames {args.width}x{args.height} "
          f"H.264 in {args.container}, gop {args.gop} bframes 2 ({time.perf_counter() - t0:.1f} s)")

    readers = [VideoReader(p) for p in paths]
    views = [CameraView(f"cam{c}", r) for c, r in enumerate(readers)]
    seq = MultiviewSequence(rec, "bench", views, num_frames=min(r.frame_count for r in readers),
                            fps=30.0)
    t0 = time.perf_counter()
    build_proxies(seq, root / "cache", max_side=args.max_side)
    build_s = time.perf_counter() - t0
    print(f"proxies built in {build_s:.1f} s "
          f"({build_s / (seq.num_frames * args.cameras) * 1000:.1f} ms per frame)")
    store = ProxyStore(root / "cache", seq)

    t0 = time.perf_counter()
    ref_av = [sequential_hashes_pyav(p) for p in paths]
    ref_cv = [sequential_hashes_cv2(p) for p in paths]
    header = [int(cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT)) for p in paths]
    print(f"reference sequential decodes ({time.perf_counter() - t0:.1f} s); frame counts: "
          f"VideoReader {[r.frame_count for r in readers]}, "
          f"OpenCV sequential {[len(h) for h in ref_cv]}, OpenCV header {header}")

    rng = np.random.default_rng(0)
    order = [int(t) for t in rng.integers(0, seq.num_frames, args.samples)]
    caps = [cv2.VideoCapture(str(p), cv2.CAP_FFMPEG) for p in paths]
    for r in readers:  # start from a fresh state
        r.read(0)

    times: dict[str, list[float]] = {"proxies": [], "VideoReader": [], "OpenCV": []}
    wrong = {"VideoReader": 0, "OpenCV": 0}
    offsets: list[int] = []
    cv_index = [{h: i for i, h in enumerate(hs)} for hs in ref_cv]
    for t in order:
        s = time.perf_counter()
        for c in range(args.cameras):
            store.read(c, t)
        times["proxies"].append((time.perf_counter() - s) * 1000)

        s = time.perf_counter()
        got = [r.read(t) for r in readers]
        times["VideoReader"].append((time.perf_counter() - s) * 1000)
        wrong["VideoReader"] += sum(digest(g) != ref_av[c][t] for c, g in enumerate(got))

        s = time.perf_counter()
        got = []
        for cap in caps:
            cap.set(cv2.CAP_PROP_POS_FRAMES, t)
            ok, img = cap.read()
            got.append(img if ok else None)
        times["OpenCV"].append((time.perf_counter() - s) * 1000)
        for c, g in enumerate(got):
            if g is None or digest(g) != ref_cv[c][t]:
                wrong["OpenCV"] += 1
                if g is not None and digest(g) in cv_index[c]:
                    offsets.append(cv_index[c][digest(g)] - t)

    n_views = len(order) * args.cameras
    print(f"\nrandom access, {len(order)} random frames x {args.cameras} views "
          f"(latency for all views of one frame, ms)")
    print(f"{'method':<14}{'median':>10}{'p95':>10}{'worst':>10}   wrong frames")
    for name, ms in times.items():
        med, p95, worst = stats(ms)
        w = "-" if name == "proxies" else f"{wrong[name]}/{n_views}"
        print(f"{name:<14}{med:>10.1f}{p95:>10.1f}{worst:>10.1f}   {w}")
    if offsets:
        print(f"OpenCV wrong-frame offsets seen (returned - wanted): {sorted(set(offsets))}")
    p_med = stats(times["proxies"])[0]
    v_med = stats(times["VideoReader"])[0]
    o_med = stats(times["OpenCV"])[0]
    print(f"\nratios of medians: VideoReader/proxies {v_med / p_med:.1f}x, "
          f"OpenCV/proxies {o_med / p_med:.1f}x, OpenCV/VideoReader {o_med / v_med:.2f}x")

    # forward scrubbing: the next frame after a random one (playback / arrow key)
    start = seq.num_frames // 3
    for r in readers:
        r.read(start)
    step = {"proxies": [], "VideoReader": []}
    for t in range(start + 1, min(start + 31, seq.num_frames)):
        s = time.perf_counter()
        for c in range(args.cameras):
            store.read(c, t)
        step["proxies"].append((time.perf_counter() - s) * 1000)
        s = time.perf_counter()
        for r in readers:
            r.read(t)
        step["VideoReader"].append((time.perf_counter() - s) * 1000)
    seeks = sum(r.seek_count for r in readers)
    print(f"next-frame step (all views, ms median): proxies {stats(step['proxies'])[0]:.1f}, "
          f"VideoReader {stats(step['VideoReader'])[0]:.1f} (total seeks so far {seeks})")

    for cap in caps:
        cap.release()
    seq.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
