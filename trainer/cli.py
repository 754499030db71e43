"""`mcss-train`: fit, evaluate, embed, neighbours, bench. User errors print one line and exit
2, Ctrl+C exits 130 (mcss_studio.cli.common.run_cli); every output file is written atomically."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mcss_studio.cli.common import EXIT_INTERRUPTED, run_cli
from mcss_studio.core.atomic import atomic_open, make_dirs, writable_folder
from mcss_studio.core.errors import UserInputError

from .config import add_config_flags, config_from_args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcss-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train a model (TOML config; every field also a --flag)")
    fit.add_argument("--config", help="TOML file with the training settings")
    fit.add_argument("--events", help="JSON-lines event stream (default runs/<id>/events.jsonl)")
    fit.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                     help="progress line on stderr: auto = when stderr is a terminal")
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

    nb = sub.add_parser("neighbours", help="nearest crops of one crop in the embedding index "
                        "(the Studio's gallery query; the index is cached by checkpoint)")
    nb.add_argument("checkpoint")
    nb.add_argument("data", help="dataset folder")
    nb.add_argument("--camera", required=True, help="camera name or index of the query")
    nb.add_argument("--frame", type=int, required=True)
    nb.add_argument("--sequence", help="sequence of the query (default: the first)")
    nb.add_argument("-k", type=int, default=10)
    nb.add_argument("--same-camera", action="store_true", help="also the query's own camera")
    nb.add_argument("--min-dt", type=int, default=0,
                    help="exclude frames of the same sequence with |dt| below this")
    nb.add_argument("--sequences", choices=("any", "same", "other"), default="any")
    nb.add_argument("--subjects", choices=("any", "same", "other"), default="any")
    nb.add_argument("--least-similar", action="store_true")
    nb.add_argument("--cache-dir", default="", help="crop caches and index (default "
                    "<data>/cache)")
    nb.add_argument("--device", default="auto")
    nb.add_argument("--json", action="store_true", help="print one JSON object")

    bench = sub.add_parser("bench", help="benchmark protocols")
    bench_sub = bench.add_subparsers(dest="protocol", required=True)
    ls = bench_sub.add_parser("limited-supervision",
                              help="baseline vs MCSS vs MCSS-random on the synthetic benchmark")
    ls.add_argument("--preset", choices=("quick", "standard", "full"), default="quick")
    ls.add_argument("--seed", type=int, default=0)
    ls.add_argument("--json", dest="json_out", help="write the results here too")
    ls.add_argument("--work-dir", help="dataset, caches and runs (default: a temporary folder); "
                    "a rerun of a preset and seed there replaces its run folders")
    ls.add_argument("--device", default="auto")
    ls.add_argument("--data", help="an existing dataset to use instead of rendering the preset's "
                    "(it needs the benchmark's subjects and splits)")
    ls.add_argument("--labels", help="a label store of --data (Studio labels, or mcss-data "
                    "labels import-gt): its frames replace the preset's label sets")
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
    contract = predictor.contract
    given = [s for s in args.subjects.split(",") if s]
    subjects = resolve_subjects(args.data, given, split) if split else (given or None)
    sequences = load_sequences(args.data, subjects, args.cache_dir or None, contract.crop_size,
                               contract.crop_margin)
    if not sequences:
        raise UserInputError(args.data, f"no sequences for subjects {subjects}")
    return predictor, sequences


def cmd_fit(args: argparse.Namespace) -> int:
    from mcss_studio.core.runlog import EventWriter

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
            if key.startswith("chance_"):
                continue  # printed beside its figure
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            chance = metrics.get(f"chance_{key}")
            print(f"{key:>22}: {text}" + (f"  (chance {chance:.4f})" if chance is not None
                                             else ""))
    return 0


def cmd_neighbours(args: argparse.Namespace) -> int:
    """The k nearest crops of one crop, as the Studio's gallery finds them."""
    from mcss_studio.core import open_dataset
    from mcss_studio.core.embedding_store import build_index
    from mcss_studio.core.embeddings import NeighbourFilter
    from mcss_studio.core.retrieval import KAPPA

    from .sources import default_cache_dir

    dataset = open_dataset(args.data)
    name = args.sequence or dataset.names[0]
    dataset.entry(name)  # one line naming the sequences when there is no such one
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir(args.data)
    index = build_index(dataset, cache_dir, args.checkpoint, device=args.device)
    info = index.sequences[index.sequence_index(name)]
    camera = (int(args.camera) if args.camera.isdigit()
              else info.cameras.index(args.camera) if args.camera in info.cameras else -1)
    if not 0 <= camera < len(info.cameras) or not 0 <= args.frame < info.frames:
        raise UserInputError(args.data, f"no camera {args.camera!r} frame {args.frame} in {name}"
                             f" (cameras {', '.join(info.cameras)}; frames 0..{info.frames - 1})")
    query = index.row(name, camera, args.frame)
    found = index.query(query, args.k, NeighbourFilter(
        other_cameras=not args.same_camera, min_dt=args.min_dt, sequence=args.sequences,
        subject=args.subjects, least_similar=args.least_similar))
    judged = index.judge(query, found.rows, KAPPA)
    rows = []
    for i, (r, d) in enumerate(zip(found.rows.tolist(), found.distances.tolist())):
        seq, cam, frame = index.key(r)
        rows.append({"rank": i + 1, "sequence": seq, "camera": index.info(r).cameras[cam],
                     "frame": frame, "dt": frame - args.frame if seq == name else None,
                     "distance": d, "correct": judged[i][0] if judged else None,
                     "p_mpjpe_mm": judged[i][1] if judged else None})
    if args.json:
        print(json.dumps({"query": {"sequence": name, "camera": info.cameras[camera],
                                    "frame": args.frame}, "kappa": KAPPA, "neighbours": rows}))
        return 0
    for row in rows:
        gt = "" if row["correct"] is None else (
            f"  {'correct' if row['correct'] else 'wrong':7s} P-MPJPE {row['p_mpjpe_mm']:.1f} mm")
        dt = "" if row["dt"] is None else f" dt {row['dt']:+d}"
        print(f"{row['rank']:3d}  d {row['distance']:.4f}  {row['sequence']} "
              f"{row['camera']} frame {row['frame']}{dt}{gt}")
    return 0


