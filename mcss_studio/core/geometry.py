"""Multi-view geometry in our camera convention (x_cam = R @ X + t, mm): projection, undistortion,
N-view DLT triangulation, reprojection error and Procrustes alignment. Plain numpy (+ OpenCV's
iterative undistortion), vectorised over any leading shape so joints x frames go in one call.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .camera import Calibration

# Iterative undistortion: enough iterations to converge to ~1e-12 for the distortion of
# ordinary lenses (OpenCV's default of 5 leaves sub-pixel errors near the image corners).
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)


def _undistort_normalized(distorted: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """OpenCV's iterative undistortion of normalised points (N, 2), tight criteria.

    OpenCV 4 names the variant with criteria undistortPointsIter; OpenCV 5 folds it into
    undistortPoints.
    """
    src = distorted.reshape(-1, 1, 2)
    legacy = getattr(cv2, "undistortPointsIter", None)
    if legacy is not None:
        out = legacy(src, np.eye(3), dist, np.eye(3), np.eye(3), _UNDISTORT_CRITERIA)
    else:
        out = cv2.undistortPoints(src, np.eye(3), dist, R=np.eye(3), P=np.eye(3),
                                  criteria=_UNDISTORT_CRITERIA)
    return out.reshape(-1, 2)


def project(points3d: np.ndarray, calibrations: Sequence[Calibration]) -> np.ndarray:
    """World points (..., 3) in mm to distorted pixels in every camera: (C, ..., 2)."""
    return np.stack([cal.project(points3d) for cal in calibrations])


def undistort_points(
    points2d: np.ndarray, calibration: Calibration, normalized: bool = True
) -> np.ndarray:
    """Distorted pixels (..., 2) to ideal normalised coordinates (x/z, y/z), shape (..., 2).

    With ``normalized=False`` the result is the ideal (undistorted) pixel position K @ (x, y, 1).
    NaN points stay NaN. Skew in K is honoured (K is inverted here, not inside OpenCV).
    """
    pts = np.asarray(points2d, dtype=np.float64)
    shape = pts.shape
    flat = pts.reshape(-1, 2)
    K = calibration.K
    out = np.full_like(flat, np.nan)
    ok = np.all(np.isfinite(flat), axis=1)
    if np.any(ok):
        # Distorted normalised coordinates: invert the upper-triangular K by hand.
        yd = (flat[ok, 1] - K[1, 2]) / K[1, 1]
        xd = (flat[ok, 0] - K[0, 2] - K[0, 1] * yd) / K[0, 0]
        distorted = np.stack([xd, yd], axis=-1)
        if np.any(calibration.dist):
            und = _undistort_normalized(distorted, calibration.dist)
        else:
            und = distorted
        out[ok] = und
    if not normalized:
        x, y = out[:, 0], out[:, 1]
        out = np.stack([K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2]], axis=-1)
    return out.reshape(shape)


def triangulate(
    points2d: np.ndarray,
    calibrations: Sequence[Calibration],
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Linear (DLT) triangulation from C >= 2 views: points2d (C, ..., 2) pixels -> (..., 3) mm.

    Points are undistorted first. ``weights`` (C, ...) scales each view's equations (0 or a NaN
    point drops the view); a point seen by fewer than 2 views comes back as NaN.
    """
    pts = np.asarray(points2d, dtype=np.float64)
    C = len(calibrations)
    if pts.ndim < 2 or pts.shape[0] != C or pts.shape[-1] != 2:
        raise ValueError(f"points2d must be (C={C}, ..., 2), got {pts.shape}")
    if C < 2:
        raise ValueError("triangulation needs at least 2 views")
    lead = pts.shape[1:-1]
    flat = pts.reshape(C, -1, 2)
    N = flat.shape[1]
    w = np.ones((C, N)) if weights is None else np.asarray(weights, np.float64).reshape(C, N)
    w = np.where(np.isfinite(w), w, 0.0)
    w = np.where(np.all(np.isfinite(flat), axis=-1), w, 0.0)

    # Condition the world frame: centre on the mean camera centre, scale by camera spread, so
    # the homogeneous coordinate and millimetres are of similar size inside the SVD.
    centres = np.stack([cal.center for cal in calibrations])
    origin = centres.mean(axis=0)
    scale = float(np.linalg.norm(centres - origin, axis=1).mean()) or 1.0
    denorm = np.eye(4)
    denorm[:3, :3] *= scale
    denorm[:3, 3] = origin

    A = np.zeros((N, 2 * C, 4))
    for c, cal in enumerate(calibrations):
        P = np.hstack([cal.R, cal.t[:, None]]) @ denorm
        xy = np.nan_to_num(undistort_points(flat[c], cal))
        wc = w[c][:, None]
        A[:, 2 * c] = wc * (xy[:, :1] * P[2] - P[0])
        A[:, 2 * c + 1] = wc * (xy[:, 1:] * P[2] - P[1])
    # Row normalisation keeps far and near views on an equal footing.
    norms = np.linalg.norm(A, axis=-1, keepdims=True)
    A = np.divide(A, norms, out=np.zeros_like(A), where=norms > 0)
    _, _, vt = np.linalg.svd(A)
    Xh = vt[:, -1, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        X = Xh[:, :3] / Xh[:, 3:]
    X = origin + scale * X
    X[(w > 0).sum(axis=0) < 2] = np.nan
    return X.reshape(*lead, 3)


def reprojection_error(
    points3d: np.ndarray, points2d: np.ndarray, calibrations: Sequence[Calibration]
) -> np.ndarray:
    """Pixel distances (C, ...) of points3d (..., 3) projected vs observed points2d (C, ..., 2)."""
    return np.linalg.norm(project(points3d, calibrations) - np.asarray(points2d), axis=-1)


def procrustes_align(pred: np.ndarray, gt: np.ndarray, scale: bool = True) -> np.ndarray:
    """Best similarity (rotation, translation, optional scale) of pred onto gt, per sample.

    pred, gt: (..., J, 3). Rotation is proper (no reflection). Returns aligned pred, same shape.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape or p.ndim < 2 or p.shape[-1] != 3:
        raise ValueError(f"pred and gt must both be (..., J, 3), got {p.shape} and {g.shape}")
    mu_p = p.mean(axis=-2, keepdims=True)
    mu_g = g.mean(axis=-2, keepdims=True)
    p0, g0 = p - mu_p, g - mu_g
    H = np.swapaxes(p0, -1, -2) @ g0  # (..., 3, 3)
    U, S, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    D = np.ones(S.shape)
    D[..., -1] = d
    # R maps pred onto gt: aligned = s * p0 @ R^T ... written as p0 @ M with M = U D Vt.
    M = U @ (D[..., :, None] * Vt)
    if scale:
        var = np.sum(p0 * p0, axis=(-2, -1))
        s = np.sum(S * D, axis=-1) / np.where(var > 0, var, 1.0)
    else:
        s = np.ones(p.shape[:-2])
    return s[..., None, None] * (p0 @ M) + mu_g


def unit_scale(poses: np.ndarray) -> np.ndarray:
    """Poses (N, J, 3) centred on their joint mean and scaled to unit RMS joint distance."""
    centred = poses - poses.mean(axis=1, keepdims=True)
    rms = np.sqrt((centred**2).sum(axis=2).mean(axis=1))
    return centred / np.maximum(rms, 1e-9)[:, None, None]


def pose_distance(poses_a: np.ndarray, poses_b: np.ndarray, chunk: int = 64) -> np.ndarray:
    """(A, B) mean per-joint distance of unit-scale poses after Procrustes alignment of each b
    onto each a (unitless; Pr-VIPE calls two poses the same within 0.1)."""
    a = unit_scale(np.asarray(poses_a, dtype=np.float64))
    b = unit_scale(np.asarray(poses_b, dtype=np.float64))
    out = np.zeros((len(a), len(b)))
    for start in range(0, len(a), chunk):
        qa = a[start:start + chunk]
        pa = np.broadcast_to(qa[:, None], (len(qa), len(b)) + a.shape[1:]).reshape(-1, *a.shape[1:])
        pb = np.broadcast_to(b[None], (len(qa),) + b.shape).reshape(-1, *b.shape[1:])
        aligned = procrustes_align(pb, pa)
        err = np.linalg.norm(aligned - pa, axis=-1).mean(axis=-1)
        out[start:start + chunk] = err.reshape(len(qa), len(b))
    return out


def paired_pose_distance(poses_a: np.ndarray, poses_b: np.ndarray) -> np.ndarray:
    """(N,) pose_distance of a[i] and b[i] (row by row, not all pairs)."""
    a = unit_scale(np.asarray(poses_a, dtype=np.float64))
    b = unit_scale(np.asarray(poses_b, dtype=np.float64))
    return np.linalg.norm(procrustes_align(b, a) - a, axis=-1).mean(axis=-1)


def looked_at(calibrations: Sequence[Calibration]) -> np.ndarray:
    """The world point closest (least squares) to every camera's optical axis."""
    A, b = np.zeros((3, 3)), np.zeros(3)
    for cal in calibrations:
        d = cal.R[2]  # optical axis in world coordinates
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ cal.center
    return np.linalg.lstsq(A, b, rcond=None)[0]
