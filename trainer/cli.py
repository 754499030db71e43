"""`mcss-train`: fit, evaluate, embed, bench. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from mcss_studio.core.errors import UserInputError

from .config import add_config_flags, config_from_args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcss-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train a model (TOML config; every field also a --flag)")
    fit.add_argument("--config", help="TOML file with the training settings")
    fit.add_argument("--events", help="JSON-lines event stream (default runs/<id>/events.jsonl)")
    fit.add_argument("--progress", choices=("auto", "on", "off"), default="auto")
    add_config_flags(fit)

    ev = sub.add_parser("evaluate", help="pose metrics and cross-view retrieval of a checkpoint")
    ev.add_argument("checkpoint")
    ev.add_argument("data", help="dataset folder")
    _data_flags(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object")

    em = sub.add_parser("embed", help="embeddings and 3D predictions of every crop, to an .npz")
    em.add_argument("checkpoint")
    em.add_argument("data", help="dataset folder")
    em.add_argument("out", help="output .npz")
    _data_flags(em, default_stride=1)

    bench = sub.add_parser("bench", help="benchmark protocols")
    bench_sub = bench.add_subparsers(dest="protocol", required=True)
    ls = bench_sub.add_parser("limited-supervision",
                              help="baseline vs MCSS vs MCSS-random on the synthetic benchmark")
    ls.add_argument("--preset", choices=("quick", "standard", "full"), default="quick")
    ls.add_argument("--seed", type=int, default=0)
    ls.add_argument("--json", dest="json_out", help="write the results here too")
    ls.add_argument("--work-dir", help="dataset, caches and runs (default: a temporary folder)")
    ls.add_argument("--device", default="auto")
    ls.add_argument("--threads", type=int, default=2, help="torch threads, pinned for the whole "
                    "bench so a seed gives the same table twice (default 2)")
    ls.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="change a preset setting for every variant, e.g. a GPU-sized model: "
                    "--set crop_size=128 --set width=64 --set steps=6000 (repeatable)")
    sm = bench_sub.add_parser("summarize", help="one table with the mean of several seeds' "
                              "--json results")
    sm.add_argument("results", nargs="+", help="JSON files written by --json")
    return parser


def _data_flags(p: argparse.ArgumentParser, default_stride: int = 5) -> None:
    p.add_argument("--subjects", default="", help="comma-separated (default: the test split)")
    p.add_argument("--cache-dir", default="", help="crop caches (default <data>/cache)")
    p.add_argument("--stride", type=int, default=default_stride, help="every n-th frame")
    p.add_argument("--device", default="auto")


def _checkpoint_data(args: argparse.Namespace, split: str | None):
    from mcss_studio.core.inference import Predictor

    from .sources import load_sequences, resolve_subjects

    predictor = Predictor(args.checkpoint, device=args.device)
    crop = int(predictor.meta.get("crop_size") or 128)
    margin = float((predictor.meta.get("train_config") or {}).get("crop_margin", 0.2))
    given = [s for s in args.subjects.split(",") if s]
    subjects = resolve_subjects(args.data, given, split) if split else (given or None)
    sequences = load_sequences(args.data, subjects, args.cache_dir or None, crop, margin)
    if not sequences:
        raise UserInputError(args.data, f"no sequences for subjects {subjects}")
    return predictor, sequences


def cmd_fit(args: argparse.Namespace) -> int:
    from .events import EventWriter
    from .train import _new_run_dir, fit

    config = config_from_args(args)
    run_dir = _new_run_dir(config)
    if not config.run_id:
        config.run_id = run_dir.name
    events = EventWriter(args.events or run_dir / "events.jsonl")
    progress = None if args.progress == "auto" else args.progress == "on"
    try:
        result = fit(config, events, progress=progress)
    finally:
        events.close()
    print(json.dumps({"status": result.status, "step": result.step,
                      "checkpoint": str(result.checkpoint), "metrics": result.metrics}))
    return 0 if result.status == "done" else 3


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    predictor, sequences = _checkpoint_data(args, "test")
    metrics = evaluate(predictor, sequences, stride=max(1, args.stride))
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UserInputError(out, "output must be an .npz file")
    predictor, sequences = _checkpoint_data(args, None)
    names, frames, cams, emb, poses = [], [], [], [], []
    for s in sequences:
        idx = np.arange(0, s.num_frames, max(1, args.stride))
        for c in range(s.num_cameras):
            pred = predictor.predict(np.asarray(s.crops[c][idx]),
                                     rays=s.ray_features(idx, np.full(len(idx), c)))
            names += [s.name] * len(idx)
            frames.append(idx)
            cams += [s.camera_names[c]] * len(idx)
            emb.append(pred["embedding"])
            poses.append(pred["pose_cam"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".npz", dir=out.parent)
    os.close(fd)
    try:
        np.savez(tmp, sequence=np.array(names), frame=np.concatenate(frames),
                 camera=np.array(cams), embedding=np.concatenate(emb),
                 pose_cam=np.concatenate(poses))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"{len(names)} embeddings -> {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import average_results, format_table, limited_supervision, load_results

    if args.protocol == "summarize":
        print(format_table(average_results(load_results(args.results), args.results)))
        return 0
    from .config import TrainConfig, parse_overrides

    overrides = parse_overrides(args.overrides)
    TrainConfig.from_dict(overrides, "--set")  # one-line error before any data is rendered
    result = limited_supervision(args.preset, seed=args.seed, work_dir=args.work_dir,
                                 device=args.device, overrides=overrides,
                                 threads=max(1, args.threads))
    print(format_table(result))
    if result.get("stopped"):
        print("mcss-train: stopped by a signal; the table is partial", file=sys.stderr)
    if args.json_out:
        path = Path(args.json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, path)
    return 130 if result.get("stopped") else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .train import set_threads

    set_threads()
    commands = {"fit": cmd_fit, "evaluate": cmd_evaluate, "embed": cmd_embed, "bench": cmd_bench}
    try:
        return commands[args.command](args)
    except UserInputError as exc:
        print(f"mcss-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
