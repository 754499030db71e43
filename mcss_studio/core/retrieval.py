"""Cross-view retrieval metrics and their chance levels: the one implementation that the
trainer's evaluation (trainer/evaluate.py) and the Studio's embedding panels both call.

Protocol (DESIGN.md section 2): for every ordered camera pair (i, j), queries are the instants
seen by camera i and the gallery the same instants seen by camera j, ranked by Euclidean
embedding distance. A retrieved instant is correct when its ground-truth pose lies within kappa
of the query's after both are scaled to unit RMS joint distance and Procrustes-aligned
(core.geometry.pose_distance: 0.1 as in Pr-VIPE, and the stricter 0.05). "Strict" counts only
the same sequence within +-STRICT_FRAMES frames. Every figure has a `chance_` twin: its exact
expectation under a uniformly random ranking of the same gallery, computed from the relevance
structure (no sampling), since on a small pose space a lenient kappa makes chance high.

Keys: hit@1/5/10, map@10 at KAPPA; the same with the suffix `_kappa0.05` at 0.05;
strict_hit@1/10; each with `chance_` in front. Numbers are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .geometry import pose_distance

KAPPA = 0.1
KAPPAS = (KAPPA, 0.05)  # the first one's keys carry no suffix
STRICT_K = (1, 10)
STRICT_FRAMES = 2
RETRIEVAL_K = (1, 5, 10)


def _relevance(relevant: np.ndarray, ranking: np.ndarray | None) -> np.ndarray:
    rel = np.asarray(relevant, dtype=bool)
    if rel.ndim != 2:
        raise ValueError(f"relevance must be (queries, gallery), got {rel.shape}")
    if ranking is not None:
        rel = np.take_along_axis(rel, np.asarray(ranking), axis=1)
    return rel


def hit_at_k(relevant: np.ndarray, k: int, ranking: np.ndarray | None = None) -> float:
    """Fraction of queries with at least one relevant item among the first k retrieved.

    `relevant` is (Q, G) booleans, already in retrieval order unless `ranking` (Q, G) gives the
    order as gallery indices (best first).
    """
    rel = _relevance(relevant, ranking)
    if rel.shape[0] == 0:
        return 0.0
    return float(rel[:, :k].any(axis=1).mean())


def map_at_k(relevant: np.ndarray, k: int, ranking: np.ndarray | None = None) -> float:
    """Mean average precision at k: per query, sum over relevant ranks r <= k of precision@r,
    divided by min(k, number of relevant items in the whole gallery); 0 for queries without any."""
    rel = _relevance(relevant, ranking)
    if rel.shape[0] == 0:
        return 0.0
    top = rel[:, :k].astype(np.float64)
    ranks = np.arange(1, top.shape[1] + 1)
    precision = np.cumsum(top, axis=1) / ranks
    total = np.minimum(rel.sum(axis=1), k)
    ap = np.where(total > 0, (precision * top).sum(axis=1) / np.maximum(total, 1), 0.0)
    return float(ap.mean())


def rank_by_distance(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Gallery indices sorted by Euclidean distance to each query, (Q, G), nearest first."""
    q = np.asarray(queries, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    d2 = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * q @ g.T
    return np.argsort(d2, axis=1, kind="stable")


def _relevant_counts(relevant: np.ndarray) -> tuple[np.ndarray, int]:
    rel = _relevance(relevant, None)
    return rel.sum(axis=1).astype(np.float64), rel.shape[1]


def chance_hit_at_k(relevant: np.ndarray, k: int) -> float:
    """Expected Hit@k of a uniformly random ranking: per query with r of G gallery items
    relevant, 1 - C(G - r, k) / C(G, k); averaged over queries."""
    r, g = _relevant_counts(relevant)
    if len(r) == 0:
        return 0.0
    miss = np.ones_like(r)
    for i in range(min(k, g)):  # P(first k all irrelevant) = prod (G - r - i) / (G - i)
        miss *= np.clip(g - r - i, 0, None) / (g - i)
    return float((1.0 - miss).mean())


def chance_map_at_k(relevant: np.ndarray, k: int) -> float:
    """Expected mAP@k (as map_at_k defines it) of a uniformly random ranking.

    Rank i holds a relevant item with probability r / G, and ranks i and j != i both do with
    r (r - 1) / (G (G - 1)); so E[rel_i * precision@i] = (r / G + (i - 1) r (r - 1) / (G (G - 1)))
    / i, summed over i <= k and divided by min(k, r), as map_at_k normalises.
    """
    r, g = _relevant_counts(relevant)
    if len(r) == 0:
        return 0.0
    i = np.arange(1, min(k, g) + 1, dtype=np.float64)[None, :]
    pair = r * (r - 1) / (g * (g - 1)) if g > 1 else np.zeros_like(r)
    terms = (r[:, None] / g + (i - 1) * pair[:, None]) / i
    ap = np.where(r > 0, terms.sum(axis=1) / np.maximum(np.minimum(r, k), 1), 0.0)
    return float(ap.mean())


def kappa_suffix(kappa: float) -> str:
    """Key suffix of a kappa: none for KAPPA, `_kappa0.05` for 0.05."""
    return "" if kappa == KAPPA else f"_kappa{kappa:g}"


def _pair_figures(
    ranking: np.ndarray, relevance: dict[str, np.ndarray], strict: np.ndarray
) -> dict[str, float]:
    """Every figure of one camera pair from its ranking."""
    out: dict[str, float] = {}
    for suffix, relevant in relevance.items():
        for k in RETRIEVAL_K:
            out[f"hit@{k}{suffix}"] = hit_at_k(relevant, k, ranking)
        out[f"map@10{suffix}"] = map_at_k(relevant, 10, ranking)
    for k in STRICT_K:
        out[f"strict_hit@{k}"] = hit_at_k(strict, k, ranking)
    return out


def _chance_figures(relevance: dict[str, np.ndarray], strict: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for suffix, relevant in relevance.items():
        for k in RETRIEVAL_K:
            out[f"chance_hit@{k}{suffix}"] = chance_hit_at_k(relevant, k)
        out[f"chance_map@10{suffix}"] = chance_map_at_k(relevant, 10)
    for k in STRICT_K:
        out[f"chance_strict_hit@{k}"] = chance_hit_at_k(strict, k)
    return out


def cross_view_retrieval(
    seq: np.ndarray, frame: np.ndarray, cam: np.ndarray, gt: np.ndarray, embedding: np.ndarray,
    kappas: Sequence[float] = KAPPAS,
) -> tuple[dict[str, float], dict[tuple[int, int], dict[str, float]]]:
    """(figures averaged over ordered camera pairs, figures of each pair (i, j)).

    One row per image: sequence id, frame, camera, ground-truth pose (J, 3) in any frame (the
    pose distance aligns them) and embedding. Only instants (sequence, frame) seen by every
    camera take part, so row r of camera i and row r of camera j show the same instant. The
    chance levels (the same for every pair: the relevance sets depend on the poses only) are
    in the averaged dict. Empty dicts with fewer than two cameras or two common instants.
    """
    seq, frame, cam = (np.asarray(a) for a in (seq, frame, cam))
    cams = np.unique(cam)
    keys = {c: {(int(s), int(f)): k for k, (s, f) in
                enumerate(zip(seq[cam == c], frame[cam == c]))} for c in cams}
    common = sorted(set.intersection(*(set(k) for k in keys.values()))) if len(cams) else []
    if len(cams) < 2 or len(common) < 2:
        return {}, {}
    idx = {c: np.flatnonzero(cam == c)[[keys[c][key] for key in common]] for c in cams}
    ref = idx[cams[0]]
    gt = np.asarray(gt)
    distance = pose_distance(gt[ref], gt[ref])
    near = np.abs(frame[ref][:, None] - frame[ref][None, :]) <= STRICT_FRAMES
    strict = (seq[ref][:, None] == seq[ref][None, :]) & near
    relevance = {kappa_suffix(kappa): distance <= kappa for kappa in kappas}
    pairs: dict[tuple[int, int], dict[str, float]] = {}
    for i in cams:
        for j in cams:
            if i != j:
                ranking = rank_by_distance(embedding[idx[i]], embedding[idx[j]])
                pairs[(int(i), int(j))] = _pair_figures(ranking, relevance, strict)
    mean = {key: float(np.mean([p[key] for p in pairs.values()])) for key in
            next(iter(pairs.values()))}
    mean.update(_chance_figures(relevance, strict))
    return mean, pairs
