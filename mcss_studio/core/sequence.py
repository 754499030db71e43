"""MultiviewSequence: synchronised cameras of one recording, with optional calibration and 3D."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .camera import Calibration
from .errors import UserInputError
from .framesource import FrameSource


@dataclass
class CameraView:
    """One camera of a recording. Synchronised frame t is native frame t + offset."""

    name: str
    source: FrameSource
    offset: int = 0
    calibration: Calibration | None = None

    @property
    def width(self) -> int:
        return self.source.width

    @property
    def height(self) -> int:
        return self.source.height

    @property
    def fps(self) -> float:
        return self.source.fps

    @property
    def frames(self) -> int:
        """Native frame count of this camera's file."""
        return self.source.frame_count


@dataclass
class MultiviewSequence:
    """Synchronised multi-camera recording.

    joints3d is (T, 17, 3) in mm, world frame, Human3.6M order, indexed by synchronised frame;
    boxes is (C, T, 4) person boxes x0, y0, x1, y1 in each camera's native pixels (NaN = none).
    """

    path: Path
    name: str
    cameras: list[CameraView]
    num_frames: int
    fps: float
    joints3d: np.ndarray | None = None
    boxes: np.ndarray | None = None
    subject: str | None = None
    action: str | None = None
    warnings: list[str] = field(default_factory=list)

    # -- identity -----------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Stable, filesystem-safe identifier used for cache folders."""
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in self.name)[:60]
        digest = hashlib.sha1(str(Path(self.path).resolve()).encode()).hexdigest()[:8]
        return f"{safe}-{digest}"

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def has_3d(self) -> bool:
        return self.joints3d is not None

    @property
    def is_calibrated(self) -> bool:
        return all(c.calibration is not None for c in self.cameras)

    def camera_index(self, camera: int | str) -> int:
        if isinstance(camera, (int, np.integer)):
            if not 0 <= int(camera) < len(self.cameras):
                raise IndexError(f"camera index {camera} out of range 0..{len(self.cameras) - 1}")
            return int(camera)
        for i, c in enumerate(self.cameras):
            if c.name == camera:
                return i
        raise KeyError(f"no camera named {camera!r} in {self.path}")

    # -- frames -------------------------------------------------------------------------------
    def native_index(self, camera: int | str, t: int) -> int:
        """Native frame index in the camera's file for synchronised frame t."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} out of range 0..{self.num_frames - 1}")
        return t + self.cameras[self.camera_index(camera)].offset

    def frame(self, camera: int | str, t: int) -> np.ndarray:
        """RGB uint8 HxWx3 of synchronised frame t of a camera, frame-exact."""
        cam = self.cameras[self.camera_index(camera)]
        return cam.source.read(self.native_index(camera, t))

    def iter_frames(
        self, camera: int | str, start: int = 0, stop: int | None = None
    ) -> Iterator[np.ndarray]:
        """Sequential decode of synchronised frames [start, stop) of one camera."""
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        cam = self.cameras[self.camera_index(camera)]
        if start >= stop:
            return iter(())
        return cam.source.iter_frames(start + cam.offset, stop + cam.offset)

    def close(self) -> None:
        for c in self.cameras:
            c.source.close()

    def __enter__(self) -> MultiviewSequence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- summaries ----------------------------------------------------------------------------
    def describe(self) -> dict:
        """The `mcss-data inspect --json` document."""
        cams = []
        for c in self.cameras:
            cal = c.calibration
            cams.append(
                {
                    "name": c.name,
                    "width": c.width,
                    "height": c.height,
                    "fps": c.fps,
                    "frames": c.frames,
                    "offset": c.offset,
                    "K": None if cal is None else cal.K.tolist(),
                    "R": None if cal is None else cal.R.tolist(),
                    "t": None if cal is None else cal.t.tolist(),
                    "dist": None if cal is None else cal.dist.tolist(),
                }
            )
        return {
            "unit": "mm",
            "frames": self.num_frames,
            "has_3d": self.has_3d,
            "joints": 17,
            "cameras": cams,
            "warnings": list(self.warnings),
        }


def synchronise(
    path: Path, names: list[str], frame_counts: list[int], offsets: list[int]
) -> tuple[int, list[str]]:
    """Common synchronised range for the given per-camera counts and offsets, plus warnings."""
    if not names:
        raise UserInputError(path, "no cameras found")
    for n, off in zip(names, offsets):
        if off < 0:
            raise UserInputError(path, f"camera {n}: negative frame offset {off}")
    spans = [fc - off for fc, off in zip(frame_counts, offsets)]
    for n, fc, s in zip(names, frame_counts, spans):
        if fc <= 0:
            raise UserInputError(path, f"camera {n}: no frames")
        if s <= 0:
            raise UserInputError(path, f"camera {n}: offset leaves no frames ({fc} frames)")
    common = min(spans)
    warnings = []
    if len(set(spans)) > 1:
        detail = ", ".join(f"{n}={s}" for n, s in zip(names, spans))
        warnings.append(
            f"frame counts differ after offsets ({detail}); using the common {common} frames"
        )
    return common, warnings
