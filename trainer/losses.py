"""Losses: triplet margin loss on mined triplets, pose loss on labelled frames (metres)."""

from __future__ import annotations

import torch

from mcss_studio.core.model import POSE_SCALE_MM

from .mining import Triplets


def triplet_loss(
    embeddings: torch.Tensor, triplets: Triplets, margin: float, soft: bool = False
) -> torch.Tensor:
    """mean(relu(|a - p| - |a - n| + margin)), recomputed with gradients on the chosen indices;
    soft: mean(softplus(|a - p| - |a - n|)), which never goes flat (Hermans et al. 2017)."""
    if len(triplets) == 0:
        return embeddings.sum() * 0.0
    e = embeddings.float()
    d_ap = (e[triplets.anchor] - e[triplets.positive]).norm(dim=1)
    d_an = (e[triplets.anchor] - e[triplets.negative]).norm(dim=1)
    if soft:
        return torch.nn.functional.softplus(d_ap - d_an).mean()
    return torch.relu(d_ap - d_an + margin).mean()


def joint_error(pred_mm: torch.Tensor, target_mm: torch.Tensor) -> torch.Tensor:
    """Mean per-joint Euclidean error in metres (the MPJPE the metrics report, differentiable)."""
    return ((pred_mm.float() - target_mm.float()) / POSE_SCALE_MM).norm(dim=-1).mean()


def pose_loss(
    outputs: dict[str, torch.Tensor], pose_cam: torch.Tensor, pose_canonical: torch.Tensor,
    canonical_weight: float = 1.0,
) -> torch.Tensor:
    """Camera-frame error (trains both heads through R @ canonical) + canonical-frame error."""
    if pose_cam.shape[0] == 0:
        return outputs["pose_cam"].sum() * 0.0
    return joint_error(outputs["pose_cam"], pose_cam) + canonical_weight * joint_error(
        outputs["pose_canonical"], pose_canonical
    )


def keypoint_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-joint Euclidean distance between predicted and true 2D joint positions in the
    crop (fractions of its side). Joints outside the crop count like any other: the crop
    margin keeps the labelled body inside it."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    return (pred.float() - target.float()).norm(dim=-1).mean()


def rotation_loss(rotation: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean chordal distance |R - R_gt|_F between predicted and true canonical -> camera
    rotations. Why: through R @ canonical alone, an orientation that is off by a half turn gets
    weak, conflicting gradients; a direct term pulls it out."""
    if rotation.shape[0] == 0:
        return rotation.sum() * 0.0
    return (rotation.float() - target.float()).flatten(1).norm(dim=1).mean()
