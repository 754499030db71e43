"""Static camera rig and the room it films: calibrations, per-pixel rays and textured backgrounds.

Like Human3.6M, cameras stand around the capture volume at different heights and distances and
look at its centre. Each gets a slightly different lens (focal length, principal point, mild
barrel distortion), white balance, exposure and vignetting. The room (tiled floor with a capture
mat, four differently decorated walls, ceiling) is ray cast once per camera and cached, so every
view has its own static background.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import Calibration
from .motion import VOLUME_RADIUS_MM

ROOM_HALF_MM = 6500.0
ROOM_HEIGHT_MM = 3400.0
MAX_CAMERAS = 12


@dataclass
class CameraView:
    """One rendered camera: calibration plus everything cached for fast per-frame rendering."""

    name: str
    calibration: Calibration
    rays: np.ndarray  # (H, W, 3) float32 unit ray directions in camera coordinates
    background: np.ndarray  # (H, W, 3) float32 0..255, already with gain and vignetting
    floor_xy: np.ndarray  # (H, W, 2) float32 world floor point per pixel, NaN elsewhere
    gain: np.ndarray  # (H, W, 3) float32 white balance x exposure x vignetting
    noise: np.ndarray  # (B, H, W, 3) float32 sensor-noise bank

    @property
    def width(self) -> int:
        return self.rays.shape[1]

    @property
    def height(self) -> int:
        return self.rays.shape[0]


def look_at(center: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """World->camera rotation (OpenCV axes: x right, y down, z forward) looking at target."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.array([0.0, 0.0, 1.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    c, s = np.cos(roll), np.sin(roll)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R


