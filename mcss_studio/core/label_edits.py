"""Edits of one frame's labels, as pure functions: old FrameLabel in, new FrameLabel out.

The labelling mode turns each user action into one of these and puts the before and after
labels into an undoable command, so undo and redo restore exact states. Every edit that moves
a 2D point re-triangulates the joints it touched (core.triangulate) when the sequence is
calibrated; without calibration the 2D labels are kept and the 3D waits (`refit` later).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .labels import NOT_LABELLED, OCCLUDED, SOURCES, VISIBLE, FrameLabel
from .triangulate import OUTLIER_PX, CameraStack, fit_joint

CLICKED = SOURCES.index("clicked")
TRIANGULATED = SOURCES.index("triangulated")
MODEL = SOURCES.index("model")
DETECTOR = SOURCES.index("detector")
IMPORTED = SOURCES.index("imported")
# a detector's point below this confidence (MediaPipe: visibility) is not used; such joints are
# mostly hidden in that view, and its guesses there are often far off
DETECTOR_MIN_CONFIDENCE = 0.5


def refit(label: FrameLabel, cameras: CameraStack | None,
          joints: Iterable[int] | None = None) -> FrameLabel:
    """A copy with `joints` (default all) triangulated from their visible 2D points: 3D point,
    source "triangulated", each view's reprojection error; the outlier views in
    `extra["outliers"]` ({joint: view}). Joints seen in fewer than 2 views lose a triangulated
    3D point (a model's or an imported one stays); uncalibrated (`cameras` None): unchanged."""
    out = label.copy()
    if cameras is None:
        return out
    outliers = dict(out.extra.get("outliers", {}))
    for j in range(label.num_joints) if joints is None else joints:
        fit = fit_joint(out.points2d[:, j], out.visibility[:, j] == VISIBLE, cameras)
        outliers.pop(j, None)
        if np.all(np.isfinite(fit.point)):
            out.joints3d[j] = fit.point
            out.source3d[j] = TRIANGULATED
            out.error2d[:, j] = fit.errors
            if fit.outlier >= 0:
                outliers[j] = fit.outlier
        else:
            if out.source3d[j] in (TRIANGULATED, DETECTOR):  # derived from 2D points
                out.joints3d[j] = np.nan
                out.source3d[j] = 0
            out.error2d[:, j] = _errors_of(out, cameras, j)
    out.extra["outliers"] = outliers
    return out


def _errors_of(label: FrameLabel, cameras: CameraStack, joint: int) -> np.ndarray:
    """Reprojection errors of a joint's existing 3D point (a model's) in its visible views."""
    err = np.full(len(label.cameras), np.nan)
    point = label.joints3d[joint]
    seen = label.visibility[:, joint] == VISIBLE
    if np.all(np.isfinite(point)) and seen.any():
        err[seen] = np.linalg.norm(cameras.project(point[None])[seen, 0]
                                   - label.points2d[seen, joint], axis=-1)
    return err


def place(label: FrameLabel, cameras: CameraStack | None, view: int, joint: int,
          xy: Sequence[float], source: int = CLICKED) -> FrameLabel:
    """The joint clicked (or dragged) to pixel xy in one view, then re-triangulated."""
    out = label.copy()
    out.points2d[view, joint] = xy
    out.visibility[view, joint] = VISIBLE
    out.source2d[view, joint] = source
    return refit(out, cameras, [joint])


def set_occluded(label: FrameLabel, cameras: CameraStack | None, view: int, joint: int,
                 occluded: bool = True) -> FrameLabel:
    """Mark the joint hidden in one view (its click, if any, no longer counts), or unmark it
    (back to not labelled there)."""
    out = label.copy()
    out.visibility[view, joint] = OCCLUDED if occluded else NOT_LABELLED
    out.points2d[view, joint] = np.nan
    out.source2d[view, joint] = 0
    return refit(out, cameras, [joint])


def clear(label: FrameLabel, cameras: CameraStack | None, joint: int,
          view: int | None = None) -> FrameLabel:
    """Remove a joint's label in one view, or in every view and in 3D (view None)."""
    out = label.copy()
    views = slice(None) if view is None else view
    out.points2d[views, joint] = np.nan
    out.visibility[views, joint] = NOT_LABELLED
    out.source2d[views, joint] = 0
    out.error2d[views, joint] = np.nan
    if view is None:
        out.joints3d[joint] = np.nan
        out.source3d[joint] = 0
        return out
    return refit(out, cameras, [joint])


def from_prediction(label: FrameLabel, points2d: np.ndarray, pose_world: np.ndarray | None,
                    cameras: CameraStack | None, source: int = MODEL) -> FrameLabel:
    """Every joint not yet labelled in a view starts at the model's (or a detector's) 2D point;
    joints without a 3D label take the predicted world pose, when there is one (calibrated).
    What the user already placed or marked occluded stays."""
    out = label.copy()
    pts = np.asarray(points2d, np.float64)
    free = (out.visibility == NOT_LABELLED) & np.all(np.isfinite(pts), axis=-1)
    out.points2d[free] = pts[free]
    out.visibility[free] = VISIBLE
    out.source2d[free] = source
    if pose_world is not None:
        missing = ~np.all(np.isfinite(out.joints3d), axis=-1)
        out.joints3d[missing] = np.asarray(pose_world, np.float64)[missing]
        out.source3d[missing] = source
    if cameras is not None:
        for j in range(out.num_joints):
            out.error2d[:, j] = _errors_of(out, cameras, j)
    return out


def from_detector(label: FrameLabel, points2d: np.ndarray, confidence: np.ndarray,
                  cameras: CameraStack | None, min_confidence: float = DETECTOR_MIN_CONFIDENCE
                  ) -> FrameLabel:
    """A 2D keypoint detector's joints (C, J, 2) as a start: every joint not yet labelled in a
    view, that the detector saw there with at least `min_confidence`, is placed at the
    detector's point (source "detector"); the joints it placed are triangulated across the
    calibrated views (DLT, refinement, the outlier view with three or more), their 3D source
    "detector" too, so both stay marked as a guess to check. What the user already placed or
    marked occluded stays as it is. Uncalibrated: the 2D points are kept, the 3D waits."""
    out = label.copy()
    pts = np.asarray(points2d, np.float64)
    with np.errstate(invalid="ignore"):
        sure = np.asarray(confidence, np.float64) >= min_confidence
    free = (out.visibility == NOT_LABELLED) & np.all(np.isfinite(pts), axis=-1) & sure
    out.points2d[free] = pts[free]
    out.visibility[free] = VISIBLE
    out.source2d[free] = DETECTOR
    touched = np.flatnonzero(free.any(axis=0))
    out = refit(out, cameras, touched)
    if cameras is not None:
        fitted = touched[out.source3d[touched] == TRIANGULATED]
        out.source3d[fitted] = DETECTOR
    return out


def accept_all(label: FrameLabel, cameras: CameraStack | None) -> FrameLabel:
    """Every joint with a 3D point is labelled in every view where it is neither labelled nor
    marked occluded, at its reprojection ("triangulated"): the frame becomes complete."""
    out = label.copy()
    if cameras is None:
        return out
    have = np.all(np.isfinite(out.joints3d), axis=-1)
    projected = cameras.project(np.where(have[:, None], out.joints3d, 0.0))  # (C, J, 2)
    fill = (out.visibility == NOT_LABELLED) & have[None, :]
    out.points2d[fill] = projected[fill]
    out.visibility[fill] = VISIBLE
    out.source2d[fill] = TRIANGULATED
    out.error2d[fill] = 0.0
    return out


def align_cameras(label: FrameLabel, cameras: Sequence[str]) -> FrameLabel:
    """The label with its per-view arrays in the order of `cameras` (by name); views the label
    does not have are empty, views the sequence does not have are dropped."""
    if tuple(cameras) == label.cameras:
        return label
    out = FrameLabel.empty(label.sequence, label.frame, cameras, label.subject,
                           label.num_joints)
    out.joints3d, out.source3d = label.joints3d.copy(), label.source3d.copy()
    out.author, out.modified, out.revision = label.author, label.modified, label.revision
    where = {name: i for i, name in enumerate(label.cameras)}
    for c, name in enumerate(cameras):
        if name in where:
            for a in ("points2d", "visibility", "source2d", "error2d"):
                getattr(out, a)[c] = getattr(label, a)[where[name]]
    return out


def outlier_views(label: FrameLabel, outlier_px: float = OUTLIER_PX) -> np.ndarray:
    """(C, J) bool: visible clicks whose reprojection error says they disagree with the 3D
    point (the view triangulation left out, also after the label was stored and reloaded)."""
    with np.errstate(invalid="ignore"):
        return (label.visibility == VISIBLE) & (label.error2d > outlier_px)
