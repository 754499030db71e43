"""What the 3D view shows, as world geometry (mm, z up): camera frusta, the point a rig looks at,
the points to frame, and the pose to draw for a prediction.

Plain numpy, no Qt: the Studio's 3D view only draws what is computed here, and the coming
embedding-map and labelling panels can place things in the same world.
"""

from __future__ import annotations

import numpy as np

from .framing import standing_person
from .geometry import looked_at
from .pipeline import Prediction


def camera_frustum(cal, depth: float = 400.0) -> np.ndarray:
    """Line segments (16, 3) of a camera's viewing pyramid, in world mm."""
    w = cal.width or 2 * cal.K[0, 2]
    h = cal.height or 2 * cal.K[1, 2]
    corners_px = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    rays = np.linalg.solve(cal.K, np.c_[corners_px, np.ones(4)].T).T * depth
    corners = (rays - cal.t) @ cal.R  # R^T (x - t)
    c = cal.center
    segs = []
    for i in range(4):
        segs += [c, corners[i], corners[i], corners[(i + 1) % 4]]
    return np.asarray(segs)


def scene_points(seq) -> tuple[np.ndarray | None, np.ndarray, float]:
    """(rig points: camera centres and frusta, or None; points the person takes up over the
    sequence; side of the floor grid), in world mm, for core.framing. With nothing open, the
    grid is the rig."""
    grid = 4000.0
    if seq is None:
        corners = np.array([[x, y, 0.0] for x in (-grid / 2, grid / 2) for y in (-grid / 2,
                                                                              grid / 2)])
        return corners, standing_person(np.zeros(3)), grid
    if not seq.is_calibrated:
        return None, standing_person(np.zeros(3)), grid  # the pose is shown centred
    cals = [c.calibration for c in seq.cameras]
    centres = np.stack([c.center for c in cals])
    rig = np.concatenate([centres, *[camera_frustum(c) for c in cals]])
    grid = float(np.ptp(centres[:, :2], axis=0).max()) * 1.2 + 1000
    person = standing_person(looked_at(cals) if len(cals) >= 2 else np.zeros(3))
    if seq.joints3d is not None and np.isfinite(seq.joints3d).any():
        person = np.asarray(seq.joints3d, dtype=np.float64)  # where it walks, all frames
    return rig, person, grid


def display_pose(pred: Prediction) -> np.ndarray:
    """World pose when placed, else camera 0's pose centred with z up and feet on the floor."""
    if pred.pose_world is not None:
        return pred.pose_world
    p = pred.pose_cam[0]
    q = np.stack([p[:, 0], p[:, 2], -p[:, 1]], axis=1)
    q = q - np.array([q[0, 0], q[0, 1], q[:, 2].min()])
    return q
