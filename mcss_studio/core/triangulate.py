"""Triangulating hand-placed joints: DLT, a short Levenberg-Marquardt refinement, the outlier view,
the reprojection error in every view, and a bone-length check against other labelled frames.

Made for labelling: one joint seen in 2..N calibrated views is re-fitted on every drag, so the
cameras are stacked once (`CameraStack`): the DLT (core.geometry.triangulate's, on the stacked
cameras, the leave-one-out subsets in one call) and every projection of a refinement step are
one vectorised call each, and a refinement projects into the views it uses only. Plain numpy.

What it guarantees: noise-free clicks in two or more views give the point back to numerical
precision; with three or more views, one view whose click disagrees with the others (its error
above `outlier_px` while the rest agree within it) is named the outlier and left out of the
point; every view with a click gets its reprojection error, the outlier's included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .camera import Calibration
from .geometry import undistort_points
from .joints import BONES

OUTLIER_PX = 10.0  # a click this far from where the other views put the joint is an outlier
REFINE_ITERATIONS = 10
# a refinement step this short (10 nm) is not tried, it ends the refinement: the steps after it
# wander at the round-off of the forward differences (~1e-6 mm for 5 to 7 more iterations, most
# of them rejected, on a 2-view drag)
CONVERGED_MM = 1e-5
BONE_TOLERANCE = 0.15  # a bone this much longer or shorter than the subject's usual is flagged
BONE_SLACK_MM = 15.0  # and at least this many mm (hand clicks on short bones)


class CameraStack:
    """The calibrations of a sequence as stacked arrays: project into every view (or chosen
    views) at once, and triangulate by DLT from all of them in one call."""

    def __init__(self, calibrations: Sequence[Calibration]) -> None:
        self.calibrations = list(calibrations)
        self.K = np.stack([c.K for c in calibrations])
        self.R = np.stack([c.R for c in calibrations])
        self.t = np.stack([c.t for c in calibrations])
        self.dist = np.stack([c.dist for c in calibrations])
        self.distorted = bool(np.any(self.dist))
        self._views: dict[bytes, _Views] = {}  # the stacked arrays of chosen views, by views
        self._all = self._subset(np.ones(len(self.calibrations), bool))
        # the DLT's world frame (as core.geometry.triangulate conditions it): centred on the
        # mean camera centre and scaled by the cameras' spread, so the homogeneous coordinate
        # and millimetres are of similar size inside the SVD; P: each view's [R|t] in it
        centres = np.stack([c.center for c in calibrations])
        self._origin = centres.mean(axis=0)
        self._scale = float(np.linalg.norm(centres - self._origin, axis=1).mean()) or 1.0
        denorm = np.eye(4)
        denorm[:3, :3] *= self._scale
        denorm[:3, 3] = self._origin
        self._P = np.concatenate([self.R, self.t[:, :, None]], axis=2) @ denorm  # (C, 3, 4)
        self._normalized: dict[int, tuple[tuple[float, float], np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.calibrations)

    def normalized_points(self, observed: np.ndarray) -> np.ndarray:
        """Distorted pixels (C, 2), one per view, to ideal normalised coordinates (C, 2) (NaN
        stays NaN). Each view's last answer is kept: while a joint is dragged in one view,
        only that view is undistorted."""
        out = np.full((len(self), 2), np.nan)
        for c, xy in enumerate(np.asarray(observed, np.float64)):
            if not np.all(np.isfinite(xy)):
                continue
            key = (float(xy[0]), float(xy[1]))
            memo = self._normalized.get(c)
            if memo is None or memo[0] != key:
                memo = (key, undistort_points(xy, self.calibrations[c]))
                self._normalized[c] = memo
            out[c] = memo[1]
        return out

    def dlt(self, normalized: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Linear triangulation (core.geometry.triangulate's, on the stacked cameras): ideal
        normalised points (C, N, 2) weighted by (C, N) (0 or a NaN point drops a view) ->
        (N, 3) mm, NaN where fewer than 2 views remain."""
        xy = np.asarray(normalized, np.float64)
        w = np.where(np.all(np.isfinite(xy), axis=-1), np.nan_to_num(weights), 0.0)
        xy = np.nan_to_num(xy)
        P = self._P[:, None]  # (C, 1, 3, 4)
        rows = np.stack([xy[..., :1] * P[..., 2, :] - P[..., 0, :],
                         xy[..., 1:] * P[..., 2, :] - P[..., 1, :]], axis=2)  # (C, N, 2, 4)
        A = (w[:, :, None, None] * rows).transpose(1, 0, 2, 3).reshape(xy.shape[1], -1, 4)
        norms = np.linalg.norm(A, axis=-1, keepdims=True)  # far and near views on a par
        A = np.divide(A, norms, out=np.zeros_like(A), where=norms > 0)
        Xh = np.linalg.svd(A)[2][:, -1, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            X = self._origin + self._scale * (Xh[:, :3] / Xh[:, 3:])
        X[(w > 0).sum(axis=0) < 2] = np.nan
        return X

    def _subset(self, views: np.ndarray) -> _Views:
        key = np.asarray(views, bool).tobytes()
        if key not in self._views:
            if len(self._views) >= 64:  # a long session meets many; the newest matter
                self._views = {k: v for k, v in self._views.items() if v is self._all}
            self._views[key] = _Views(self.K[views], self.R[views], self.t[views],
                                      self.dist[views] if self.distorted else None)
        return self._views[key]

    def project(self, points: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
        """World points (N, 3) mm -> distorted pixels (C, N, 2) in every view, or (V, N, 2)
        in the `views` chosen by a (C,) bool mask."""
        return (self._all if views is None else self._subset(views)).project(points)


class _Views:
    """Stacked K, R, t and distortion of some views, with the constants projection uses."""

    def __init__(self, K: np.ndarray, R: np.ndarray, t: np.ndarray, dist: np.ndarray | None
                 ) -> None:
        self.Rt = R.transpose(0, 2, 1)  # points @ R^T: every view's rotation in one matmul
        self.t = t[:, None]
        self.dist = None if dist is None else [dist[:, i, None] for i in range(5)]
        self.fx, self.skew, self.cx = K[:, 0, 0, None], K[:, 0, 1, None], K[:, 0, 2, None]
        self.fy, self.cy = K[:, 1, 1, None], K[:, 1, 2, None]

    def project(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float64) @ self.Rt + self.t  # (V, N, 3) camera coordinates
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]
        if self.dist is not None:
            k1, k2, p1, p2, k3 = self.dist
            r2 = x * x + y * y
            radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
            x, y = (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                    y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)
        return np.stack([self.fx * x + self.skew * y + self.cx, self.fy * y + self.cy], axis=-1)


@dataclass
class JointFit:
    """One joint: its 3D point (NaN with fewer than 2 usable views), each view's reprojection
    error in px (NaN where the view has no click), the outlier view (-1: none) and the views
    the point was fitted to."""

    point: np.ndarray
    errors: np.ndarray
    outlier: int
    used: np.ndarray


def refine(point: np.ndarray, observed: np.ndarray, cameras: CameraStack, use: np.ndarray,
           iterations: int = REFINE_ITERATIONS) -> np.ndarray:
    """Levenberg-Marquardt on the squared pixel error of the `use`d views, from `point`."""
    return _refine(point, observed, cameras, use, iterations)[0]


def _refine(point: np.ndarray, observed: np.ndarray, cameras: CameraStack, use: np.ndarray,
            iterations: int = REFINE_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """refine, and the refined point's pixels in the `use`d views (V, 2). Each trial point is
    projected with its three forward-difference probes in one call: the trial's cost and,
    once it is accepted, the Jacobian there."""
    x = np.asarray(point, np.float64).copy()
    obs = np.asarray(observed, np.float64)[use]
    step_mm = 1e-3  # forward differences: projections change smoothly at this scale
    probes = np.vstack([np.zeros(3), np.eye(3) * step_mm])
    damping = 1e-3

    def around(at: np.ndarray) -> tuple[np.ndarray, float]:
        """Pixels (V, 4, 2) of `at` and its probes in the used views; the cost at `at`."""
        p = cameras.project(at + probes, use)
        return p, float(np.sum((p[:, 0] - obs) ** 2))

    p, current = around(x)
    for _ in range(iterations):
        residual = (p[:, 0] - obs).reshape(-1)
        jac = ((p[:, 1:] - p[:, :1]) / step_mm).transpose(0, 2, 1).reshape(-1, 3)
        hess, grad = jac.T @ jac, jac.T @ residual
        while True:
            try:
                delta = np.linalg.solve(hess + damping * np.diag(np.diag(hess)), -grad)
            except np.linalg.LinAlgError:
                return x, p[:, 0]
            if np.linalg.norm(delta) < CONVERGED_MM:  # converged: no step worth trying
                return x, p[:, 0]
            trial = x + delta
            p_trial, new = around(trial)
            if np.isfinite(new) and new <= current:
                x, p, current, damping = trial, p_trial, new, max(damping / 10, 1e-9)
                break
            damping *= 10
            if damping > 1e6:
                return x, p[:, 0]
    return x, p[:, 0]


def _errors(point: np.ndarray, observed: np.ndarray, cameras: CameraStack,
            clicked: np.ndarray) -> np.ndarray:
    err = np.full(len(cameras), np.nan)
    if np.all(np.isfinite(point)):
        err[clicked] = np.linalg.norm(cameras.project(point[None])[clicked, 0]
                                      - observed[clicked], axis=-1)
    return err


def fit_joint(observed: np.ndarray, usable: np.ndarray, cameras: CameraStack,
              outlier_px: float = OUTLIER_PX) -> JointFit:
    """Triangulate one joint from its clicks `observed` (C, 2) in the `usable` views (C,)."""
    observed = np.asarray(observed, np.float64)
    use = np.asarray(usable, bool) & np.all(np.isfinite(observed), axis=-1)
    n = int(use.sum())
    if n < 2:
        return JointFit(np.full(3, np.nan), np.full(len(cameras), np.nan), -1, use)
    normalized = cameras.normalized_points(observed)
    point = cameras.dlt(normalized[:, None], use[:, None].astype(float))[0]
    if n >= 3 and np.nanmax(_errors(point, observed, cameras, use)) > outlier_px:
        outlier, best = _leave_one_out(observed, normalized, use, cameras, outlier_px)
        if outlier >= 0:
            keep = use.copy()
            keep[outlier] = False
            return JointFit(best, _errors(best, observed, cameras, use), outlier, keep)
    point, pixels = _refine(point, observed, cameras, use)
    errors = np.full(len(cameras), np.nan)
    if np.all(np.isfinite(point)):
        errors[use] = np.linalg.norm(pixels - observed[use], axis=-1)
    return JointFit(point, errors, -1, use)


def _leave_one_out(observed: np.ndarray, normalized: np.ndarray, use: np.ndarray,
                   cameras: CameraStack, outlier_px: float) -> tuple[int, np.ndarray]:
    """(the view whose removal lets the others agree within outlier_px while it does not, the
    refined point without it), or (-1, NaN) when no single view explains the disagreement.
    All leave-one-out DLTs are one call."""
    views = np.flatnonzero(use)
    weights = np.repeat(use[:, None], len(views), axis=1).astype(float)  # (C, subsets)
    weights[views, np.arange(len(views))] = 0.0
    subsets = np.repeat(normalized[:, None], len(views), axis=1)  # (C, subsets, 2)
    points = cameras.dlt(subsets, weights)  # (subsets, 3)
    projected = cameras.project(points)  # (C, subsets, 2)
    err = np.linalg.norm(projected - observed[:, None], axis=-1)  # (C, subsets)
    others = np.where(weights > 0, err, 0.0).max(axis=0)
    best = int(np.argmin(others))
    left_out = int(views[best])
    nothing = (-1, np.full(3, np.nan))
    if others[best] > outlier_px:
        return nothing
    keep = use.copy()
    keep[left_out] = False
    refined = refine(points[best], observed, cameras, keep)
    if np.linalg.norm(cameras.project(refined[None])[left_out, 0] - observed[left_out]) \
            <= outlier_px:
        return nothing
    return left_out, refined


def fit_joints(points2d: np.ndarray, usable: np.ndarray, cameras: CameraStack,
               joints: Sequence[int] | None = None,
               outlier_px: float = OUTLIER_PX) -> dict[int, JointFit]:
    """fit_joint for each of `joints` (default all) of points2d (C, J, 2), usable (C, J)."""
    todo = range(points2d.shape[1]) if joints is None else joints
    return {int(j): fit_joint(points2d[:, j], usable[:, j], cameras, outlier_px) for j in todo}


def bone_lengths(joints3d: np.ndarray) -> np.ndarray:
    """(..., bones) lengths in mm of BONES (NaN where a joint is missing)."""
    j = np.asarray(joints3d, np.float64)
    parents = [a for a, _ in BONES]
    children = [b for _, b in BONES]
    return np.linalg.norm(j[..., children, :] - j[..., parents, :], axis=-1)


@dataclass
class BoneIssue:
    bone: tuple[int, int]
    length: float
    expected: float  # median over the subject's other labelled frames

    @property
    def ratio(self) -> float:
        return self.length / self.expected


def check_bones(joints3d: np.ndarray, others: np.ndarray, tolerance: float = BONE_TOLERANCE,
                slack_mm: float = BONE_SLACK_MM) -> list[BoneIssue]:
    """Bones of joints3d (J, 3) whose length is off the median of the same bone in `others`
    (N, J, 3) by more than `tolerance` of it and `slack_mm`; bones without a reference or
    without both joints are not judged."""
    if len(others) == 0:
        return []
    lengths = bone_lengths(joints3d)
    reference = bone_lengths(np.asarray(others))
    issues = []
    for b, bone in enumerate(BONES):
        ref = reference[:, b]
        ref = ref[np.isfinite(ref)]
        if not ref.size or not np.isfinite(lengths[b]):
            continue
        expected = float(np.median(ref))
        if abs(lengths[b] - expected) > max(tolerance * expected, slack_mm):
            issues.append(BoneIssue(bone, float(lengths[b]), expected))
    return issues
