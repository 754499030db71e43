"""Evaluation protocols (DESIGN.md section 2): pose metrics and cross-view retrieval on test data.

Retrieval (the protocol and its code are mcss_studio/core/retrieval.py, which the Studio shares):
for every ordered camera pair (i, j), queries are the test frames seen by camera i and
the gallery the same frames seen by camera j; ranking by embedding distance. A retrieved frame is
correct when its ground-truth pose lies within KAPPA of the query's after both poses are scaled to
unit RMS joint distance from their mean and Procrustes-aligned (mean per-joint distance, unitless;
0.1 as in Pr-VIPE; also the stricter 0.05). "Strict" counts only the same sequence within +-2
frames. Every retrieval figure has a `chance_` twin: its exact expectation under a random ranking
of the same gallery (core.retrieval.chance_hit_at_k / chance_map_at_k), since on a small pose
space a lenient kappa makes chance high.

Keys: hit@1/5/10, map@10 at KAPPA; the same with the suffix `_kappa0.05` at 0.05; strict_hit@1/10;
each with `chance_` in front. Pose keys: mpjpe, n_mpjpe, p_mpjpe, rot_err_deg, mpjpe_true_rot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mcss_studio.core.inference import Predictor
from mcss_studio.core.model import MCSSModel
from mcss_studio.core.retrieval import KAPPA, KAPPAS, cross_view_retrieval

from .data import SequenceData
from .metrics import orientation_metrics, pose_metrics

__all__ = ["KAPPA", "KAPPAS", "Predictions", "evaluate", "predict_sequences", "retrieval_metrics"]


@dataclass
class Predictions:
    """Per test image: sequence index, frame, camera, GT (camera frame, mm) and outputs."""

    seq: np.ndarray
    frame: np.ndarray
    cam: np.ndarray
    gt: np.ndarray
    pose_cam: np.ndarray
    embedding: np.ndarray
    pose_canonical: np.ndarray | None = None
    rotation: np.ndarray | None = None


def predict_sequences(
    model: MCSSModel | Predictor, sequences: Sequence[SequenceData], stride: int = 1,
    device: str = "auto", frames: dict[str, Sequence[int]] | None = None,
) -> Predictions:
    """Run the model on every `stride`-th frame of every camera of sequences with 3D GT, or,
    with `frames` (sequence name -> frame indices), on those frames only (other sequences
    skipped), e.g. the labelled training frames."""
    if not isinstance(model, Predictor) and device == "auto":
        device = str(next(model.parameters()).device)  # evaluate where the model lives
    predictor = model if isinstance(model, Predictor) else Predictor(model, device=device)
    keys = ("seq", "frame", "cam", "gt", "pose_cam", "embedding", "pose_canonical", "rotation")
    parts: dict[str, list] = {k: [] for k in keys}
    for si, s in enumerate(sequences):
        if s.joints3d is None or s.rotations is None:
            continue
        if frames is None:
            chosen = np.arange(0, s.num_frames, max(1, stride))
        elif s.name in frames and len(frames[s.name]):
            chosen = np.unique(np.asarray(frames[s.name], np.int64))
        else:
            continue
        for c in range(s.num_cameras):
            out = predictor.predict(np.asarray(s.crops[c][chosen]),
                                    rays=s.ray_features(chosen, np.full(len(chosen), c)))
            parts["seq"].append(np.full(len(chosen), si))
            parts["frame"].append(chosen)
            parts["cam"].append(np.full(len(chosen), c))
            parts["gt"].append(s.pose_cam(s.joints3d[chosen], np.full(len(chosen), c)))
            for key in ("pose_cam", "embedding", "pose_canonical", "rotation"):
                if key in out:  # a model without pose heads gives embeddings only
                    parts[key].append(out[key])
    if not parts["seq"]:
        raise ValueError("no test sequences with 3D ground truth and calibration")
    return Predictions(**{k: np.concatenate(v) if v else None for k, v in parts.items()})


def retrieval_metrics(
    pred: Predictions, kappas: Sequence[float] = KAPPAS
) -> dict[str, float]:
    """Hit@1/5/10 and mAP@10 per kappa, strict Hit@1/10, averaged over ordered camera pairs,
    each with its chance level (core.retrieval.cross_view_retrieval, the Studio's code too)."""
    mean, _pairs = cross_view_retrieval(pred.seq, pred.frame, pred.cam, pred.gt, pred.embedding,
                                        kappas)
    return mean


@torch.no_grad()
def evaluate(
    model: MCSSModel | Predictor, sequences: Sequence[SequenceData], stride: int = 1,
    kappas: Sequence[float] = KAPPAS, retrieval: bool = True,
    frames: dict[str, Sequence[int]] | None = None,
) -> dict[str, float]:
    """mpjpe / n_mpjpe / p_mpjpe (mm, root-relative camera frame, all cameras), rot_err_deg,
    mpjpe_true_rot, + retrieval. `frames` restricts it to those frames (predict_sequences)."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        pred = predict_sequences(model, sequences, stride, frames=frames)
    finally:
        if was_training:
            model.train()
    result = pose_metrics(pred.pose_cam, pred.gt)
    if pred.rotation is not None and pred.pose_canonical is not None:
        result.update(orientation_metrics(pred.rotation, pred.pose_canonical, pred.gt))
    result["frames"] = int(len(pred.seq))
    if retrieval:
        result.update(retrieval_metrics(pred, kappas))
    return result
