""""Mine now": the hardest negatives of one frame under the trainer's own mining rules, computed
from a checkpoint's embedding index (core/embeddings.py). No Qt.

The batch: every camera of the query's sequence within +-BATCH_FRAMES frames of the query's
frame (the temporal negatives the trainer's window allows live there), and, when the rules take
negatives from other sequences, OTHER_INSTANTS instants (every camera) spread evenly over the
other sequences. The trainer's function (core/mining.py mine_triplets, which trainer/mining.py
re-exports and trainer/train.py calls) mines that batch; the triplets whose anchor is the query's
instant (any camera) are returned, worst margin violation first, as records of the trainer's
triplet-log format, so the inspector shows them like a run's.

`IndexCrops` serves the inspector's thumbnails and true-pose distances from the same index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .embedding_store import crop_of
from .embeddings import EmbeddingIndex
from .errors import UserInputError
from .geometry import paired_pose_distance
from .mining import STRATEGIES, Triplets, mine_triplets

BATCH_FRAMES = 64  # frames either side of the query: wider than any usual tau window
OTHER_INSTANTS = 64  # instants of other sequences in the batch
MINE_SEED = 0  # "random" mining draws from a fixed generator: the same answer each time


@dataclass(frozen=True)
class MiningRules:
    """The trainer's mining settings (trainer/config.py TrainConfig, same names and defaults:
    tests/test_mine_now.py checks they agree)."""

    tau: int = 10
    tau_max: int = 0
    mining: str = "hardest"
    cross_sequence_negatives: bool = True
    margin: float = 0.2

    @classmethod
    def from_config(cls, config: Mapping) -> MiningRules:
        """The rules of a run's logged config; settings it lacks (or malformed) keep defaults."""
        base, values = cls(), {}
        for name, kind in (("tau", int), ("tau_max", int), ("mining", str),
                           ("cross_sequence_negatives", bool), ("margin", float)):
            value = config.get(name)
            if isinstance(value, kind) or (kind is float and isinstance(value, int)):
                values[name] = kind(value)
        rules = cls(**{**base.__dict__, **values})
        return rules if rules.mining in STRATEGIES and rules.tau >= 1 else base

    @classmethod
    def of_checkpoint(cls, path: str | os.PathLike[str]) -> MiningRules:
        """The rules a checkpoint was trained with (the train_config its trainer stored in the
        safetensors header; only the header is read), else the defaults."""
        config = _checkpoint_header(path).get("train_config")
        return cls.from_config(config) if isinstance(config, dict) else cls()

    def text(self) -> str:
        window = f"{self.tau} <= |dt|" + (f" <= {self.tau_max}" if self.tau_max else "")
        other = " or another sequence" if self.cross_sequence_negatives else ""
        return f"{self.mining}, negatives at {window}{other}, margin {self.margin:g}"


def checkpoint_step(path: str | os.PathLike[str]) -> int | None:
    """The training step a checkpoint was saved at (its training state's, else the
    `trained_steps` a weights-only file such as the demo model keeps; from the header only),
    None when it has neither or cannot be read: what "Mine now" shows as its triplets' step."""
    header = _checkpoint_header(path)
    state = header.get("training_state")
    step = state.get("step") if isinstance(state, dict) else header.get("trained_steps")
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def _checkpoint_header(path: str | os.PathLike[str]) -> dict:
    """The MCSS document of a checkpoint's safetensors header; {} when unreadable (the
    checkpoint loader is what reports a bad file)."""
    from .checkpoint import read_metadata  # torch: imported when a checkpoint is read

    try:
        return read_metadata(path)
    except UserInputError:
        return {}


def mining_batch(index: EmbeddingIndex, row: int, rules: MiningRules,
                 frames: int = BATCH_FRAMES, others: int = OTHER_INSTANTS) -> np.ndarray:
    """Index rows of the batch mined for `row` (see the module docstring), ascending."""
    s = index.info(row)
    t = int(index.frame[row])
    lo, hi = max(0, t - frames), min(s.frames, t + frames + 1)
    parts = [s.first_row + c * s.frames + np.arange(lo, hi) for c in range(len(s.cameras))]
    if rules.cross_sequence_negatives:
        parts += _other_instants(index, index.seq_id[row], others)
    return np.sort(np.concatenate(parts).astype(np.int64))


