"""Pose and retrieval metrics with the standard definitions (VideoPose3D, Rhodin et al. 2018).

Poses are arrays (N, J, 3) in millimetres, root-relative. Every function returns a float in the
unit of its inputs (pose metrics), degrees (orientation) or a fraction in [0, 1] (retrieval),
except the per-sample ones (per_sample_p_mpjpe, rotation_error_deg), which return (N,) arrays.
Retrieval metrics and their chance levels live in mcss_studio/core/retrieval.py, shared with the
Studio; they are re-exported here under their old names.
"""

from __future__ import annotations

import numpy as np

from mcss_studio.core.geometry import procrustes_align
from mcss_studio.core.model import canonical_frame
from mcss_studio.core.retrieval import (  # noqa: F401 - the trainer's names for the shared code
    chance_hit_at_k,
    chance_map_at_k,
    hit_at_k,
    map_at_k,
    rank_by_distance,
)


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


def per_sample_p_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Each sample's mean joint error after its rigid alignment with scale (Procrustes), (N,)."""
    pred, gt = _as_pair(pred, gt)
    return np.linalg.norm(procrustes_align(pred, gt, scale=True) - gt, axis=-1).mean(-1)


def p_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """MPJPE after rigid alignment with scale (Procrustes), per sample."""
    return float(per_sample_p_mpjpe(pred, gt).mean())


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
