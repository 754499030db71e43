"""Pose and retrieval metrics with the standard definitions (VideoPose3D, Rhodin et al. 2018).

Poses are arrays (N, J, 3) in millimetres, root-relative. Every function returns a float in the
unit of its inputs (pose metrics) or a fraction in [0, 1] (retrieval).
"""

from __future__ import annotations

import numpy as np

from mcss_studio.core.geometry import procrustes_align


def _as_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"expected two (N, J, 3) arrays of equal shape: {pred.shape}, {gt.shape}")
    return pred, gt


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint position error: mean Euclidean distance over samples and joints."""
    pred, gt = _as_pair(pred, gt)
    return float(np.linalg.norm(pred - gt, axis=-1).mean())


def optimal_scale(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-sample scale s minimising ||s * pred - gt||^2 (Rhodin et al. 2018), shape (N,)."""
    pred, gt = _as_pair(pred, gt)
    num = np.einsum("njk,njk->n", pred, gt)
    den = np.einsum("njk,njk->n", pred, pred)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


def n_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """MPJPE after scaling each predicted pose by its least-squares optimal scale."""
    pred, gt = _as_pair(pred, gt)
    s = optimal_scale(pred, gt)
    return mpjpe(pred * s[:, None, None], gt)


def p_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """MPJPE after rigid alignment with scale (Procrustes), per sample."""
    pred, gt = _as_pair(pred, gt)
    return mpjpe(procrustes_align(pred, gt, scale=True), gt)


def pose_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The three pose metrics in one dict, keys mpjpe, n_mpjpe, p_mpjpe."""
    return {"mpjpe": mpjpe(pred, gt), "n_mpjpe": n_mpjpe(pred, gt), "p_mpjpe": p_mpjpe(pred, gt)}


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
