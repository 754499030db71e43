"""Evaluation protocols (DESIGN.md section 2): pose metrics and cross-view retrieval on test data.

Retrieval: for every ordered camera pair (i, j), queries are the test frames seen by camera i and
the gallery the same frames seen by camera j; ranking by embedding distance. A retrieved frame is
correct when its ground-truth pose lies within KAPPA of the query's after both poses are scaled to
unit RMS joint distance from their mean and Procrustes-aligned (mean per-joint distance, unitless;
0.1 as in Pr-VIPE). "Strict" counts only the same sequence within +-2 frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mcss_studio.core.inference import Predictor
from mcss_studio.core.model import MCSSModel

from .data import SequenceData
from .metrics import hit_at_k, map_at_k, pose_metrics, procrustes_align, rank_by_distance

KAPPA = 0.1
STRICT_FRAMES = 2
RETRIEVAL_K = (1, 5, 10)


@dataclass
class Predictions:
    """Per test image: sequence index, frame, camera, GT (camera frame, mm) and outputs."""

    seq: np.ndarray
    frame: np.ndarray
    cam: np.ndarray
    gt: np.ndarray
    pose_cam: np.ndarray
    embedding: np.ndarray


def predict_sequences(
    model: MCSSModel | Predictor, sequences: Sequence[SequenceData], stride: int = 1,
    device: str = "auto",
) -> Predictions:
    """Run the model on every `stride`-th frame of every camera of sequences with 3D GT."""
    if not isinstance(model, Predictor) and device == "auto":
        device = str(next(model.parameters()).device)  # evaluate where the model lives
    predictor = model if isinstance(model, Predictor) else Predictor(model, device=device)
    parts: dict[str, list] = {k: [] for k in ("seq", "frame", "cam", "gt", "pose_cam", "embedding")}
    for si, s in enumerate(sequences):
        if s.joints3d is None or s.rotations is None:
            continue
        frames = np.arange(0, s.num_frames, max(1, stride))
        for c in range(s.num_cameras):
            out = predictor.predict(np.asarray(s.crops[c][frames]),
                                    rays=s.ray_features(frames, np.full(len(frames), c)))
            parts["seq"].append(np.full(len(frames), si))
            parts["frame"].append(frames)
            parts["cam"].append(np.full(len(frames), c))
            parts["gt"].append(s.pose_cam(s.joints3d[frames], np.full(len(frames), c)))
            parts["pose_cam"].append(out["pose_cam"])
            parts["embedding"].append(out["embedding"])
    if not parts["seq"]:
        raise ValueError("no test sequences with 3D ground truth and calibration")
    return Predictions(**{k: np.concatenate(v) for k, v in parts.items()})


def _normalise(poses: np.ndarray) -> np.ndarray:
    centred = poses - poses.mean(axis=1, keepdims=True)
    rms = np.sqrt((centred**2).sum(axis=2).mean(axis=1))
    return centred / np.maximum(rms, 1e-9)[:, None, None]


def pose_match(
    gt_a: np.ndarray, gt_b: np.ndarray, kappa: float = KAPPA, chunk: int = 64
) -> np.ndarray:
    """(A, B) bool: Procrustes distance of unit-scale poses within kappa."""
    a, b = _normalise(gt_a), _normalise(gt_b)
    out = np.zeros((len(a), len(b)), bool)
    for start in range(0, len(a), chunk):
        qa = a[start:start + chunk]
        pa = np.broadcast_to(qa[:, None], (len(qa), len(b)) + a.shape[1:]).reshape(-1, *a.shape[1:])
        pb = np.broadcast_to(b[None], (len(qa),) + b.shape).reshape(-1, *b.shape[1:])
        aligned = procrustes_align(pb, pa)
        err = np.linalg.norm(aligned - pa, axis=-1).mean(axis=-1)
        out[start:start + chunk] = (err <= kappa).reshape(len(qa), len(b))
    return out


def retrieval_metrics(pred: Predictions, kappa: float = KAPPA) -> dict[str, float]:
    """Hit@1/5/10 and mAP@10 averaged over ordered camera pairs (+ strict Hit@1)."""
    cams = np.unique(pred.cam)
    # instants seen by every camera, in a fixed order, so rows of camera i match rows of camera j
    keys = {c: {(int(s), int(f)): k for k, (s, f) in
                enumerate(zip(pred.seq[pred.cam == c], pred.frame[pred.cam == c]))} for c in cams}
    common = sorted(set.intersection(*(set(k) for k in keys.values())))
    if len(cams) < 2 or len(common) < 2:
        return {}
    idx = {c: np.flatnonzero(pred.cam == c)[[keys[c][key] for key in common]] for c in cams}
    ref = idx[cams[0]]
    relevant = pose_match(pred.gt[ref], pred.gt[ref], kappa)
    seq = pred.seq[ref]
    frame = pred.frame[ref]
    near = np.abs(frame[:, None] - frame[None, :]) <= STRICT_FRAMES
    strict = (seq[:, None] == seq[None, :]) & near
    sums: dict[str, float] = {}
    pairs = [(i, j) for i in cams for j in cams if i != j]
    for i, j in pairs:
        ranking = rank_by_distance(pred.embedding[idx[i]], pred.embedding[idx[j]])
        for k in RETRIEVAL_K:
            sums[f"hit@{k}"] = sums.get(f"hit@{k}", 0.0) + hit_at_k(relevant, k, ranking)
        sums["map@10"] = sums.get("map@10", 0.0) + map_at_k(relevant, 10, ranking)
        sums["strict_hit@1"] = sums.get("strict_hit@1", 0.0) + hit_at_k(strict, 1, ranking)
    return {k: v / len(pairs) for k, v in sums.items()}


@torch.no_grad()
def evaluate(
    model: MCSSModel | Predictor, sequences: Sequence[SequenceData], stride: int = 1,
    kappa: float = KAPPA, retrieval: bool = True,
) -> dict[str, float]:
    """mpjpe / n_mpjpe / p_mpjpe (mm, root-relative camera frame, all cameras) + retrieval."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        pred = predict_sequences(model, sequences, stride)
    finally:
        if was_training:
            model.train()
    result = pose_metrics(pred.pose_cam, pred.gt)
    result["frames"] = int(len(pred.seq))
    if retrieval:
        result.update(retrieval_metrics(pred, kappa))
    return result
