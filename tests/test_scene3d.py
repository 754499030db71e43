"""The 3D view's world geometry, on hand-computed cameras and poses."""

from __future__ import annotations

import numpy as np

from mcss_studio.core.camera import Calibration
from mcss_studio.core.pipeline import Prediction
from mcss_studio.core.scene3d import camera_frustum, display_pose, looked_at
from tests.conftest import look_at


def test_frustum_of_a_camera_at_the_origin_looking_down_z():
    # f = 100 px, principal point (50, 50), 100 x 100 image: the image corners are rays
    # (+-0.5, +-0.5, 1), so at depth 400 the far corners lie at (+-200, +-200, 400).
    K = np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    cal = Calibration(K=K, R=np.eye(3), t=np.zeros(3), width=100, height=100)
    segs = camera_frustum(cal, depth=400.0)
    assert segs.shape == (16, 3)
    np.testing.assert_allclose(segs[0::4], 0.0)  # every side starts at the centre
    corners = segs[1::4]
    np.testing.assert_allclose(corners, [[-200, -200, 400], [200, -200, 400], [200, 200, 400],
                                         [-200, 200, 400]])
    np.testing.assert_allclose(segs[3::4], np.roll(corners, -1, axis=0))  # the far rectangle


def test_frustum_moves_with_the_camera():
    K = np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    centre = np.array([1000.0, 0, 0])
    cal = Calibration(K=K, R=np.eye(3), t=-centre, width=100, height=100)
    segs = camera_frustum(cal, depth=400.0)
    np.testing.assert_allclose(segs[0], centre)
    np.testing.assert_allclose(segs[1], centre + [-200, -200, 400])


def test_rig_looks_at_the_point_its_axes_meet():
    target = np.array([300.0, -200.0, 900.0])
    cals = []
    for eye in ([4000.0, 0, 1500], [0, 4000.0, 1500], [-4000.0, 500, 1500]):
        R = look_at(np.array(eye), target)
        cals.append(Calibration(K=np.eye(3), R=R, t=-R @ np.array(eye)))
    np.testing.assert_allclose(looked_at(cals), target, atol=1e-6)


def test_uncalibrated_pose_is_turned_z_up_and_stands_on_the_floor():
    # camera frame: x right, y down, z forward; a 2-joint "pose": root at (10, 20, 30), a point
    # 100 mm above it (y = -80). Display: (x, z, -y), root moved over the origin, lowest z = 0.
    pose = np.array([[[10.0, 20, 30], [10.0, -80, 30]]])
    pred = Prediction(frame=0, pose_cam=pose, pose_world=None, points2d=np.zeros((1, 2, 2)))
    np.testing.assert_allclose(display_pose(pred), [[0, 0, 0], [0, 0, 100]])


def test_a_placed_pose_is_shown_as_it_is():
    world = np.arange(6.0).reshape(2, 3)
    pred = Prediction(frame=0, pose_cam=np.zeros((1, 2, 3)), pose_world=world,
                      points2d=np.zeros((1, 2, 2)))
    assert display_pose(pred) is world