EMBED_CHUNK = 64  # frames per model call: all views of them in one batch


def cmd_embed(args: argparse.Namespace) -> int:
    """Embeddings and camera-frame poses of every (frame, camera) through the prediction
    pipeline, the same path the Studio's live inference takes."""
    from mcss_studio.core import open_dataset
    from mcss_studio.core.cache import build_cache
    from mcss_studio.core.media import MediaAccess
    from mcss_studio.core.pipeline import PosePipeline

    from .sources import default_cache_dir

    out = Path(args.out)
    if out.suffix != ".npz":
        raise UserInputError(out, "output must be an .npz file")
    writable_folder(out.parent)  # before the work, not after it
    pipeline = PosePipeline.load(args.checkpoint, device=args.device)
    contract = pipeline.contract
    dataset = open_dataset(args.data)
    given = [s for s in args.subjects.split(",") if s]
    entries = dataset.for_subjects(given) if given else dataset.sequences
    if not entries:
        raise UserInputError(args.data, f"no sequences for subjects {given}")
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir(args.data)
    names, frames, cams, emb, poses = [], [], [], [], []
    for entry in entries:
        seq = entry.open()
        media = MediaAccess(seq, cache_dir)
        try:
            build_cache(seq, cache_dir, crop_size=contract.crop_size,
                        margin=contract.crop_margin, proxies=False)
            media.attach_caches()
            idx = range(0, seq.num_frames, max(1, args.stride))
            for start in range(0, len(idx), EMBED_CHUNK):
                for pred in pipeline.predict_frames(media, idx[start:start + EMBED_CHUNK]):
                    names += [entry.name] * len(seq.cameras)
                    frames += [pred.frame] * len(seq.cameras)
                    cams += seq.camera_names
                    emb.append(pred.embedding)
                    poses.append(pred.pose_cam.astype(np.float32))
        finally:
            media.close()
    with atomic_open(out, "wb") as fh:
        np.savez(fh, sequence=np.array(names), frame=np.array(frames), camera=np.array(cams),
                 embedding=np.concatenate(emb), pose_cam=np.concatenate(poses))
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
    if args.labels and not args.data:
        raise UserInputError("--labels", "needs --data, the dataset the label store labels")
    result = limited_supervision(args.preset, seed=args.seed, work_dir=args.work_dir,
                                 device=args.device, overrides=overrides,
                                 threads=max(1, args.threads), data=args.data or None,
                                 labels=args.labels or None)
    print(format_table(result))
    if result.get("stopped"):
        print("mcss-train: stopped by a signal; the table is partial", file=sys.stderr)
    if args.json_out:
        path = Path(args.json_out)
        with atomic_open(make_dirs(path.parent) / path.name) as fh:
            fh.write(json.dumps(result, indent=2))
    return EXIT_INTERRUPTED if result.get("stopped") else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .train import set_threads

    set_threads()
    commands = {"fit": cmd_fit, "evaluate": cmd_evaluate, "embed": cmd_embed,
                "neighbours": cmd_neighbours, "bench": cmd_bench}
    return run_cli(lambda: commands[args.command](args), "mcss-train")


if __name__ == "__main__":
    sys.exit(main())
