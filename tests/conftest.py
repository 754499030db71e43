"""Shared fixtures: tiny recordings written at test time."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mcss_studio.core.camera import Calibration
from tests.videofixtures import write_image_folder


def pattern_frame(index: int, width: int, height: int, camera: int = 0) -> np.ndarray:
    """An RGB frame whose content identifies (camera, index) and varies smoothly."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = (xx * 3 + index * 7) % 256
    img[..., 1] = (yy * 3 + camera * 40) % 256
    img[..., 2] = ((xx + yy) // 4 * 16 + index * 5) % 256
    x = (index * 3) % max(1, width - 8)
    img[4:12, x : x + 8] = 255
    return img


def write_mp4v(path: Path, frames: int, width: int, height: int, fps: float = 25.0,
               camera: int = 0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.cvtColor(pattern_frame(i, width, height, camera), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_pattern_folder(folder: Path, frames: int, width: int, height: int, camera: int = 0
                         ) -> Path:
    """An image-folder camera of pattern frames."""
    stack = np.stack([pattern_frame(i, width, height, camera) for i in range(frames)])
    return write_image_folder(folder, stack, pattern="frame{}")


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World->camera rotation (OpenCV axes) for a camera at eye looking at target, z up."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(forward, right), forward])


def ring_cameras(n: int, width: int = 64, height: int = 48, radius: float = 4000.0
                 ) -> list[Calibration]:
    """n cameras on a circle looking at the origin (z up), 1.5 m high."""
    cams = []
    f = 1.2 * max(width, height)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    for i in range(n):
        a = 2 * np.pi * i / n
        centre = np.array([radius * np.cos(a), radius * np.sin(a), 1500.0])
        R = look_at(centre, np.zeros(3))
        cams.append(Calibration(K=K, R=R, t=-R @ centre, width=width, height=height))
    return cams


def standing_pose(T: int) -> np.ndarray:
    """(T, 17, 3) mm: a rough standing skeleton near the origin, drifting slowly."""
    base = np.array([
        [0, 0, 900], [-120, 0, 900], [-120, 0, 480], [-120, 0, 80], [120, 0, 900],
        [120, 0, 480], [120, 0, 80], [0, 0, 1150], [0, 0, 1400], [0, 0, 1500], [0, 0, 1650],
        [170, 0, 1400], [200, 0, 1130], [220, 0, 880], [-170, 0, 1400], [-200, 0, 1130],
        [-220, 0, 880],
    ], dtype=np.float64)
    drift = np.linspace(0, 200, T)[:, None, None] * np.array([1.0, 0.5, 0.0])
    return base[None] + drift


@pytest.fixture
def make_recording(tmp_path: Path):
    """Factory: a recording folder with `cameras` mp4v videos, optional calibration and 3D."""

    def make(
        name: str = "rec",
        cameras: int = 3,
        frames: int | list[int] = 12,
        size: tuple[int, int] = (64, 48),
        calibration: bool = True,
        joints: bool = True,
        fps: float = 25.0,
    ) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        counts = frames if isinstance(frames, list) else [frames] * cameras
        w, h = size
        for c in range(cameras):
            write_mp4v(folder / f"cam{c}.mp4", counts[c], w, h, fps=fps, camera=c)
        if calibration:
            doc = {"cameras": {f"cam{c}": {**cal.to_dict(), "size": [w, h]}
                               for c, cal in enumerate(ring_cameras(cameras, w, h))}}
            (folder / "calibration.json").write_text(json.dumps(doc))
        if joints:
            np.savez(folder / "joints3d.npz", joints3d=standing_pose(min(counts)))
        return folder

    return make


@pytest.fixture
def private_studio_dirs(tmp_path, monkeypatch):
    """The Studio's cache and settings in the test's folder; tests choose their checkpoints, so
    the demo checkpoint shipped in assets/ is never picked up."""
    monkeypatch.setenv("MCSS_STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MCSS_STUDIO_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setattr("mcss_studio.gui.session.find_demo_checkpoint", lambda: None)


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook
    """After a run that included tests/test_faults.py: the table of fault cases tried and held."""
    import sys

    faultlib = sys.modules.get("tests.faultlib")
    if faultlib is not None and faultlib.TABLE:
        terminalreporter.write_sep("=", "fault injection: cases tried and held")
        terminalreporter.write_line(faultlib.format_table())


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory):
    """The tiny synthetic dataset and a checkpoint trained on it until the same instant in
    another camera is its nearest neighbour for most crops (tests/trained_fixtures.py)."""
    from tests.trained_fixtures import train_tiny

    return train_tiny(tmp_path_factory.mktemp("trained"))
