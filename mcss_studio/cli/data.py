"""`mcss-data`: inspect recordings and datasets, build crop caches and proxies, synthesise data,
manage a project's label store (`labels`, in cli/labels.py) and compute the pose detector's
keypoints (`keypoints`, in cli/keypoints.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..core.boxes import BOX_METHODS
from ..core.errors import UserInputError
from .common import progress_bar, run_cli
from .keypoints import add_parser as add_keypoints_parser
from .labels import add_parser as add_labels_parser

PROG = "mcss-data"


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserInputError(
            None, f"--size {text!r}: expected WIDTHxHEIGHT (e.g. 320x240)"
        ) from None
    return w, h


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..core import open_dataset

    ds = open_dataset(args.path)
    name = args.sequence or ds.sequences[0].name
    with ds.open(name) as seq:
        doc = seq.describe()
        if len(ds.sequences) > 1 or args.sequence:
            doc["sequence"] = seq.name
            doc["sequences"] = ds.names
        for w in seq.warnings:
            print(f"{PROG}: warning: {seq.path}: {w}", file=sys.stderr)
        if args.json:
            print(json.dumps(doc, indent=2))
            return 0
        print(f"{ds.kind} {ds.root}")
        if len(ds.sequences) > 1:
            print(f"  {len(ds.sequences)} sequences, subjects: {', '.join(ds.subjects) or '-'}")
            for split, subjects in ds.splits.items():
                print(f"  split {split}: {', '.join(subjects)}")
            print(f"  showing sequence {seq.name}")
        print(
            f"  {doc['frames']} synchronised frames at {seq.fps:g} fps, "
            f"3D joints: {'yes' if seq.has_3d else 'no'}, "
            f"calibrated: {'yes' if seq.is_calibrated else 'no'}, "
            f"boxes file: {'yes' if seq.boxes is not None else 'no'}"
        )
        for cam in doc["cameras"]:
            print(
                f"  camera {cam['name']}: {cam['width']}x{cam['height']} @ {cam['fps']:g} fps, "
                f"{cam['frames']} frames, offset {cam['offset']}"
                + ("" if cam["K"] is None else ", calibrated")
            )
    return 0


@contextmanager
def _cache_hint(cache_flag: str | None) -> Iterator[None]:
    """A cache that cannot be written inside the recording: say how to put it elsewhere."""
    try:
        yield
    except UserInputError as exc:
        if cache_flag or not exc.problem.startswith("cannot write"):
            raise
        raise UserInputError(exc.source, f"{exc.problem}, or keep the cache elsewhere with "
                             "--cache DIR") from None


def cmd_cache(args: argparse.Namespace) -> int:
    from ..core import open_dataset
    from ..core.cache import build_cache

    ds = open_dataset(args.path)
    entries = [ds.entry(args.sequence)] if args.sequence else ds.sequences
    cache_dir = Path(args.cache) if args.cache else Path(args.path) / "cache"
    for entry in entries:
        with entry.open() as seq:
            for w in seq.warnings:
                print(f"{PROG}: warning: {seq.path}: {w}", file=sys.stderr)
            with progress_bar(f"cache {seq.name}") as progress, _cache_hint(args.cache):
                cache = build_cache(
                    seq,
                    cache_dir,
                    crop_size=args.crop_size,
                    margin=args.margin,
                    proxies=not args.no_proxies,
                    proxy_max_side=args.proxy_size,
                    progress=progress,
                )
            print(
                f"{seq.name}: {len(cache.camera_names)} cameras x {cache.num_frames} frames, "
                f"{cache.crop_size}px crops in {cache_dir}"
            )
    return 0


def cmd_boxes(args: argparse.Namespace) -> int:
    from ..core import open_dataset
    from ..core.boxes import save_boxes_npz
    from ..core.subject_boxes import boxes_and_doubts

    ds = open_dataset(args.path)
    entries = [ds.entry(args.sequence)] if args.sequence else ds.sequences
    report = []
    for entry in entries:
        with entry.open() as seq:
            for w in seq.warnings:
                print(f"{PROG}: warning: {seq.path}: {w}", file=sys.stderr)
            with progress_bar(f"boxes {seq.name}") as progress:
                result, used = boxes_and_doubts(seq, args.method, progress, args.cache)
            target = Path(seq.path) / "boxes.npz"
            if args.write:
                save_boxes_npz(target, result.boxes, seq.camera_names, result.uncertain)
            found = np.isfinite(result.boxes).all(axis=2)
            report.append({
                "sequence": seq.name, "method": used, "frames": seq.num_frames,
                "written": str(target) if args.write else None,
                "cameras": [{"name": n, "frames_with_box": int(found[c].sum()),
                             "uncertain": int(result.uncertain[c].sum()),
                             "uncertain_frames": np.flatnonzero(result.uncertain[c]).tolist()}
                            for c, n in enumerate(seq.camera_names)],
            })
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for doc in report:
        print(f"{doc['sequence']}: method {doc['method']}, {doc['frames']} frames"
              + (f", written to {doc['written']}" if doc["written"] else " (not written; --write)"))
        for cam in doc["cameras"]:
            print(f"  camera {cam['name']}: {cam['frames_with_box']} frames with a box, "
                  f"{cam['uncertain']} uncertain")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from ..core.synth import generate

    size = _parse_size(args.size) if args.size else None
    with progress_bar(f"synth {args.preset}", unit="image") as progress:
        out = generate(
            Path(args.out),
            preset=args.preset,
            seed=args.seed,
            cameras=args.cameras,
            fps=args.fps,
            size=size,
            progress=progress,
            workers=args.workers,
        )
    print(f"wrote {out}")
    return 0


def cmd_motion_stats(args: argparse.Namespace) -> int:
    from ..core.synth.stats import format_statistics, motion_statistics

    if not 1 <= args.tau <= args.tau_max:
        raise UserInputError("--tau", f"need 1 <= tau <= tau-max, got {args.tau}, {args.tau_max}")
    stats = motion_statistics(args.preset, args.seed, args.tau, args.tau_max, args.kappa)
    print(f"preset {args.preset}, seed {args.seed}")
    print(format_statistics(stats, args.tau, args.tau_max, args.kappa))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="describe a recording or dataset")
    p.add_argument("path")
    p.add_argument("--sequence", help="sequence name inside a dataset (default: the first)")
    p.add_argument("--json", action="store_true", help="print the machine-readable description")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("cache", help="build person crops and display proxies")
    p.add_argument("path")
    p.add_argument("--sequence", help="only this sequence of a dataset")
    p.add_argument("--cache", help="cache folder (default: PATH/cache)")
    p.add_argument("--crop-size", type=int, default=128)
    p.add_argument("--margin", type=float, default=0.2)
    p.add_argument("--proxy-size", type=int, default=480, help="longest side of display proxies")
    p.add_argument("--no-proxies", action="store_true")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("boxes", help="compute subject boxes, report them per camera and "
                       "(--write) save them as the recording's boxes.npz")
    p.add_argument("path")
    p.add_argument("--sequence", help="only this sequence of a dataset")
    p.add_argument("--method", default="auto", choices=BOX_METHODS,
                   help="auto: gt > file > rig (calibrated) > tracked (default auto)")
    p.add_argument("--cache", help="detector keypoint cache folder (default: PATH/cache)")
    p.add_argument("--write", action="store_true", help="replace the recording's boxes.npz")
    p.add_argument("--json", action="store_true", help="print the machine-readable report")
    p.set_defaults(func=cmd_boxes)

    p = sub.add_parser("synth", help="render a synthetic multi-view dataset with 3D ground truth")
    p.add_argument("out")
    p.add_argument("--preset", default="tiny", help="tiny, demo, benchmark or standard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cameras", type=int)
    p.add_argument("--fps", type=float)
    p.add_argument("--size", help="WIDTHxHEIGHT, both even")
    p.add_argument(
        "--workers", type=int, default=0, help="render processes (0: one per core, at most 4)"
    )
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("motion-stats", help="per action of a synth preset: how often frames "
                       "tau..tau-max apart show the same pose, and the headings a take faces")
    p.add_argument("--preset", default="standard", help="tiny, demo, benchmark or standard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tau", type=int, default=10, help="smallest frame distance (default 10)")
    p.add_argument("--tau-max", type=int, default=20, help="largest frame distance (default 20)")
    p.add_argument("--kappa", type=float, default=0.1,
                   help="same pose within this unit-scale Procrustes distance (default 0.1)")
    p.set_defaults(func=cmd_motion_stats)
    add_labels_parser(sub)
    add_keypoints_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: args.func(args), PROG)


if __name__ == "__main__":
    sys.exit(main())
