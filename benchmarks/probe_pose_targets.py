"""Can the CPU-sized encoder learn a pose that generalises to new subjects, and from which target?

Trains the bench's encoder (ResNet-18 at --width, 64-d unit embedding, the canonical-pose MLP)
on the canonical 3D pose of every --every-th frame of the train subjects, with or without an
auxiliary 2D target (the joints projected into the crop, a linear head on the pooled
features), no augmentation, one-cycle learning rate; prints train and test P-MPJPE and the 2D
error (fractions of the crop side) four times, beside the constant-pose floor (the train
poses' mean, which a model that resolves no articulation scores). Orientation is left out on
purpose: this asks only whether the articulation is learnt.

    .venv/bin/python benchmarks/probe_pose_targets.py DATA [--cache DIR] [--w2d 1] [--steps 1600]
        [--subjects S1,S5,S6,S7,S8] [--test S9] [--every 1] [--crop 64] [--width 16] [--threads 1]

DATA is a rendered dataset (e.g. W/data-standard-0 of `mcss-train bench limited-supervision
--preset standard --work-dir W`); --cache defaults to DATA/../cache. One crop size per cache
folder: runs at another --crop rebuild the caches (do not run two sizes at once).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mcss_studio.core.model import IMAGE_MEAN, IMAGE_STD, ResNetEncoder, canonical_frame
from trainer.metrics import p_mpjpe
from trainer.sources import load_sequences


def gather(sequences, subjects: list[str], every: int):
    """uint8 crops (N, 3, S, S), canonical poses (N, 17, 3) mm, 2D targets (N, 17, 2)."""
    images, poses, points = [], [], []
    for s in sequences:
        if s.subject not in subjects:
            continue
        frames = np.arange(0, s.num_frames, every)
        for c in range(s.num_cameras):
            images.append(np.asarray(s.crops[c][frames]))
            cams = np.full(len(frames), c)
            poses.append(canonical_frame(s.pose_cam(s.joints3d[frames], cams))[1])
            points.append(s.keypoints2d[c][frames])
    return (torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).contiguous(),
            np.concatenate(poses), torch.from_numpy(np.concatenate(points)).float())


class Probe(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.encoder = ResNetEncoder("resnet18", width)
        self.embedding = nn.Linear(self.encoder.out_dim, 64)
        self.pose = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                  nn.Linear(256, 51))
        self.points = nn.Linear(self.encoder.out_dim, 34)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.encoder((x.float() / 255 - IMAGE_MEAN) / IMAGE_STD)
        pose = self.pose(F.normalize(self.embedding(f), dim=1)).view(-1, 17, 3)
        return pose, self.points(f).view(-1, 17, 2)


def scores(model: Probe, images, poses, points) -> tuple[float, float]:
    model.eval()
    out3, out2 = [], []
    with torch.no_grad():
        for i in range(0, len(images), 256):
            p3, p2 = model(images[i:i + 256])
            out3.append(p3.numpy() * 1000)
            out2.append(p2)
    model.train()
    return (p_mpjpe(np.concatenate(out3), poses),
            float((torch.cat(out2) - points).norm(dim=-1).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--cache", default="")
    parser.add_argument("--w2d", type=float, default=1.0, help="weight of the 2D target")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--subjects", default="S1,S5,S6,S7,S8")
    parser.add_argument("--test", default="S9")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = Path(args.data)
    cache = Path(args.cache) if args.cache else data.parent / "cache"
    subjects, test_subjects = args.subjects.split(","), args.test.split(",")
    sequences = load_sequences(data, subjects + test_subjects, cache, args.crop, 0.2)
    x_train, c_train, u_train = gather(sequences, subjects, args.every)
    x_test, c_test, u_test = gather(sequences, test_subjects, 10)
    floor = p_mpjpe(np.repeat(c_train.mean(0)[None], len(c_test), 0), c_test)
    print(f"{len(x_train)} train crops of {args.subjects}, {len(x_test)} test crops of "
          f"{args.test}; constant pose: test P-MPJPE {floor:.1f} mm, 2D "
          f"{float((u_test - u_train.mean(0)).norm(dim=-1).mean()):.4f}; 2D weight {args.w2d}")
    model = Probe(args.width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr,
                                                   total_steps=args.steps, pct_start=0.05)
    targets = torch.from_numpy(c_train).float() / 1000
    rng = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    probe_rows = torch.arange(0, len(x_train), max(1, len(x_train) // 1000))
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(x_train), (32,), generator=rng)
        pose, points = model(x_train[idx])
        loss = (pose - targets[idx]).norm(dim=-1).mean()
        loss = loss + args.w2d * (points - u_train[idx]).norm(dim=-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % max(1, args.steps // 4) == 0:
            train = scores(model, x_train[probe_rows], c_train[probe_rows.numpy()],
                           u_train[probe_rows])
            test = scores(model, x_test, c_test, u_test)
            seconds = time.perf_counter() - start
            print(f"step {step}: train P-MPJPE {train[0]:.1f} mm, 2D {train[1]:.4f} | test "
                  f"P-MPJPE {test[0]:.1f} mm, 2D {test[1]:.4f} | {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
