"""Framing a 3D scene for a perspective view: which sphere to show and from how far.

A framing is a sphere (centre, radius) in world mm. `Framing.distance` is how far from the
centre a pinhole camera with a given vertical field of view and aspect ratio must stand so that
the whole sphere is in view whatever direction it looks from: the sphere is seen under a half
angle asin(r / d), which must not exceed the narrower of the view's two half angles. Plain numpy,
no Qt, so the 3D view only applies what is computed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAME_MARGIN = 1.08  # a little air around the sphere, so nothing touches the border
PERSON_HEIGHT_MM = 1800.0  # a standing adult, for framing when no 3D joints are known
PERSON_WIDTH_MM = 1000.0


@dataclass(frozen=True)
class Framing:
    """A sphere to keep in view: centre (3,) and radius, world mm."""

    centre: np.ndarray
    radius: float

    def distance(self, fov_deg: float, aspect: float = 1.0, margin: float = FRAME_MARGIN) -> float:
        """Camera-to-centre distance at which the sphere fills the view without leaving it.

        fov_deg is the vertical field of view, aspect = width / height of the view.
        """
        if not 0.0 < fov_deg < 180.0 or aspect <= 0:
            raise ValueError(f"need 0 < fov < 180 and aspect > 0, got {fov_deg}, {aspect}")
        half_v = math.radians(fov_deg) / 2
        half_h = math.atan(math.tan(half_v) * aspect)
        return margin * max(self.radius, 1.0) / math.sin(min(half_v, half_h))


def bounding_sphere(points: np.ndarray) -> Framing:
    """The sphere around the finite points (..., 3): centred on their axis-aligned box, with
    the radius of the farthest point (never smaller than the true minimal sphere, at most
    sqrt(3) times larger, and stable as points are added inside it)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        raise ValueError("no finite points to frame")
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    radius = float(np.linalg.norm(pts - centre, axis=1).max())
    return Framing(centre, radius)


def standing_person(floor_point: np.ndarray) -> np.ndarray:
    """(8, 3) corners of the box a standing person takes up with feet at floor_point (z up)."""
    x, y = float(floor_point[0]), float(floor_point[1])
    half = PERSON_WIDTH_MM / 2
    return np.array([[x + dx, y + dy, z] for dx in (-half, half) for dy in (-half, half)
                     for z in (0.0, PERSON_HEIGHT_MM)])


def rig_and_person(camera_points: np.ndarray | None,
                   person_points: np.ndarray) -> tuple[Framing, Framing]:
    """(whole rig and the person, the person alone). Without cameras both frame the person."""
    person = bounding_sphere(person_points)
    if camera_points is None or len(camera_points) == 0:
        return person, person
    both = np.concatenate([np.asarray(camera_points, np.float64).reshape(-1, 3),
                           np.asarray(person_points, np.float64).reshape(-1, 3)])
    return bounding_sphere(both), person
