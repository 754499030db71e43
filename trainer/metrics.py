"""Pose and retrieval metrics with the standard definitions (VideoPose3D, Rhodin et al. 2018).

Poses are arrays (N, J, 3) in millimetres, root-relative. Every function returns a float in the
unit of its inputs (pose metrics), degrees (orientation) or a fraction in [0, 1] (retrieval).
Retrieval figures come with their chance level: the exact expectation of the same figure under a
uniformly random ranking of the gallery, computed from the relevance structure (no sampling).
"""

from __future__ import annotations

import numpy as np

from mcss_studio.core.geometry import procrustes_align
from mcss_studio.core.model import canonical_frame


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


def rotation_error_deg(r_pred: np.ndarray, r_gt: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotations (N, 3, 3), degrees, shape (N,)."""
    r_pred = np.asarray(r_pred, dtype=np.float64)
    r_gt = np.asarray(r_gt, dtype=np.float64)
    if r_pred.shape != r_gt.shape or r_pred.shape[-2:] != (3, 3):
        raise ValueError(f"expected two (N, 3, 3) arrays of equal shape: {r_pred.shape}, "
                         f"{r_gt.shape}")
    trace = np.einsum("nij,nij->n", r_pred, r_gt)  # trace(R_pred^T R_gt)
    return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def orientation_metrics(
    rotation: np.ndarray, pose_canonical: np.ndarray, gt: np.ndarray
) -> dict[str, float]:
    """How much of the camera-frame error is the body orientation.

    rot_err_deg: median angle between the predicted canonical->camera rotation and the one the
    ground truth defines (core.model.canonical_frame). mpjpe_true_rot: MPJPE of the predicted
    canonical pose turned by the true rotation (the error left if orientation were perfect).
    """
    pose_canonical, gt = _as_pair(pose_canonical, gt)
    r_gt, _ = canonical_frame(gt)
    swapped = np.einsum("nij,nkj->nki", r_gt, pose_canonical)
    return {"rot_err_deg": float(np.median(rotation_error_deg(rotation, r_gt))),
            "mpjpe_true_rot": mpjpe(swapped, gt)}


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
