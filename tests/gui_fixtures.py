"""Tiny recordings and checkpoints for the GUI tests, generated at test time (no tests here)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from mcss_studio.core.joints import BONES
from tests.conftest import look_at

# (name, width, height): landscape, portrait and a third size, as real rigs mix them
CAMERAS = (("cam_a", 160, 120), ("cam_b", 96, 128), ("cam_c", 128, 96))


def stick_figure(t: int) -> np.ndarray:
    """(17, 3) mm standing pose that waves and walks slowly along x."""
    j = np.array([
        [0, 0, 900], [-120, 0, 900], [-120, 0, 480], [-120, 0, 60], [120, 0, 900],
        [120, 0, 480], [120, 0, 60], [0, 0, 1150], [0, 0, 1400], [0, 0, 1500], [0, 0, 1650],
        [180, 0, 1380], [350, 0, 1200], [480, 0, 1050], [-180, 0, 1380], [-350, 0, 1200],
        [-480, 0, 1050]], dtype=np.float64)
    j[13] = [300, 0, 1380 + 250 * np.sin(t / 4)]  # left wrist waves
    j[:, 0] += 8.0 * t
    return j


def make_recording(folder: Path, frames: int = 30, calibrated: bool = True,
                   cameras=CAMERAS) -> Path:
    """A recording folder: one mp4v video per camera, calibration.json, joints3d.npz."""
    folder.mkdir(parents=True, exist_ok=True)
    joints = np.stack([stick_figure(t) for t in range(frames)])
    calib = {}
    for i, (name, w, h) in enumerate(cameras):
        angle = 2 * np.pi * i / len(cameras)
        eye = np.array([3500 * np.cos(angle), 3500 * np.sin(angle), 1500.0])
        R = look_at(eye, np.array([0.0, 0.0, 900.0]))
        t_vec = -R @ eye
        f = 1.1 * max(w, h)
        K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
        calib[name] = {"K": K.tolist(), "R": R.tolist(), "t": t_vec.tolist(),
                       "dist": [0, 0, 0, 0, 0], "size": [w, h]}
        writer = cv2.VideoWriter(str(folder / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                 25.0, (w, h))
        for t in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[:] = ((40 + 30 * i) % 256, 90, 60)  # BGR background differs per camera
            img[h // 2:, :] = (70, 70, (70 + 30 * i) % 256)
            cam = (joints[t] @ R.T + t_vec)
            uv = (cam[:, :2] / cam[:, 2:]) * f + [w / 2, h / 2]
            for a, b in BONES:
                cv2.line(img, tuple(int(v) for v in uv[a]), tuple(int(v) for v in uv[b]),
                         (230, 230, 230), 3)
            cv2.putText(img, str(t), (3, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0))
            writer.write(img)
        writer.release()
    if calibrated:
        (folder / "calibration.json").write_text(json.dumps({"cameras": calib}))
        np.savez(folder / "joints3d.npz", joints3d=joints)
    return folder


def make_checkpoint(path: Path, crop_size: int = 32, meta: dict | None = None) -> Path:
    """A tiny randomly-initialised MCSS checkpoint saved by the checkpoint module (`meta` adds
    metadata, e.g. the train config the trainer stores)."""
    import torch

    from mcss_studio.core.checkpoint import save_checkpoint
    from mcss_studio.core.model import MCSSModel, ModelConfig

    torch.manual_seed(0)
    # ray_input, as training now defaults to: the Studio must pass each crop's viewing ray
    model = MCSSModel(ModelConfig(width=8, embedding_dim=16, pose_hidden=32,
                                  orientation_hidden=16, ray_input=True))
    return save_checkpoint(path, model, meta={"crop_size": crop_size, **(meta or {})})


def scene3d(view3d):
    """The 3D view's vispy scene, once everything posted to it has run (it may live on the
    render thread: read it after this, and change it only through `view3d.scene_call`)."""
    return view3d.scene_call(lambda scene: scene)
