"""A checkpoint trained at test time on the tiny synthetic dataset, for the embedding panels'
tests (no tests here; conftest.py's session-scoped `trained_project` fixture calls it once).

The run overfits the tiny set on purpose (both subjects trained on, the metric loss weighted
10x the pose loss, every camera of an instant in the batch, tau 1 so even the next frame is a
negative), so that its embedding ranks the same instant seen by another camera first: what the
gallery and map tests need to be meaningful. The strict same-instant cross-view Hit@1 is
measured on the Studio's own index of the data and must reach MIN_STRICT_HIT1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

STEPS = 200  # ~25 s on one core of the 2-core test machine
MIN_STRICT_HIT1 = 0.6
CONFIG = """data = "{data}"
crop_size = 32
width = 8
embedding_dim = 24
pose_hidden = 32
orientation_hidden = 16
train_subjects = ["S1", "S9"]
labelled_subjects = ["S1"]
test_subjects = ["S9"]
lambda_metric = 10.0
tau = 1
instants_per_sequence = 6
views_per_instant = 4
labelled_batch = 4
augment = false
lr = 5e-3
warmup_steps = 10
triplet_log_every = 20
triplet_log_size = 8
eval_every = 0
checkpoint_every = 0
seed = 0
"""


@dataclass(frozen=True)
class TrainedProject:
    data: Path  # the tiny synthetic dataset
    checkpoint: Path
    run: Path  # the run folder: events.jsonl, triplets.jsonl
    strict_hit1: float  # same instant, another camera, ranked first: fraction of all crops


def strict_hit_at_1(index) -> float:
    """Fraction of the index's rows whose nearest row of another camera is the same instant."""
    from mcss_studio.core.embeddings import NeighbourFilter

    hits = 0
    for row in range(len(index)):
        best = int(index.query(row, 1, NeighbourFilter(other_cameras=True)).rows[0])
        hits += index.key(best)[0::2] == index.key(row)[0::2]
    return hits / max(1, len(index))


def train_tiny(root: Path) -> TrainedProject:
    import torch

    from mcss_studio.core import open_dataset
    from mcss_studio.core.embedding_store import build_index
    from mcss_studio.core.synth import generate
    from trainer.cli import main

    data = Path(generate(root / "data", preset="tiny", seed=0))
    config = root / "fit.toml"
    config.write_text(CONFIG.format(data=data.as_posix()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core machine were several times slower
    try:
        assert main(["fit", "--config", str(config), "--steps", str(STEPS), "--log-every", "10",
                     "--run-dir", str(root / "runs"), "--run-id", "trained",
                     "--progress", "off"]) == 0
    finally:
        torch.set_num_threads(threads)
    run = root / "runs" / "trained"
    checkpoint = run / "checkpoints" / "last.safetensors"
    index = build_index(open_dataset(data), root / "measure-cache", checkpoint)
    hit1 = strict_hit_at_1(index)
    assert hit1 >= MIN_STRICT_HIT1, f"the test checkpoint's strict Hit@1 is only {hit1:.2f}"
    assert np.isfinite(np.asarray(index.embeddings)).all()
    return TrainedProject(data, checkpoint, run, hit1)
