"""Can the labels-only baseline fit a few labelled instants, and which loss term moves the
encoder? Trains the standard preset's baseline row (from an encoder file at lr 5e-4 unless
--set says otherwise) on K S1 instants and prints a JSON line every --every steps: the batch
loss; on an augmented batch (eval mode) the camera-frame and canonical errors (mm) and the
rotation loss; with --grad-norms the norm of each term's gradient on the encoder (g_can
canonical, g_cam camera-frame, g_rot rotation_weight * rotation); on the K instants
un-augmented, P-MPJPE, median orientation error and canonical error (mm).

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/probe_label_fit.py W/data-standard-0 \
        --cache W/cache --init B.safetensors --instants 32 --steps 600 --every 300 \
        [--grad-norms] [--canonical-only] [--set KEY=VALUE ...]

--canonical-only trains the canonical term alone (no camera-frame term; with
rotation_weight=0 nothing trains the orientation). One thread, seeded: a command gives the
same lines twice on one machine. Written for the audit of issue 10 (README).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import numpy as np
import torch

import trainer.train as train_module
from mcss_studio.core.checkpoint import load_encoder
from mcss_studio.core.model import MCSSModel, canonical_frame
from trainer.bench import PRESETS, VARIANTS
from trainer.config import TrainConfig, parse_overrides
from trainer.data import (
    BatchSampler,
    augment_images,
    augment_rays,
    labels_from_ground_truth,
    to_float_images,
)
from trainer.evaluate import evaluate, predict_sequences
from trainer.losses import joint_error, rotation_loss
from trainer.sources import load_sequences

CPU = torch.device("cpu")


def augmented_inputs(batch) -> tuple[torch.Tensor, torch.Tensor]:
    x = augment_images(to_float_images(batch.lab_images, CPU), batch.lab_flip, batch.aug)
    return x, augment_rays(batch.lab_rays, batch.lab_flip, batch.aug)


def batch_errors(model: MCSSModel, batch) -> dict:
    """Errors on the augmented labelled batch, the network in eval mode."""
    model.eval()
    with torch.no_grad():
        x, rays = augmented_inputs(batch)
        out = model(x, rays=rays)
    model.train()
    return {"aug_cam_mm": round(1000 * float(joint_error(out["pose_cam"], batch.lab_pose_cam)), 1),
            "aug_can_mm": round(1000 * float(joint_error(out["pose_canonical"],
                                                         batch.lab_pose_canonical)), 1),
            "aug_rot": round(float(rotation_loss(out["rotation"], batch.lab_rotation)), 3)}


def gradient_norms(model: MCSSModel, batch, rotation_weight: float) -> dict:
    """Norm of each loss term's gradient on the encoder's weights (train mode, this batch)."""
    x, rays = augmented_inputs(batch)
    weights = list(model.encoder.parameters())
    terms = {"g_can": lambda o: joint_error(o["pose_canonical"], batch.lab_pose_canonical),
             "g_cam": lambda o: joint_error(o["pose_cam"], batch.lab_pose_cam),
             "g_rot": lambda o: rotation_weight * rotation_loss(o["rotation"],
                                                                 batch.lab_rotation)}
    out = {}
    for name, term in terms.items():
        grads = torch.autograd.grad(term(model(x, rays=rays)), weights, allow_unused=True)
        out[name] = round(float(torch.sqrt(sum((g ** 2).sum() for g in grads
                                               if g is not None))), 4)
    return out


def label_fit(model: MCSSModel, train, frames: dict) -> dict:
    """P-MPJPE, median orientation error and canonical error on the labelled instants."""
    metrics = evaluate(model, train, retrieval=False, frames=frames)
    pred = predict_sequences(model, train, frames=frames)
    model.train()  # the Predictor inside leaves it in eval mode; training goes on after this
    canonical = canonical_frame(pred.gt)[1]
    error = float(np.linalg.norm(pred.pose_canonical - canonical, axis=-1).mean())
    return {"p_mpjpe": round(metrics["p_mpjpe"], 1), "rot_deg": round(metrics["rot_err_deg"], 1),
            "can_mm": round(error, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--cache", required=True)
    parser.add_argument("--init", default="", help="encoder file (empty: random weights)")
    parser.add_argument("--instants", type=int, default=0, help="0: every labelled instant")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--grad-norms", action="store_true")
    parser.add_argument("--canonical-only", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.canonical_only:  # train_step looks pose_loss up in its module at every call
        train_module.pose_loss = lambda out, pose_cam, canonical, weight=1.0: joint_error(
            out["pose_canonical"], canonical)
    settings = {**PRESETS["standard"]["config"], **VARIANTS["baseline"], "lr": 5e-4,
                "init_checkpoint": args.init, **parse_overrides(args.overrides),
                "steps": args.steps}
    config = TrainConfig(**settings, seed=0, device="cpu", data=args.data)
    train = load_sequences(args.data, ["S1"], args.cache, config.crop_size, config.crop_margin)
    labels = labels_from_ground_truth(train, ["S1"], config.label_every)
    if args.instants:
        labels = labels[::max(1, len(labels) // args.instants)][:args.instants]
    torch.manual_seed(0)
    model = MCSSModel(train_module.model_config(config))
    if config.init_checkpoint:
        load_encoder(config.init_checkpoint, model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    sampler = BatchSampler(train, labels, train_module.sampler_config(config), 0, 0)
    frames: dict[str, list[int]] = {}
    for lab in labels:
        frames.setdefault(lab.sequence, []).append(lab.frame)
    print(json.dumps({"instants": len(labels), "set": args.overrides, "init": args.init,
                      "canonical_only": args.canonical_only}), flush=True)
    start = time.time()
    model.train()
    for step in range(args.steps):
        batch = sampler.batch(step)
        for group in optimizer.param_groups:
            group["lr"] = train_module.learning_rate(config, step)
        losses, _, _ = train_module.train_step(model, batch, optimizer, None, nullcontext(),
                                               CPU, config, step)
        if (step + 1) % args.every == 0 or step == 0:
            line = {"step": step + 1, "loss": round(losses["pose_loss"], 3),
                    **batch_errors(model, batch)}
            if args.grad_norms:
                line.update(gradient_norms(model, batch, config.rotation_weight))
            line.update(label_fit(model, train, frames))
            print(json.dumps({**line, "s": round(time.time() - start)}), flush=True)


if __name__ == "__main__":
    main()
