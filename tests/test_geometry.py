"""Geometry: undistortion inverts projection, DLT triangulation recovers known points from 2, 3
and 6 views (with and without distortion, with pixel noise), Procrustes recovers similarities.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mcss_studio.core.camera import Calibration
from mcss_studio.core.geometry import (
    procrustes_align,
    project,
    reprojection_error,
    triangulate,
    undistort_points,
)

DISTORTION = [-0.22, 0.09, 0.0015, -0.0008, -0.012]


def ring_cameras(n: int, distorted: bool) -> list[Calibration]:
    """n cameras on a 3.5 m ring at varied heights, looking at the capture volume.

    With fewer than 4 cameras they stand a quarter turn apart (opposite cameras would see the
    volume along nearly the same line).
    """
    cams = []
    for i in range(n):
        a = 2 * np.pi * i / max(n, 4) + 0.2
        centre = np.array([3500 * np.cos(a), 3500 * np.sin(a), 900 + 300 * (i % 3)])
        z = np.array([0.0, 0.0, 1000.0]) - centre
        z /= np.linalg.norm(z)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])
        portrait = i % 2 == 1
        w, h = (1080, 1920) if portrait else (1920, 1080)
        K = [[1500.0 + 20 * i, 0, w / 2 + 3], [0, 1500.0 + 20 * i, h / 2 - 5], [0, 0, 1]]
        dist = DISTORTION if distorted else np.zeros(5)
        cams.append(Calibration(K=K, R=R, t=-R @ centre, dist=dist, width=w, height=h))
    return cams


def poses(frames: int = 20) -> np.ndarray:
    """(frames, 17, 3) points in mm inside the volume every camera sees."""
    rng = np.random.default_rng(7)
    return rng.uniform([-500, -500, 100], [500, 500, 1900], size=(frames, 17, 3))


def test_project_matches_opencv() -> None:
    cam = ring_cameras(3, distorted=True)[1]
    X = poses(2).reshape(-1, 3)
    rvec, _ = cv2.Rodrigues(cam.R)
    expected, _ = cv2.projectPoints(X, rvec, cam.t, cam.K, cam.dist)
    np.testing.assert_allclose(project(X, [cam])[0], expected.reshape(-1, 2), atol=1e-9)


def test_undistort_inverts_distortion_including_skew() -> None:
    base = ring_cameras(1, distorted=True)[0]
    K = base.K.copy()
    K[0, 1] = 2.5
    cam = Calibration(K=K, R=base.R, t=base.t, dist=base.dist, width=1920, height=1080)
    X = poses(3)
    xc = cam.to_camera(X)
    ideal = xc[..., :2] / xc[..., 2:]
    px = cam.project(X)
    np.testing.assert_allclose(undistort_points(px, cam), ideal, atol=1e-10)
    ideal_px = undistort_points(px, cam, normalized=False)
    pinhole = Calibration(K=K, R=cam.R, t=cam.t)
    np.testing.assert_allclose(ideal_px, pinhole.project(X), atol=1e-7)
    with_nan = px.copy()
    with_nan[0, 0] = np.nan
    assert np.isnan(undistort_points(with_nan, cam)[0, 0]).all()


@pytest.mark.parametrize("views", [2, 3, 6])
@pytest.mark.parametrize("distorted", [False, True])
def test_triangulate_recovers_exact_points(views: int, distorted: bool) -> None:
    cams = ring_cameras(views, distorted)
    X = poses()
    pts = project(X, cams)
    assert pts.shape == (views, 20, 17, 2)
    got = triangulate(pts, cams)
    assert got.shape == X.shape
    np.testing.assert_allclose(got, X, atol=1e-6)
    assert reprojection_error(got, pts, cams).max() < 1e-6


@pytest.mark.parametrize("views", [2, 3, 6])
def test_triangulate_with_pixel_noise(views: int) -> None:
    cams = ring_cameras(views, distorted=True)
    X = poses(50)
    rng = np.random.default_rng(views)
    pts = project(X, cams) + rng.normal(0, 0.5, size=(views, 50, 17, 2))
    err = np.linalg.norm(triangulate(pts, cams) - X, axis=-1)
    # 0.5 px at ~1500 px focal and ~3.5 m is ~1.2 mm per view; more views average it down.
    assert np.median(err) < 2.5
    assert err.max() < 8.0
    if views == 6:
        err2 = np.linalg.norm(triangulate(pts[:2], cams[:2]) - X, axis=-1)
        assert np.mean(err) < np.mean(err2)


def test_triangulate_weights_and_missing_views() -> None:
    cams = ring_cameras(4, distorted=True)
    X = poses(5)
    pts = project(X, cams)
    pts[0] += 300.0  # a wildly wrong view...
    weights = np.ones(pts.shape[:-1])
    weights[0] = 0.0  # ...that weight 0 removes
    np.testing.assert_allclose(triangulate(pts, cams, weights), X, atol=1e-6)
    pts[0] = np.nan  # NaN points remove a view as well
    np.testing.assert_allclose(triangulate(pts, cams), X, atol=1e-6)
    pts[1, 0, 3] = np.nan  # this point is now seen by 2 views only: still fine
    pts[2, 0, 4] = np.nan
    pts[3, 0, 4] = np.nan  # this one by 1 view: NaN
    got = triangulate(pts, cams)
    np.testing.assert_allclose(got[0, 3], X[0, 3], atol=1e-6)
    assert np.isnan(got[0, 4]).all()
    assert np.isfinite(np.delete(got.reshape(-1, 3), 4, axis=0)).all()


def test_triangulate_rejects_bad_shapes() -> None:
    cams = ring_cameras(2, distorted=False)
    with pytest.raises(ValueError):
        triangulate(np.zeros((3, 5, 2)), cams)
    with pytest.raises(ValueError):
        triangulate(np.zeros((1, 5, 2)), cams[:1])


def test_reprojection_error_measures_pixel_offsets() -> None:
    cams = ring_cameras(3, distorted=True)
    X = poses(4)
    pts = project(X, cams)
    pts[1] += np.array([3.0, 4.0])
    err = reprojection_error(X, pts, cams)
    assert err.shape == (3, 4, 17)
    np.testing.assert_allclose(err[1], 5.0, atol=1e-9)
    np.testing.assert_allclose(err[[0, 2]], 0.0, atol=1e-9)


def random_rotations(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([cv2.Rodrigues(rng.normal(0, 1.5, 3))[0] for _ in range(n)])


def test_procrustes_recovers_similarity_per_sample() -> None:
    pred = poses(8)
    R = random_rotations(8, 3)
    s = np.linspace(0.5, 2.0, 8)[:, None, None]
    shift = np.random.default_rng(4).normal(0, 1000, (8, 1, 3))
    gt = s * pred @ np.swapaxes(R, 1, 2) + shift
    np.testing.assert_allclose(procrustes_align(pred, gt), gt, atol=1e-8)
    # Single pose (J, 3) works too.
    np.testing.assert_allclose(procrustes_align(pred[0], gt[0]), gt[0], atol=1e-8)


def test_procrustes_without_scale_keeps_size() -> None:
    pred = poses(3)
    R = random_rotations(3, 5)
    gt = 2.0 * pred @ np.swapaxes(R, 1, 2)
    aligned = procrustes_align(pred, gt, scale=False)
    spread = np.linalg.norm(aligned - aligned.mean(axis=1, keepdims=True), axis=-1)
    np.testing.assert_allclose(spread, np.linalg.norm(pred - pred.mean(1, keepdims=True), axis=-1))
    assert np.abs(aligned - gt).max() > 1.0


def test_procrustes_never_reflects() -> None:
    pred = poses(2)
    gt = pred * np.array([-1.0, 1.0, 1.0])  # a mirror image: only a reflection would fit it
    aligned = procrustes_align(pred, gt)
    assert np.abs(aligned - gt).max() > 1.0

    def handedness(p: np.ndarray) -> np.ndarray:
        a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
        return np.sign(np.einsum("ni,ni->n", np.cross(a, b), c))

    np.testing.assert_array_equal(handedness(aligned), handedness(pred))
