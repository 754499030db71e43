"""How much of a crop cache one box correction re-cuts, on a recording whose cache exists.

Usage: python scripts/measure_box_recut.py REC CACHE_DIR [--camera INDEX] [--frame N]
       [--spread N]

Opens REC's complete crop cache in CACHE_DIR (e.g. the Studio's: $MCSS_STUDIO_CACHE/cache),
corrects one box as the Studio does (core/box_edits.py: the box at FRAME of camera INDEX grown
120 px upwards and 40 px down, spread +-N frames; written to REC's box file, so run it on a
copy) and rebuilds the cache with the corrected boxes. Prints the crops re-cut (counted at the
cutting function), the frames decoded, the time, and how many crops kept their bytes; then
the time of cutting every crop anew in a fresh folder, for comparison.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mcss_studio.core import cache as cache_module
from mcss_studio.core import open_dataset
from mcss_studio.core.box_edits import open_box_track
from mcss_studio.core.cache import CropCache, build_cache


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recording", type=Path)
    p.add_argument("cache_dir", type=Path)
    p.add_argument("--camera", type=int, default=1)
    p.add_argument("--frame", type=int, default=60)
    p.add_argument("--spread", type=int, default=10)
    args = p.parse_args(argv)
    dataset = open_dataset(args.recording)
    seq = dataset.open(dataset.names[0])
    old = CropCache.open(args.cache_dir, seq)
    track = open_box_track(seq, old.person_boxes)
    box = track.boxes[args.camera, args.frame] + (0, -120, 0, 40)
    patch = track.correct(args.camera, args.frame, box, spread=args.spread)
    track.apply(patch)
    cuts: list[int] = []
    real = cache_module.crop_square
    cache_module.crop_square = lambda f, s, n: (cuts.append(1), real(f, s, n))[1]
    decoded = [0]
    start = time.perf_counter()
    new = build_cache(seq, args.cache_dir, crop_size=old.crop_size, margin=old.margin,
                      boxes=track.boxes, progress=lambda d, n: decoded.append(n))
    took = time.perf_counter() - start
    C, T = len(seq.cameras), seq.num_frames
    kept = sum(np.array_equal(old.get(c, t), new.get(c, t)) for c in range(C) for t in range(T))
    print(f"{len(patch)} boxes corrected; re-cut {len(cuts)} crops, decoded {decoded[-1]} "
          f"frames in {took:.1f} s; {kept} of {C * T} crops kept their bytes")
    cache_module.crop_square = real
    with tempfile.TemporaryDirectory() as fresh:
        start = time.perf_counter()
        build_cache(seq, fresh, crop_size=old.crop_size, margin=old.margin, boxes=track.boxes,
                    proxies=False)
        print(f"cutting all {C * T} crops anew: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
