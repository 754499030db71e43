"""One row of the limited-supervision bench, alone: a variant (or the all-labels ceiling) trained
with a preset's settings plus overrides, on a dataset the bench rendered; prints one JSON line
with the bench's pose figures (test MPJPE / N-MPJPE / P-MPJPE, median orientation error, P-MPJPE
on the labelled training frames), same-instant and kappa-0.05 Hit@1, and the pose-loss curve.

    .venv/bin/python benchmarks/fit_variant.py DATA [--variant baseline|baseline_bn|mcss|
        mcss_random|ceiling] [--preset standard] [--seed 0] [--threads 1] [--cache DIR]
        [--diagnose] [--set KEY=VALUE ...]

--diagnose adds `mirror`: test P-MPJPE on the frames whose predicted orientation is within 45
degrees and more than 90 degrees off, and the mirror-tolerant P-MPJPE (each frame scored by
the better of the pose and its left/right mirror), beside the constant pose's, to tell
articulation that is not learnt from articulation hidden by front/back confusion.

For trying a change of recipe on one row before running the whole bench (`mcss-train bench
limited-supervision`); the ceiling labels every frame of every train subject (the bench's
ORACLE_CHANGES). DATA e.g. W/data-standard-0 after `mcss-train bench limited-supervision
--preset standard --work-dir W`; --cache defaults to DATA/../cache. Threads are pinned, so a
seed gives the same line twice on one machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mcss_studio.core.model import canonical_frame
from mcss_studio.core.runlog import EventWriter
from trainer.bench import (
    ORACLE_CHANGES,
    PRESETS,
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    VARIANTS,
    training_fit,
)
from trainer.config import TrainConfig, parse_overrides
from trainer.data import flip_pose, labels_from_ground_truth
from trainer.evaluate import predict_sequences
from trainer.metrics import per_sample_p_mpjpe, rotation_error_deg
from trainer.sources import load_sequences
from trainer.train import fit


def mirror_diagnosis(model, test, train, labels, stride: int) -> dict:
    """Is articulation learnt but hidden by front/back (left/right) confusion? Test P-MPJPE
    on frames whose orientation is within 45 degrees and on those more than 90 off, and the
    mirror-tolerant P-MPJPE (each frame scored by the better of the pose and its left/right
    mirror), each beside the constant pose's (the labelled frames' mean canonical pose)."""
    pred = predict_sequences(model, test, stride)
    r_gt, _ = canonical_frame(pred.gt)
    err = rotation_error_deg(pred.rotation, r_gt)
    lab = [np.asarray(s.pose_cam(lab.joints3d[None], np.zeros(1, int)))[0]
           for lab in labels for s in train if s.name == lab.sequence]
    mean = canonical_frame(np.stack(lab))[1].mean(0)
    constant = np.repeat(mean[None], len(pred.gt), 0)
    out = {}
    for name, poses in (("model", pred.pose_cam), ("constant", constant)):
        p = per_sample_p_mpjpe(poses, pred.gt)
        mirrored = per_sample_p_mpjpe(flip_pose(poses), pred.gt)
        out[name] = {"p_rot<=45": round(float(p[err <= 45].mean()), 1),
                     "p_rot>90": round(float(p[err > 90].mean()), 1),
                     "p_mirror_tolerant": round(float(np.minimum(p, mirrored).mean()), 1)}
    out["share_rot>90"] = round(float((err > 90).mean()), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--variant", default="baseline", choices=[*VARIANTS, "ceiling"])
    parser.add_argument("--preset", default="standard", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default="")
    parser.add_argument("--diagnose", action="store_true",
                        help="also print mirror_diagnosis (front/back confusion)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    cache = Path(args.cache) if args.cache else data.parent / "cache"
    spec = PRESETS[args.preset]
    ceiling = args.variant == "ceiling"
    changes = ({**ORACLE_CHANGES, "steps": spec["config"]["steps"]
                * spec.get("oracle_step_factor", 1)} if ceiling else VARIANTS[args.variant])
    settings = {**spec["config"], **changes, "log_every": 100,
                **parse_overrides(args.overrides)}
    with tempfile.TemporaryDirectory(prefix="fit-variant-") as runs:
        config = TrainConfig(**settings, seed=args.seed, device="cpu", data=str(data),
                             run_dir=runs, run_id=args.variant)
        train = load_sequences(data, TRAIN_SUBJECTS, cache, config.crop_size, config.crop_margin)
        test = load_sequences(data, TEST_SUBJECTS, cache, config.crop_size, config.crop_margin)
        labels = labels_from_ground_truth(train, TRAIN_SUBJECTS if ceiling else ["S1"],
                                          config.label_every)
        start = time.perf_counter()
        events = EventWriter(Path(runs) / "events.jsonl")
        try:
            result = fit(config, events, sequences=train, labels=labels, test_sequences=test,
                         progress=False)
        finally:
            events.close()
        m = result.metrics
        figures = {k: round(m[k], 1) for k in ("mpjpe", "n_mpjpe", "p_mpjpe", "rot_err_deg")}
        figures["train_p_mpjpe"] = round(training_fit(result.model, train, labels), 1)
        for key in ("strict_hit@1", "hit@1_kappa0.05"):
            figures[key] = f"{m[key]:.3f} (chance {m['chance_' + key]:.3f})"
        if args.diagnose:
            figures["mirror"] = mirror_diagnosis(result.model, test, train, labels,
                                                 config.eval_stride)
    print(json.dumps({"variant": args.variant, "set": args.overrides, "steps": config.steps,
                      "labelled_frames": len(labels), **figures,
                      "seconds": round(time.perf_counter() - start),
                      "pose_loss": [(h["step"], round(h["pose_loss"], 3))
                                    for h in result.history][::3]}))


if __name__ == "__main__":
    main()
