"""Triangulation of hand-placed joints and the label edits built on it, on exact cameras."""

from __future__ import annotations

import numpy as np
import pytest

from mcss_studio.core.camera import Calibration
from mcss_studio.core.geometry import triangulate, undistort_points
from mcss_studio.core.joints import BONES
from mcss_studio.core.label_edits import (
    accept_all,
    clear,
    from_prediction,
    outlier_views,
    place,
    refit,
    set_occluded,
)
from mcss_studio.core.labels import OCCLUDED, SOURCES, VISIBLE, FrameLabel
from mcss_studio.core.triangulate import CameraStack, check_bones, fit_joint, refine
from tests.conftest import ring_cameras, standing_pose


def two_hand_cameras() -> CameraStack:
    """A at the origin looking along +z, B 1000 mm to its right (t = -centre), f = 100 px,
    principal point (0, 0): the point (0, 0, 5000) is at (0, 0) in A and at
    100 * (0 - 1000) / 5000 = -20 px in B."""
    K = np.diag([100.0, 100.0, 1.0])
    a = Calibration(K=K, R=np.eye(3), t=np.zeros(3))
    b = Calibration(K=K, R=np.eye(3), t=np.array([-1000.0, 0.0, 0.0]))
    return CameraStack([a, b])


def test_two_hand_computed_views_give_the_point_back():
    fit = fit_joint(np.array([[0.0, 0.0], [-20.0, 0.0]]), np.array([True, True]),
                    two_hand_cameras())
    np.testing.assert_allclose(fit.point, [0.0, 0.0, 5000.0], atol=1e-6)
    np.testing.assert_allclose(fit.errors, [0.0, 0.0], atol=1e-9)
    assert fit.outlier == -1


def test_camera_stack_projects_like_each_calibration():
    cals = ring_cameras(5, 640, 480)
    cals[1] = Calibration(K=cals[1].K, R=cals[1].R, t=cals[1].t,
                          dist=np.array([-0.2, 0.05, 0.001, -0.002, 0.01]))
    points = standing_pose(1)[0]
    stack = CameraStack(cals).project(points)
    for c, cal in enumerate(cals):
        np.testing.assert_allclose(stack[c], cal.project(points), atol=1e-9)


def test_camera_stack_projects_into_chosen_views_like_into_all():
    cals = ring_cameras(5, 640, 480)
    cals[3] = Calibration(K=cals[3].K, R=cals[3].R, t=cals[3].t,
                          dist=np.array([-0.2, 0.05, 0.001, -0.002, 0.01]))
    stack = CameraStack(cals)
    points = standing_pose(1)[0]
    views = np.array([False, True, False, True, True])
    np.testing.assert_array_equal(stack.project(points, views), stack.project(points)[views])


