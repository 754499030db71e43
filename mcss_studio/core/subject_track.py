"""Following one subject through candidate detections: the most consistent chain over time.

Each frame offers candidates (a position and a support: how much evidence backs it — voxels of
a 3D blob, pixels of a 2D blob). `best_chain` picks at most one candidate per frame so that the
chain's total support is high and its steps are small, jointly over the whole sequence (Viterbi),
so a distractor that is briefly larger never steals the track, and a track started on the wrong
thing in the first frames is not kept just because it came first.

Guarantees: the chosen chain is the exact optimum of the cost
    sum over chosen frames of -log(support) + sum over steps of |step|^2 / (2 * sigma(gap)^2)
where sigma(gap) = sigma0 + speed * gap for a step over `gap` frames; frames with no candidate
are skipped (gap grows), never filled with a made-up candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Candidates:
    """Candidates of one frame: positions (N, D) and supports (N,) > 0."""

    positions: np.ndarray
    supports: np.ndarray

    def __len__(self) -> int:
        return len(self.supports)


def best_chain(frames: list[Candidates], sigma0: float, speed: float) -> np.ndarray:
    """Index of the chosen candidate per frame (-1 where the frame has none)."""
    T = len(frames)
    choice = np.full(T, -1, dtype=int)
    filled = [t for t in range(T) if len(frames[t])]
    if not filled:
        return choice
    cost = -np.log(np.maximum(frames[filled[0]].supports, 1e-9))
    back: list[np.ndarray] = []
    for prev, t in zip(filled, filled[1:]):
        sigma = sigma0 + speed * (t - prev)
        step = frames[t].positions[:, None, :] - frames[prev].positions[None, :, :]
        total = cost[None, :] + (step ** 2).sum(-1) / (2 * sigma ** 2)  # (N_t, N_prev)
        best = np.argmin(total, axis=1)
        back.append(best)
        cost = total[np.arange(len(best)), best] - np.log(np.maximum(frames[t].supports, 1e-9))
    k = int(np.argmin(cost))
    choice[filled[-1]] = k
    for i in range(len(filled) - 1, 0, -1):
        k = int(back[i - 1][k])
        choice[filled[i - 1]] = k
    return choice
