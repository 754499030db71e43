"""Does data loading starve the model? Training steps/s through the real pipeline (crop-cache
memmaps -> multi-view batch sampler -> background prefetch -> augmentation -> step) as a ratio of
steps/s on in-memory tensors of the same shape (same model, augmentation and step). Aim >= 0.8.

    .venv/bin/python benchmarks/bench_data_loading.py [--data DATASET] [--steps 30] [--crop 64]

Without --data it renders the synthetic "demo" dataset into a temporary folder first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from mcss_studio.core.inference import autocast_for, pick_device
from mcss_studio.core.model import MCSSModel
from trainer.config import TrainConfig
from trainer.data import BatchSampler, Prefetcher, labels_from_ground_truth
from trainer.sources import load_sequences
from trainer.train import model_config, sampler_config, train_step


def run(steps_iter, model, optimizer, config, device, amp) -> float:
    """Steps per second over the iterator (after one warm-up step)."""
    start = None
    n = 0
    for step, batch in steps_iter:
        train_step(model, batch, optimizer, None, amp, device, config, step)
        if start is None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        else:
            n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder (default: render the demo preset)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="mcss-bench-load-")
    data = Path(args.data) if args.data else None
    if data is None:
        from mcss_studio.core.synth import generate

        data = generate(Path(tmp.name) / "data", preset="demo", seed=0)
    config = TrainConfig(data=str(data), crop_size=args.crop, width=args.width, embedding_dim=64,
                         pose_hidden=256, orientation_hidden=128, sequences_per_batch=4,
                         instants_per_sequence=8, views_per_instant=2, labelled_batch=32, tau=10,
                         device=args.device, steps=10**9)
    t0 = time.perf_counter()
    sequences = load_sequences(data, None, Path(tmp.name) / "cache", args.crop)
    print(f"crop caches ready in {time.perf_counter() - t0:.1f}s ({len(sequences)} sequences)")
    labels = labels_from_ground_truth(sequences, [sequences[0].subject])
    sampler = BatchSampler(sequences, labels, sampler_config(config), seed=0)
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = MCSSModel(model_config(config)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = autocast_for(device) if config.amp else nullcontext()
    fixed = sampler.batch(0)
    images = len(fixed.mv_images) + len(fixed.lab_images)
    print(f"device {device}, {images} images of {args.crop}px per step, ResNet-18 width "
          f"{args.width}, {args.steps} steps per measurement")
    ratios = []
    for r in range(args.rounds):
        memory = run(((s, fixed) for s in range(args.steps + 1)), model, optimizer, config,
                     device, amp)
        prefetch = Prefetcher(sampler.batch, 1000 * r, 1000 * r + args.steps + 1)
        try:
            real = run(iter(prefetch), model, optimizer, config, device, amp)
        finally:
            prefetch.close()
        ratios.append(real / memory)
        print(f"round {r}: in-memory {memory:.2f} steps/s ({memory * images:.0f} img/s), "
              f"real pipeline {real:.2f} steps/s ({real * images:.0f} img/s), "
              f"ratio {real / memory:.2f}")
    print(f"ratio real/in-memory: {sum(ratios) / len(ratios):.2f} (aim >= 0.8)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