def test_camera_stack_dlt_is_the_geometry_dlt_on_normalised_points():
    """The stacked DLT (all leave-one-out subsets at once) gives what core.geometry's gives
    from the distorted pixels, view weights, dropped views and NaN clicks included."""
    cals = [Calibration(K=c.K, R=c.R, t=c.t, dist=np.array([-0.15, 0.03, 0.0005, 0.0, 0.0]))
            for c in ring_cameras(4, 640, 480)]
    stack = CameraStack(cals)
    pixels = stack.project(standing_pose(1)[0][:3]) + [[[1.5, -2.0]], [[0.0, 3.0]],
                                                       [[-1.0, 0.5]], [[2.0, 2.0]]]
    pixels[2, 1] = np.nan  # joint 1 not clicked in view 2
    weights = np.array([[1.0, 1.0, 0.0], [1.0, 0.5, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    normalized = np.stack([undistort_points(pixels[c], cal) for c, cal in enumerate(cals)])
    np.testing.assert_allclose(stack.dlt(normalized, weights),
                               triangulate(pixels, cals, weights=weights), atol=1e-9)
    one_view = stack.dlt(normalized[:, :1], np.array([[1.0], [0.0], [0.0], [0.0]]))
    assert np.all(np.isnan(one_view))


@pytest.mark.parametrize("distorted", [False, True])
def test_noise_free_clicks_recover_every_joint_within_a_micrometre(distorted):
    cals = ring_cameras(4, 640, 480)
    if distorted:
        cals = [Calibration(K=c.K, R=c.R, t=c.t, dist=np.array([-0.15, 0.03, 0.0005, 0.0, 0.0]))
                for c in cals]
    stack = CameraStack(cals)
    truth = standing_pose(1)[0]
    clicks = stack.project(truth)
    for j in range(len(truth)):
        for views in ([0, 1], [1, 2], [0, 1, 2, 3]):  # (opposite cameras: degenerate)
            usable = np.isin(np.arange(4), views)
            fit = fit_joint(clicks[:, j], usable, stack)
            np.testing.assert_allclose(fit.point, truth[j], atol=1e-6)
            assert fit.outlier == -1
            assert np.all(np.isnan(fit.errors[~usable]))


def test_refinement_lowers_the_error_of_a_disturbed_start():
    stack = CameraStack(ring_cameras(3, 640, 480))
    truth = np.array([100.0, -50.0, 1200.0])
    obs = stack.project(truth[None])[:, 0]
    start = truth + [40.0, -30.0, 25.0]
    np.testing.assert_allclose(refine(start, obs, stack, np.ones(3, bool)), truth, atol=1e-6)


def test_one_displaced_view_of_four_is_the_outlier_and_left_out():
    stack = CameraStack(ring_cameras(4, 640, 480))
    truth = np.array([50.0, 20.0, 1000.0])
    clicks = stack.project(truth[None])[:, 0]
    for bad in range(4):
        moved = clicks.copy()
        moved[bad] += [30.0, -25.0]
        fit = fit_joint(moved, np.ones(4, bool), stack)
        assert fit.outlier == bad
        np.testing.assert_allclose(fit.point, truth, atol=1e-6)
        assert fit.errors[bad] == pytest.approx(np.hypot(30, 25), abs=1e-6)
        assert not fit.used[bad]


def test_two_views_have_no_outlier_and_small_disagreement_is_not_one():
    stack = CameraStack(ring_cameras(4, 640, 480))
    clicks = stack.project(np.array([[0.0, 0.0, 1000.0]]))[:, 0]
    noisy = clicks + np.array([[1.0, -1.0], [-1.5, 0.5], [0.5, 1.0], [-0.5, -1.0]])
    assert fit_joint(noisy, np.ones(4, bool), stack).outlier == -1
    two = clicks.copy()
    two[1] += 50
    assert fit_joint(two, np.array([True, True, False, False]), stack).outlier == -1


def test_bone_check_flags_only_the_stretched_bone():
    poses = standing_pose(5)
    frame = poses[0].copy()
    frame[13] = frame[12] + (frame[13] - frame[12]) * 1.4  # l_wrist: forearm 40 % longer
    issues = check_bones(frame, poses[1:])
    assert [i.bone for i in issues] == [(12, 13)]
    assert issues[0].ratio == pytest.approx(1.4)
    assert check_bones(poses[0], poses[1:]) == []
    assert check_bones(frame, poses[:0]) == []
    assert len(BONES) == 16


def _empty(cams: int = 4) -> FrameLabel:
    return FrameLabel.empty("walk", 0, [f"cam{c}" for c in range(cams)], "S1")


def test_place_in_two_views_triangulates_and_sets_sources_and_errors():
    stack = CameraStack(ring_cameras(4, 640, 480))
    truth = standing_pose(1)[0]
    clicks = stack.project(truth)
    lab = place(_empty(), stack, 0, 10, clicks[0, 10])
    assert np.isnan(lab.joints3d[10]).all()  # one view: no 3D yet
    lab = place(lab, stack, 2, 10, clicks[2, 10])
    np.testing.assert_allclose(lab.joints3d[10], truth[10], atol=1e-6)
    assert lab.source3d[10] == SOURCES.index("triangulated")
    assert lab.source2d[2, 10] == SOURCES.index("clicked")
    assert np.nanmax(lab.error2d[:, 10]) < 1e-6 and np.isnan(lab.error2d[1, 10])


def test_occluded_views_do_not_count_and_clearing_drops_the_3d():
    stack = CameraStack(ring_cameras(4, 640, 480))
    clicks = stack.project(standing_pose(1)[0])
    lab = place(place(_empty(), stack, 0, 3, clicks[0, 3]), stack, 1, 3, clicks[1, 3])
    hidden = set_occluded(lab, stack, 1, 3)
    assert hidden.visibility[1, 3] == OCCLUDED and np.isnan(hidden.joints3d[3]).all()
    assert np.isnan(clear(lab, stack, 3).joints3d[3]).all()
    assert clear(lab, stack, 3).visibility[:, 3].sum() == 0


def test_uncalibrated_keeps_2d_and_refit_later_adds_3d():
    stack = CameraStack(ring_cameras(4, 640, 480))
    truth = standing_pose(1)[0]
    clicks = stack.project(truth)
    lab = _empty()
    for v in (0, 1):
        lab = place(lab, None, v, 0, clicks[v, 0])
    assert lab.visibility[[0, 1], 0].tolist() == [VISIBLE, VISIBLE]
    assert np.isnan(lab.joints3d).all()
    np.testing.assert_allclose(refit(lab, stack).joints3d[0], truth[0], atol=1e-6)


def test_outlier_is_remembered_through_the_errors():
    stack = CameraStack(ring_cameras(4, 640, 480))
    clicks = stack.project(standing_pose(1)[0])
    lab = _empty()
    for v in range(4):
        lab = place(lab, stack, v, 5, clicks[v, 5] + ([40.0, 0.0] if v == 2 else 0.0))
    assert lab.extra["outliers"] == {5: 2}
    assert outlier_views(lab)[:, 5].tolist() == [False, False, True, False]


def test_prediction_fills_only_free_joints_and_accept_all_completes_the_frame():
    stack = CameraStack(ring_cameras(4, 640, 480))
    truth = standing_pose(1)[0]
    clicks = stack.project(truth)
    lab = place(_empty(), stack, 0, 1, clicks[0, 1] + 3.0)
    lab = set_occluded(lab, stack, 3, 2)
    pred = from_prediction(lab, clicks, truth + 5.0, stack)
    np.testing.assert_array_equal(pred.points2d[0, 1], clicks[0, 1] + 3.0)  # kept
    assert pred.visibility[3, 2] == OCCLUDED and pred.source2d[1, 4] == SOURCES.index("model")
    np.testing.assert_allclose(pred.joints3d[4], truth[4] + 5.0)
    two = place(place(_empty(), stack, 0, 1, clicks[0, 1]), stack, 1, 1, clicks[1, 1])
    two = set_occluded(two, stack, 3, 1)
    done = accept_all(two, stack)
    assert done.visibility[:, 1].tolist() == [VISIBLE, VISIBLE, VISIBLE, OCCLUDED]
    np.testing.assert_allclose(done.points2d[2, 1], clicks[2, 1], atol=1e-6)
    assert done.source2d[2, 1] == SOURCES.index("triangulated")
    assert (done.visibility[:, 0] == 0).all()  # no 3D, nothing to accept
