"""Placing the model's camera-frame poses in the world and in each view.

The model answers root-relative poses per camera. With calibration, each view's pose is rotated
into the world and the views are fused (medoid); the body is placed where the rays through the crop
centres meet. Without calibration the pose stays centred and is drawn fitted into the person box.
"""

from __future__ import annotations

import numpy as np

from .geometry import triangulate


def triangulate_point(points2d: np.ndarray, calibrations: list) -> np.ndarray:
    """One 3D point (mm) from its pixel position in >= 2 calibrated views (linear DLT)."""
    return np.asarray(triangulate(points2d[:, None, :], calibrations), dtype=np.float64)[0]


def medoid_pose(poses: np.ndarray) -> np.ndarray:
    """The pose (of V, each (17, 3)) with the least mean joint distance to all the others.

    Fusing views by averaging shrinks the body whenever the views' orientation estimates
    disagree (left and right cancel out); the medoid is always a pose some view predicted.
    """
    if len(poses) <= 2:
        return poses.mean(axis=0)
    dist = np.linalg.norm(poses[:, None] - poses[None], axis=-1).mean(axis=-1)
    return poses[int(dist.sum(axis=1).argmin())]


def place_in_world(pose_cam: np.ndarray, calibrations: list, regions: np.ndarray) -> np.ndarray:
    """World-frame pose (17, 3) from per-view root-relative poses (C, 17, 3) and crop regions."""
    rel = medoid_pose(np.stack([p @ cal.R for p, cal in zip(pose_cam, calibrations)]))  # R^T p
    centres = np.stack(
        [(regions[:, 0] + regions[:, 2]) / 2, (regions[:, 1] + regions[:, 3]) / 2], 1
    )
    anchor = triangulate_point(centres, calibrations)
    extent_centre = (rel.min(axis=0) + rel.max(axis=0)) / 2
    return rel + (anchor - extent_centre)


def fit_in_box(pose_cam: np.ndarray, region: np.ndarray, fill: float = 0.8) -> np.ndarray:
    """Pixel positions (17, 2) of a camera-frame pose drawn orthographically in a crop region."""
    xy = pose_cam[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    side = float(region[2] - region[0])
    scale = fill * side / max(float((hi - lo).max()), 1e-6)
    centre = np.array([(region[0] + region[2]) / 2, (region[1] + region[3]) / 2])
    return (xy - (lo + hi) / 2) * scale + centre


def project_views(
    pose_cam: np.ndarray, pose_world: np.ndarray | None, calibrations: list, regions: np.ndarray
) -> np.ndarray:
    """(C, 17, 2) native-pixel skeleton per view: projected when calibrated, else box-fitted."""
    out = np.empty(pose_cam.shape[:2] + (2,))
    for c in range(pose_cam.shape[0]):
        cal = calibrations[c]
        if pose_world is not None and cal is not None:
            out[c] = cal.project(pose_world)
        else:
            out[c] = fit_in_box(pose_cam[c], regions[c])
    return out
