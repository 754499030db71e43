"""Triplet mining for multi-view batches (MCSS): temporal hard negatives inside a sequence.

Anchor (s, t, a); positive (s, t, b != a); negatives (s, t', any camera) with |t' - t| >= tau, or
any frame of another sequence. Never the same instant, never a frame closer than tau in time.

The one implementation: the trainer mines its batches with it (trainer/mining.py re-exports it)
and the Studio's "Mine now" (core/mine_now.py) calls the same function on a checkpoint's
embeddings. No Qt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STRATEGIES = ("hardest", "semihard", "random")


@dataclass
class Triplets:
    """Index triplets into the batch, with the distances that selected them."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    d_ap: torch.Tensor
    d_an: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchor.numel())


def triplet_masks(
    seq: torch.Tensor, time: torch.Tensor, cam: torch.Tensor, tau: int, tau_max: int = 0,
    other_sequences: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive mask, negative mask), both (N, N) bool, row = anchor.

    tau_max > 0 keeps in-sequence negatives within tau <= |dt| <= tau_max (periodic motion
    repeats a pose one period later: such a "negative" is the same pose). other_sequences=False
    keeps only temporal negatives of the anchor's own sequence.
    """
    if tau < 1:
        raise ValueError("tau must be >= 1 (a negative may never be the same instant)")
    if tau_max and tau_max < tau:
        raise ValueError("tau_max must be 0 (no limit) or >= tau")
    same_seq = seq[:, None] == seq[None, :]
    dt = (time[:, None] - time[None, :]).abs()
    positive = same_seq & (dt == 0) & (cam[:, None] != cam[None, :])
    in_window = (dt >= tau) & ((dt <= tau_max) if tau_max else True)
    negative = same_seq & in_window
    if other_sequences:
        negative = negative | ~same_seq
    return positive, negative


def negative_statistics(
    seq: torch.Tensor, time: torch.Tensor, tau: int, tau_max: int = 0
) -> dict[str, float]:
    """What in-sequence mining can choose from in one batch, per distinct instant (anchor):
    anchors_with_negative, the fraction with at least one other instant of its sequence at
    tau <= |dt| <= tau_max; negatives_per_anchor, the mean number of such instants."""
    pairs = torch.unique(torch.stack([seq.cpu(), time.cpu()], dim=1), dim=0)
    if len(pairs) == 0:
        return {"anchors_with_negative": 0.0, "negatives_per_anchor": 0.0}
    s, t = pairs[:, 0], pairs[:, 1]
    dt = (t[:, None] - t[None, :]).abs()
    window = (s[:, None] == s[None, :]) & (dt >= tau) & ((dt <= tau_max) if tau_max else True)
    count = window.sum(dim=1).double()
    return {"anchors_with_negative": float((count > 0).double().mean()),
            "negatives_per_anchor": float(count.mean())}


@torch.no_grad()
def mine_triplets(
    embeddings: torch.Tensor,
    seq: torch.Tensor,
    time: torch.Tensor,
    cam: torch.Tensor,
    tau: int,
    strategy: str = "hardest",
    generator: torch.Generator | None = None,
    tau_max: int = 0,
    other_sequences: bool = True,
) -> Triplets:
    """One negative per (anchor, positive) pair, chosen in embedding space by `strategy`.

    hardest: the closest valid negative. semihard: the closest valid negative farther than the
    positive (FaceNet), else the hardest. random: uniform among valid negatives (the ablation).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown mining strategy {strategy!r}, expected one of {STRATEGIES}")
    device = embeddings.device
    seq, time, cam = seq.to(device), time.to(device), cam.to(device)
    pos_mask, neg_mask = triplet_masks(seq, time, cam, tau, tau_max, other_sequences)
    dist = torch.cdist(embeddings.float(), embeddings.float())
    a, p = pos_mask.nonzero(as_tuple=True)
    has_neg = neg_mask[a].any(dim=1)
    a, p = a[has_neg], p[has_neg]
    d_ap = dist[a, p]
    valid = neg_mask[a]  # (P, N)
    inf = torch.tensor(float("inf"), device=device)
    d_an_all = torch.where(valid, dist[a], inf)
    if strategy == "hardest":
        n = d_an_all.argmin(dim=1)
    elif strategy == "semihard":
        semi = torch.where(d_an_all > d_ap[:, None], d_an_all, inf)
        has_semi = torch.isfinite(semi).any(dim=1)
        n = torch.where(has_semi, semi.argmin(dim=1), d_an_all.argmin(dim=1))
    else:
        noise = torch.rand(valid.shape, generator=generator, device="cpu").to(device)
        n = torch.where(valid, noise, torch.tensor(-1.0, device=device)).argmax(dim=1)
    return Triplets(a, p, n, d_ap, dist[a, n])
