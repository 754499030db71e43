"""Tiny in-memory multi-view data for tests and smoke runs: stick figures rendered into crops.

Not a benchmark (that is `mcss_studio.core.synth`); just enough signal that losses can fall and
every code path (multi-view sampling, labels, evaluation) runs without files.
"""

from __future__ import annotations

import cv2
import numpy as np

from mcss_studio.core.joints import BONES

from .data import SequenceData

_REST = np.array([
    [0, 0, 0], [-120, 0, 0], [-120, -450, 0], [-120, -880, 0], [120, 0, 0], [120, -450, 0],
    [120, -880, 0], [0, 230, 0], [0, 480, 0], [0, 580, 30], [0, 680, 0], [170, 450, 0],
    [420, 450, 0], [650, 450, 0], [-170, 450, 0], [-420, 450, 0], [-650, 450, 0],
], dtype=np.float64)


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def fake_poses(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(T, 17, 3) smooth random motion in mm, world frame (y up), root near the origin."""
    t = np.arange(frames)[:, None, None]
    freq = rng.uniform(0.02, 0.12, size=(1, 17, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(1, 17, 3))
    amp = rng.uniform(50, 250, size=(1, 17, 3))
    amp[:, 0] = 0
    poses = _REST[None] + amp * np.sin(freq * t + phase)
    yaw = rng.uniform(0, 2 * np.pi) + 0.03 * np.arange(frames)
    return np.einsum("tij,tkj->tki", np.stack([_yaw(a) for a in yaw]), poses)


def fake_cameras(num_cameras: int, radius: float = 4000.0) -> tuple[np.ndarray, np.ndarray]:
    """World->camera rotations (C, 3, 3) and translations (C, 3) on a circle, looking inwards."""
    rotations, translations = [], []
    for c in range(num_cameras):
        angle = 2 * np.pi * c / num_cameras
        centre = np.array([radius * np.sin(angle), 0.0, radius * np.cos(angle)])
        forward = -centre / np.linalg.norm(centre)  # camera z axis in world
        down = np.array([0.0, -1.0, 0.0])  # camera y points down in the image
        right = np.cross(down, forward)
        r = np.stack([right, down, forward])
        rotations.append(r)
        translations.append(-r @ centre)
    return np.stack(rotations), np.stack(translations)


def render_crops(poses_cam: np.ndarray, size: int, background: tuple[int, int, int]) -> np.ndarray:
    """Root-relative camera-frame poses (T, 17, 3) -> uint8 (T, S, S, 3) stick figures."""
    focal = size / 2200.0 * 4000.0
    depth = 4000.0
    crops = np.empty((len(poses_cam), size, size, 3), np.uint8)
    for i, p in enumerate(poses_cam):
        img = np.empty((size, size, 3), np.uint8)
        img[:] = background
        uv = p[:, :2] * focal / (depth + p[:, 2:3]) + (size - 1) / 2
        pts = np.round(uv * 4).astype(np.int32)
        for a, b in BONES:  # one colour: left and right look alike, as on people (flips stay valid)
            cv2.line(img, tuple(pts[a]), tuple(pts[b]), (230, 230, 230), max(1, size // 24),
                     cv2.LINE_AA, 2)
        crops[i] = img
    return crops


def fake_sequences(
    subjects: list[str], per_subject: int = 1, frames: int = 40, cameras: int = 3,
    size: int = 32, seed: int = 0,
) -> list[SequenceData]:
    """Sequences named <subject>_<k> with joints3d, calibration and rendered crops."""
    rng = np.random.default_rng(seed)
    rotations, translations = fake_cameras(cameras)
    out = []
    for subject in subjects:
        for k in range(per_subject):
            joints = fake_poses(rng, frames)
            background = tuple(int(v) for v in rng.integers(0, 120, 3))
            data = SequenceData(name=f"{subject}_{k}", subject=subject, crops=[],
                                camera_names=[f"cam{c}" for c in range(cameras)],
                                rotations=rotations, translations=translations, joints3d=joints)
            for c in range(cameras):
                pose = data.pose_cam(joints, np.full(frames, c))
                data.crops.append(render_crops(pose, size, background))
            out.append(data)
    return out
