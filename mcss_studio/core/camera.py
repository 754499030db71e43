"""Pinhole camera with OpenCV distortion: x_cam = R @ X_world + t, t in millimetres."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """K in pixels, R world->camera, t in mm, OpenCV distortion (k1, k2, p1, p2, k3)."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        dist = np.zeros(5, dtype=np.float64)
        d = np.zeros(0) if self.dist is None else np.asarray(self.dist, np.float64).ravel()
        dist[: min(5, d.size)] = d[:5]
        object.__setattr__(self, "K", np.asarray(self.K, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "R", np.asarray(self.R, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "t", np.asarray(self.t, dtype=np.float64).reshape(3))
        object.__setattr__(self, "dist", dist)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (mm)."""
        return -self.R.T @ self.t

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """World points (..., 3) to camera coordinates (..., 3)."""
        p = np.asarray(points_world, dtype=np.float64)
        return p @ self.R.T + self.t

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """World points (..., 3) in mm to distorted pixel coordinates (..., 2)."""
        return self.project_camera(self.to_camera(points_world))

    def project_camera(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) to distorted pixel coordinates (..., 2)."""
        p = np.asarray(points_cam, dtype=np.float64)
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = p[..., 0] / z
            y = p[..., 1] / z
        k1, k2, p1, p2, k3 = self.dist
        if np.any(self.dist):
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
            xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        else:
            xd, yd = x, y
        K = self.K
        u = K[0, 0] * xd + K[0, 1] * yd + K[0, 2]
        v = K[1, 1] * yd + K[1, 2]
        return np.stack([u, v], axis=-1)

    def to_dict(self) -> dict:
        """Plain lists, for JSON."""
        return {
            "K": self.K.tolist(),
            "R": self.R.tolist(),
            "t": self.t.tolist(),
            "dist": self.dist.tolist(),
        }


def fit_calibration_to_image(
    cal: Calibration, width: int, height: int
) -> tuple[Calibration, str | None]:
    """Scale K when the video was resized from the calibrated resolution (warning text if so)."""
    if cal.width is None or cal.height is None or (cal.width, cal.height) == (width, height):
        return cal, None
    sx, sy = width / cal.width, height / cal.height
    K = cal.K.copy()
    K[0, :] *= sx
    K[1, :] *= sy
    scaled = Calibration(K=K, R=cal.R, t=cal.t, dist=cal.dist, width=width, height=height)
    return scaled, f"calibrated at {cal.width}x{cal.height}, video is {width}x{height}: K scaled"