def _other_instants(index: EmbeddingIndex, own: int, count: int) -> list[np.ndarray]:
    """Rows (every camera) of `count` instants evenly spread over the other sequences."""
    seqs = [i for i in range(len(index.sequences)) if i != own]
    total = sum(index.sequences[i].frames for i in seqs)
    if not total or count <= 0:
        return []
    picked = np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(np.int64))
    parts, start = [], 0
    for i in seqs:
        s = index.sequences[i]
        mine = picked[(picked >= start) & (picked < start + s.frames)] - start
        parts += [s.first_row + c * s.frames + mine for c in range(len(s.cameras))]
        start += s.frames
    return parts


def mine_batch(index: EmbeddingIndex, rows: np.ndarray, rules: MiningRules) -> Triplets:
    """The trainer's mining function on the index's embeddings of `rows` (indices into rows)."""
    import torch

    def column(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(values[rows], np.int64))

    embeddings = torch.from_numpy(np.asarray(index.embeddings[rows], np.float32))
    generator = torch.Generator().manual_seed(MINE_SEED)
    return mine_triplets(embeddings, column(index.seq_id), column(index.frame),
                         column(index.camera), rules.tau, rules.mining, generator,
                         rules.tau_max, rules.cross_sequence_negatives)


def mine_now(index: EmbeddingIndex, row: int, rules: MiningRules, step: int = 0) -> list[dict]:
    """Triplet-log records of the mined triplets anchored at `row`'s instant, worst first;
    `step`: the checkpoint's training step (checkpoint_step), written as each record's step."""
    rows = mining_batch(index, row, rules)
    triplets = mine_batch(index, rows, rules)
    anchor_rows = rows[triplets.anchor.numpy()]
    here = (index.seq_id[anchor_rows] == index.seq_id[row]) & \
        (index.frame[anchor_rows] == index.frame[row])
    d_ap, d_an = triplets.d_ap.numpy(), triplets.d_an.numpy()
    violation = d_ap - d_an + rules.margin
    chosen = np.flatnonzero(here)
    chosen = chosen[np.argsort(-violation[chosen], kind="stable")]
    return [{"step": int(step), "mining": rules.mining,
             "anchor": _ref(index, int(rows[triplets.anchor[k]])),
             "positive": _ref(index, int(rows[triplets.positive[k]])),
             "negative": _ref(index, int(rows[triplets.negative[k]])),
             "d_ap": float(d_ap[k]), "d_an": float(d_an[k]), "margin": rules.margin,
             "violation": float(violation[k])} for k in chosen.tolist()]


def _ref(index: EmbeddingIndex, row: int) -> dict:
    name, camera, frame = index.key(row)
    return {"sequence": name, "camera": index.info(row).cameras[camera],
            "camera_index": camera, "frame": frame}


class IndexCrops:
    """The inspector's crop source (core/runcrops.py RunCrops's calls) backed by an index: the
    crops its embeddings were computed from and its ground-truth poses."""

    def __init__(self, index: EmbeddingIndex) -> None:
        self.index = index

    def crop(self, sequence: str, camera_index: int, frame: int) -> np.ndarray:
        try:
            row = self.index.row(sequence, camera_index, frame)
        except KeyError:
            raise UserInputError(sequence, f"no camera {camera_index} frame {frame} in the "
                                 "embedding index") from None
        crop = crop_of(self.index, row)
        if crop is None:
            raise UserInputError(self.index.info(row).crops or sequence,
                                 "the crop cache the index was computed from is gone")
        return crop

    def pose_distance(self, names: list[str], a_seq: np.ndarray, a_frame: np.ndarray,
                      n_seq: np.ndarray, n_frame: np.ndarray) -> tuple[np.ndarray, str]:
        """Per triplet, the unit-scale Procrustes distance of the anchor's and negative's
        ground-truth poses; NaN where either has none."""
        out = np.full(len(a_seq), np.nan)
        for i in range(len(a_seq)):
            a = self._gt(names[int(a_seq[i])], int(a_frame[i]))
            n = self._gt(names[int(n_seq[i])], int(n_frame[i]))
            if a is not None and n is not None:
                out[i] = paired_pose_distance(a[None], n[None])[0]
        return out, ""

    def _gt(self, sequence: str, frame: int) -> np.ndarray | None:
        try:
            return self.index.gt_pose(self.index.row(sequence, 0, frame))
        except KeyError:
            return None

    def close(self) -> None:
        pass