def camera_layout(count: int, width: int, height: int, seed: int) -> list[tuple[str, Calibration]]:
    """`count` cameras around the volume, each framing all of it (the person stays in view)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31337]))
    base = rng.uniform(0, 2 * np.pi)
    heights = (1100.0, 2300.0, 1500.0, 2700.0, 900.0, 1900.0)
    out = []
    for i in range(count):
        azimuth = base + 2 * np.pi * (i + 0.5) / count + rng.uniform(-0.15, 0.15)
        distance = rng.uniform(4300.0, 5600.0)
        z = heights[i % len(heights)] + rng.uniform(-150, 150)
        center = np.array([distance * np.cos(azimuth), distance * np.sin(azimuth), z])
        target = np.array([rng.uniform(-200, 200), rng.uniform(-200, 200), rng.uniform(800, 1000)])
        R = look_at(center, target, np.radians(rng.uniform(-2.0, 2.0)))
        t = -R @ center
        # the focal length that keeps the whole capture cylinder (plus a body's reach) in frame
        ang = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        reach = VOLUME_RADIUS_MM + 350.0
        ring = np.stack([reach * np.cos(ang), reach * np.sin(ang), np.zeros_like(ang)], -1)
        pts = np.concatenate([ring, ring + [0.0, 0.0, 2200.0]])
        cam = pts @ R.T + t
        xn, yn = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
        cx = width / 2 + rng.uniform(-0.015, 0.015) * width
        cy = height / 2 + rng.uniform(-0.015, 0.015) * height
        f = min(
            (min(cx, width - cx) * 0.94) / np.abs(xn).max(),
            (min(cy, height - cy) * 0.94) / np.abs(yn).max(),
        )
        aspect = rng.uniform(0.995, 1.005)
        K = np.array([[f, 0.0, cx], [0.0, f * aspect, cy], [0.0, 0.0, 1.0]])
        dist = np.array([rng.uniform(-0.06, 0.0), rng.uniform(0.0, 0.01), 0.0, 0.0, 0.0])
        out.append((f"cam{i}", Calibration(K, R, t, dist, width, height)))
    return out


def pixel_rays(cal: Calibration, width: int, height: int) -> np.ndarray:
    """Unit ray direction through every pixel centre, distortion removed (camera coordinates)."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pts = np.stack([u, v], -1).reshape(-1, 1, 2)
    norm = cv2.undistortPoints(pts, cal.K, cal.dist).reshape(height, width, 2)
    rays = np.concatenate([norm, np.ones((height, width, 1))], -1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    return rays.astype(np.float32)


def _hash(*ints: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer tuple (texture cells)."""
    h = np.zeros(np.broadcast(*ints).shape, dtype=np.uint64)
    for k, v in enumerate(ints):
        h ^= np.asarray(v).astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B9 + k * 7919)
        h *= np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
    return (h % np.uint64(1 << 24)).astype(np.float64) / float(1 << 24)


@dataclass(frozen=True)
class Room:
    """Colours and decorations of the room, drawn from the dataset seed."""

    floor: np.ndarray
    mat: np.ndarray
    walls: np.ndarray  # (4, 3)
    rects: np.ndarray  # (4, 4, 7): per wall, per decoration: u0, u1, z0, z1, r, g, b
    seed: int

    @staticmethod
    def sample(seed: int) -> Room:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 4242]))
        walls = np.array([[214, 206, 188], [176, 196, 180], [196, 198, 206], [222, 200, 176]])
        walls = walls[rng.permutation(4)] * rng.uniform(0.9, 1.05, size=(4, 1))
        rects = np.zeros((4, 4, 7))
        for w in range(4):
            for k in range(4):
                u0 = rng.uniform(-ROOM_HALF_MM + 300, ROOM_HALF_MM - 1800)
                width = rng.uniform(700, 1700)
                z0 = rng.uniform(0, 1300) if k else 0.0
                z1 = z0 + rng.uniform(600, 1800) if k else 2100.0  # k == 0: a door
                rects[w, k] = (u0, u0 + width, z0, z1, *rng.uniform(40, 230, size=3))
        return Room(
            floor=np.array([150.0, 140.0, 128.0]) * rng.uniform(0.85, 1.1, size=3),
            mat=np.array([70.0, 85.0, 110.0]) * rng.uniform(0.8, 1.2, size=3),
            walls=walls,
            rects=rects,
            seed=seed,
        )


def render_room(
    room: Room, cal: Calibration, rays_cam: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Ray cast the room: (H,W,3) float colours 0..255 and (H,W,2) floor xy (NaN off the floor)."""
    H, W = rays_cam.shape[:2]
    d = rays_cam.reshape(-1, 3).astype(np.float64) @ cal.R  # camera -> world directions
    o = cal.center
    with np.errstate(divide="ignore", invalid="ignore"):
        t_planes = np.stack(
            [
                np.where(d[:, 2] < 0, -o[2] / d[:, 2], np.inf),  # floor
                np.where(d[:, 2] > 0, (ROOM_HEIGHT_MM - o[2]) / d[:, 2], np.inf),  # ceiling
                np.where(d[:, 0] > 0, (ROOM_HALF_MM - o[0]) / d[:, 0], np.inf),  # wall +x
                np.where(d[:, 0] < 0, (-ROOM_HALF_MM - o[0]) / d[:, 0], np.inf),  # wall -x
                np.where(d[:, 1] > 0, (ROOM_HALF_MM - o[1]) / d[:, 1], np.inf),  # wall +y
                np.where(d[:, 1] < 0, (-ROOM_HALF_MM - o[1]) / d[:, 1], np.inf),  # wall -y
            ],
            1,
        )
    which = np.argmin(t_planes, axis=1)
    t = t_planes[np.arange(len(d)), which]
    p = o + d * t[:, None]
    color = np.zeros((len(d), 3))

    floor = which == 0
    fx, fy = p[floor, 0], p[floor, 1]
    tile = 600.0
    ix, iy = np.floor(fx / tile), np.floor(fy / tile)
    shade = 0.88 + 0.2 * _hash(ix, iy, room.seed)
    grout = np.minimum(np.mod(fx, tile), np.mod(fy, tile)) < 14.0
    c = room.floor[None] * shade[:, None]
    c[grout] *= 0.6
    on_mat = (np.abs(fx) < 2200) & (np.abs(fy) < 2200)
    c[on_mat] = room.mat[None] * (0.95 + 0.1 * _hash(np.floor(fx[on_mat] / 97), 3, 1)[:, None])
    tape = on_mat & (
        (np.abs(np.abs(fx) - 2150) < 30)
        | (np.abs(np.abs(fy) - 2150) < 30)
        | ((np.abs(fx) < 20) & (np.abs(fy) < 300))
        | ((np.abs(fy) < 20) & (np.abs(fx) < 300))
    )
    c[tape] = (235.0, 225.0, 90.0)
    r = np.hypot(fx, fy)
    color[floor] = c * (1.05 - 0.25 * np.clip(r / 7000.0, 0, 1))[:, None]

    ceiling = which == 1
    cx_, cy_ = p[ceiling, 0], p[ceiling, 1]
    panel = (np.mod(cx_, 1200) < 600) ^ (np.mod(cy_, 1200) < 600)
    color[ceiling] = np.where(panel[:, None], 238.0, 215.0)

    for w, plane in enumerate((2, 3, 4, 5)):
        sel = which == plane
        if not sel.any():
            continue
        u = p[sel, 1] if plane in (2, 3) else p[sel, 0]
        z = p[sel, 2]
        c = np.broadcast_to(room.walls[w], (sel.sum(), 3)).copy()
        seam = np.mod(u, 1250.0)
        c *= (0.94 + 0.06 * (seam / 1250.0))[:, None]
        c[seam < 12] *= 0.8
        for u0, u1, z0, z1, *rgb in room.rects[w]:
            inside = (u > u0) & (u < u1) & (z > z0) & (z < z1)
            frame = inside & ((u < u0 + 40) | (u > u1 - 40) | (z < z0 + 40) | (z > z1 - 40))
            c[inside] = rgb
            c[frame] = np.asarray(rgb) * 0.5
        c[z < 110] = (60.0, 55.0, 50.0)  # skirting board
        c[np.abs(z - 1000) < 18] *= 0.75  # dado rail
        color[sel] = c * (0.8 + 0.2 * np.clip(z / ROOM_HEIGHT_MM, 0, 1))[:, None]

    floor_xy = np.full((len(d), 2), np.nan)
    floor_xy[floor] = p[floor, :2]
    return color.reshape(H, W, 3), floor_xy.reshape(H, W, 2).astype(np.float32)


def build_view(
    name: str, cal: Calibration, room: Room, seed: int, index: int, noise_sigma: float = 2.2
) -> CameraView:
    """Everything static about one camera, computed once per dataset."""
    W, H = int(cal.width), int(cal.height)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 555, index]))
    rays = pixel_rays(cal, W, H)
    room_rgb, floor_xy = render_room(room, cal, rays)
    room_rgb = cv2.GaussianBlur(room_rgb, (3, 3), 0.6)
    balance = rng.uniform(0.92, 1.08, size=3) * rng.uniform(0.88, 1.1)
    yy, xx = np.mgrid[0:H, 0:W]
    r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
    vignette = 1.0 - rng.uniform(0.1, 0.25) * r2 / 2
    gain = (vignette[..., None] * balance[None, None]).astype(np.float32)
    noise = rng.normal(0.0, noise_sigma, size=(8, H, W, 3)).astype(np.float32)
    return CameraView(
        name=name,
        calibration=cal,
        rays=rays,
        background=(room_rgb * gain).astype(np.float32),
        floor_xy=floor_xy,
        gain=gain,
        noise=noise,
    )
