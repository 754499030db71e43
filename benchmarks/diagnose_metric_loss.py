"""Does the triplet loss learn pose, or something else? A short run with a bench preset's settings.

Trains one variant of `mcss-train bench limited-supervision` (preset settings, `--set` overrides)
for a few hundred steps on a rendered dataset, then prints, side by side:

- the triplet loss every 50 steps (the margin is where a collapsed embedding sits);
- on un-augmented batches of train and test subjects (the bench's window sampling, eval mode):
  the fraction of (anchor, same-instant other view, in-window negative instant) with the positive
  closer than the negative, over every in-window negative, not only the mined one (0.5 = chance;
  a loss falling below the margin while this stays near 0.5 learned a shortcut, not pose), and
  the mean distances of positives and of negatives seen by the anchor's own camera and by the
  others (an embedding that encodes the viewpoint puts the first below the positives);
- test retrieval (Hit@1 at kappa 0.1 and 0.05, same-instant Hit@1/10) beside its chance level.

    .venv/bin/python benchmarks/diagnose_metric_loss.py DATA [--cache DIR] [--steps 300]
        [--variant mcss] [--threads 2] [--set KEY=VALUE ...] [--checkpoint CKPT]

With --checkpoint, nothing is trained: that model is probed (e.g. a bench run's ceiling). Also
printed: the test P-MPJPE of a constant pose (the labelled frames' mean), the floor a model that
resolves no articulation reaches.

DATA is a dataset the bench rendered (e.g. W/data-standard-0 after `mcss-train bench
limited-supervision --preset standard --work-dir W`); --cache defaults to DATA/../cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mcss_studio.core.checkpoint import load_checkpoint
from mcss_studio.core.model import canonical_frame
from mcss_studio.core.runlog import EventWriter
from trainer.bench import DEFAULT_THREADS, PRESETS, TEST_SUBJECTS, TRAIN_SUBJECTS, VARIANTS
from trainer.config import TrainConfig, parse_overrides
from trainer.data import BatchSampler, SamplerConfig, labels_from_ground_truth, to_float_images
from trainer.metrics import p_mpjpe
from trainer.mining import triplet_masks
from trainer.sources import load_sequences
from trainer.train import fit

PROBE_BATCHES = 6


def ordering(model, sequences, config: TrainConfig) -> dict[str, float]:
    """Fraction of in-window triplets with d(anchor, positive) < d(anchor, negative), and the
    mean distances of positives and of same-camera / other-camera negatives, over
    PROBE_BATCHES un-augmented batches."""
    sampler = BatchSampler(sequences, [], SamplerConfig(
        sequences_per_batch=config.sequences_per_batch,
        instants_per_sequence=config.instants_per_sequence,
        views_per_instant=config.views_per_instant, labelled_batch=0, augment=False,
        instant_sampling="window", tau=config.tau, tau_max=config.tau_max), seed=12345)
    model.eval()
    ordered = total = 0.0
    d_pos, d_same_cam, d_other_cam = [], [], []
    for step in range(PROBE_BATCHES):
        b = sampler.batch(step)
        with torch.no_grad():
            e = model(to_float_images(b.mv_images, torch.device("cpu")), heads=False)["embedding"]
        d = torch.cdist(e, e)
        pos, neg = triplet_masks(b.mv_seq, b.mv_time, b.mv_cam, config.tau, config.tau_max,
                                 other_sequences=False)
        a, p = pos.nonzero(as_tuple=True)
        valid = neg[a]
        ordered += float(((d[a, p][:, None] < d[a]) & valid).sum())
        total += float(valid.sum())
        same_cam = b.mv_cam[:, None] == b.mv_cam[None, :]
        d_pos.append(d[pos].mean())
        d_same_cam.append(d[neg & same_cam].mean())
        d_other_cam.append(d[neg & ~same_cam].mean())
    return {"ordered": ordered / max(total, 1.0), "d_pos": float(torch.stack(d_pos).mean()),
            "d_same_cam": float(torch.stack(d_same_cam).mean()),
            "d_other_cam": float(torch.stack(d_other_cam).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--cache", default="")
    parser.add_argument("--preset", default="standard", choices=sorted(PRESETS))
    parser.add_argument("--variant", default="mcss", choices=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--checkpoint", default="", help="probe this model instead of training")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    cache = Path(args.cache) if args.cache else data.parent / "cache"
    settings = {**PRESETS[args.preset]["config"], **VARIANTS[args.variant], "steps": args.steps,
                "warmup_steps": min(40, args.steps // 5), "eval_stride": 10, "log_every": 50,
                **parse_overrides(args.overrides)}
    run_dir = Path(args.run_dir or data.parent / "diagnose")
    run_id = f"{args.variant}-{args.steps}-{time.strftime('%H%M%S')}"
    config = TrainConfig(**settings, seed=args.seed, device="cpu", data=str(data),
                         run_dir=str(run_dir), run_id=run_id)
    train = load_sequences(data, TRAIN_SUBJECTS, cache, config.crop_size, config.crop_margin)
    test = load_sequences(data, TEST_SUBJECTS, cache, config.crop_size, config.crop_margin)
    labels = labels_from_ground_truth(train, ["S1"], config.label_every)
    print(f"constant mean pose of the labelled frames: test P-MPJPE "
          f"{mean_pose_p_mpjpe(labels, test, config.eval_stride):.1f} mm (a floor to beat)")
    if args.checkpoint:  # probe a trained model instead of training one
        model, _ = load_checkpoint(args.checkpoint)
        print(f"checkpoint {args.checkpoint}")
    else:
        model = train_short(config, args, train, test, labels)
    for name, sequences in (("train", train), ("test", test)):
        o = ordering(model, sequences, config)
        print(f"{name}: positive closer than in-window negative {o['ordered']:.3f} (chance 0.5); "
              f"d positive {o['d_pos']:.3f}, negative same camera {o['d_same_cam']:.3f}, "
              f"other camera {o['d_other_cam']:.3f}")


def train_short(config: TrainConfig, args: argparse.Namespace, train, test, labels):
    """Train per `config`; print the loss trajectory and the test figures; return the model."""
    start = time.perf_counter()
    events = EventWriter(Path(config.run_dir) / config.run_id / "events.jsonl")
    try:
        result = fit(config, events, sequences=train, labels=labels, test_sequences=test,
                     progress=False)
    finally:
        events.close()
    print(f"{args.variant} {args.steps} steps {' '.join(args.overrides)} "
          f"({time.perf_counter() - start:.0f} s, margin {config.margin})")
    print("triplet loss / active: " + "  ".join(
        f"{h['step']}: {h.get('metric_loss', 0.0):.3f}/{h.get('active_triplets', 0.0):.2f}"
        for h in result.history))
    m = result.metrics
    print(f"test N-MPJPE {m['n_mpjpe']:.1f} mm, P-MPJPE {m['p_mpjpe']:.1f} mm; " + "  ".join(
        f"{k} {m[k]:.3f} ({m['chance_' + k]:.3f})"
        for k in ("hit@1", "hit@1_kappa0.05", "strict_hit@1", "strict_hit@10")))
    return result.model


def mean_pose_p_mpjpe(labels, test, stride: int) -> float:
    """P-MPJPE of predicting the labelled frames' mean body-canonical pose for every test frame
    (every `stride`-th frame): what a model that resolves no articulation scores."""
    poses = np.stack([lab.joints3d for lab in labels])
    mean = canonical_frame(poses - poses[:, :1])[1].mean(axis=0)
    gt = np.concatenate([s.joints3d[::stride] for s in test if s.joints3d is not None])
    gt = gt - gt[:, :1]
    return p_mpjpe(np.repeat(mean[None], len(gt), axis=0), gt)


if __name__ == "__main__":
    main()
