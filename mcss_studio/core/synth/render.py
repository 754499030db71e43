"""Ray-cast the ellipsoid body into one camera's cached background.

Speed comes from three things: the room is cached per camera, rays are cast only inside the
person's projected bounding box, and all parts are tested against all those rays in one
vectorised quadratic solve (nearest hit wins: that is the occlusion). Shading is Lambertian with
a ceiling key light plus a weak fill from the camera, a contact shadow darkens the floor, a slight
blur stands in for the lens, and the sensor noise comes from a per-camera bank.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .body import HEAD_PART, Appearance, BodyShapes
from .cameras import CameraView

LIGHT_DIR = np.array([0.35, 0.25, 1.0]) / np.linalg.norm([0.35, 0.25, 1.0])
_SHADOW_JOINTS = (0, 2, 3, 5, 6)  # root, knees, feet


@dataclass
class RenderedFrame:
    """One camera's image and the tight box (x0, y0, x1, y1; x1/y1 exclusive) of the body mask."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool, body pixels
    box: np.ndarray  # (4,) float, NaN when no body pixel is visible


def _region(
    view: CameraView, centers_cam: np.ndarray, radius: np.ndarray
) -> tuple[int, ...] | None:
    """Pixel rectangle (x0, y0, x1, y1) that contains every part's projected bounding sphere."""
    cal = view.calibration
    z = centers_cam[:, 2]
    if np.any(z <= radius):
        return 0, 0, view.width, view.height  # part at or behind the camera: cast everything
    uv = cal.project_camera(centers_cam)
    r_px = cal.K[0, 0] * radius / np.sqrt(np.maximum(z * z - radius * radius, 1.0)) * 1.08 + 3
    x0 = int(np.floor((uv[:, 0] - r_px).min()))
    y0 = int(np.floor((uv[:, 1] - r_px).min()))
    x1 = int(np.ceil((uv[:, 0] + r_px).max())) + 1
    y1 = int(np.ceil((uv[:, 1] + r_px).max())) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, view.width), min(y1, view.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def cast_body(
    rays: np.ndarray, centers_cam: np.ndarray, M_cam: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest ellipsoid hit along each ray from the camera origin.

    rays (P,3) unit; centers_cam (N,3); M_cam (N,3,3) maps camera offsets to the unit sphere.
    Returns part index (P,) (-1 = miss), depth t (P,) and the hit in unit-sphere coordinates (P,3).

    The quadratic |o + t M r|^2 = 1 has coefficients a = r^T (M^T M) r and b = r . (M^T o), so
    both come from small matrix products over all rays and parts at once, without (P,N,3) arrays.
    """
    o = -np.einsum("nij,nj->ni", M_cam, centers_cam)  # camera origin in each part's sphere space
    A = np.swapaxes(M_cam, 1, 2) @ M_cam  # (N,3,3)
    quad_coef = np.stack(
        [A[:, 0, 0], A[:, 1, 1], A[:, 2, 2], 2 * A[:, 0, 1], 2 * A[:, 0, 2], 2 * A[:, 1, 2]]
    )  # (6,N)
    x, y, z = rays[:, 0], rays[:, 1], rays[:, 2]
    quad = np.stack([x * x, y * y, z * z, x * y, x * z, y * z], 1)  # (P,6)
    a = np.einsum("pk,kn->pn", quad, quad_coef)  # c_einsum: no BLAS threads to fight over
    b = np.einsum("pk,kn->pn", rays, np.einsum("nji,nj->in", M_cam, o))  # (P,N)
    c = (o * o).sum(1) - 1.0
    disc = b * b - a * c[None]
    hit = disc > 0
    t = np.where(hit, (-b - np.sqrt(np.where(hit, disc, 0.0))) / a, np.inf)
    t[t <= 0] = np.inf
    part = np.argmin(t, axis=1)
    rows = np.arange(len(rays))
    depth = t[rows, part]
    missed = ~np.isfinite(depth)
    part[missed] = -1
    d_hit = np.einsum("pij,pj->pi", M_cam[part], rays)
    local = o[part] + d_hit * np.where(missed, 0.0, depth)[:, None]
    return part, depth, local


def shade(
    part: np.ndarray,
    local: np.ndarray,
    rays: np.ndarray,
    M_cam: np.ndarray,
    stripe_axis: np.ndarray,
    look: Appearance,
    light_cam: np.ndarray,
) -> np.ndarray:
    """Colour (P,3) 0..1 of hit rays: albedo with stripes and hair, Lambert key + camera fill."""
    normal = np.einsum("pji,pj->pi", M_cam[part], local)  # M^T p' is the surface gradient
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
    albedo = look.albedo[part]
    freq = look.stripe_freq[part]
    striped = freq > 0
    if striped.any():
        along = np.einsum("pi,pi->p", local[striped], stripe_axis[part[striped]])
        second = np.sin(np.pi * freq[striped] * along) > 0.2
        albedo[striped] = np.where(
            second[:, None], look.stripe_color[part[striped]], albedo[striped]
        )
    head = part == HEAD_PART
    if head.any():
        fwd, up = local[head, 0], local[head, 2]
        hair = (fwd < -0.05) | (up > 0.55 - 0.35 * fwd)
        albedo[head] = np.where(hair[:, None], look.hair[None], albedo[head])
    key = np.clip(normal @ light_cam, 0.0, None)
    fill = np.clip(-(normal * rays).sum(-1), 0.0, None)
    light = 0.32 + 0.55 * key + 0.28 * fill
    return albedo * light[:, None]


def _contact_shadow(view: CameraView, image: np.ndarray, joints: np.ndarray) -> None:
    """Darken the floor under the body (soft blobs below root, knees and feet), in place."""
    cal = view.calibration
    lo = joints[:, :2].min(0) - 450.0
    hi = joints[:, :2].max(0) + 450.0
    corners = np.array(
        [[lo[0], lo[1], 0.0], [hi[0], lo[1], 0.0], [lo[0], hi[1], 0.0], [hi[0], hi[1], 0.0]]
    )
    cam = cal.to_camera(corners)
    if np.any(cam[:, 2] <= 1.0):
        return
    uv = cal.project(corners)
    x0, y0 = np.floor(uv.min(0)).astype(int) - 2
    x1, y1 = np.ceil(uv.max(0)).astype(int) + 3
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, view.width), min(y1, view.height)
    if x0 >= x1 or y0 >= y1:
        return
    floor = view.floor_xy[y0:y1, x0:x1]
    dark = np.zeros(floor.shape[:2], dtype=np.float32)
    for j in _SHADOW_JOINTS:
        x, y, z = joints[j]
        sigma = 110.0 + 0.25 * z
        d2 = (floor[..., 0] - x) ** 2 + (floor[..., 1] - y) ** 2
        dark += 0.35 * np.exp(-z / 900.0) * np.exp(-d2 / (2 * sigma * sigma))
    dark = np.nan_to_num(np.minimum(dark, 0.6), nan=0.0)
    image[y0:y1, x0:x1] *= (1.0 - dark)[..., None]


def _candidate_pixels(
    region_rays: np.ndarray, centers_cam: np.ndarray, M_cam: np.ndarray, focal: float
) -> np.ndarray:
    """Pixels of the region worth casting: a coarse pass on every s-th pixel, grown by one cell.

    Safe because the thinnest part (about 30 mm radius) is wider than 1.5 s pixels at the chosen
    stride s: samples s apart, projected on any direction, are at most s apart, so every part
    contains a coarse sample. This halves the work at 320x240.
    """
    h, w = region_rays.shape[:2]
    thinnest_px = focal * 30.0 / float(centers_cam[:, 2].max())
    stride = 3 if thinnest_px >= 2.25 else 2 if thinnest_px >= 1.5 else 1
    if stride == 1 or h < 4 * stride or w < 4 * stride:
        return np.ones((h, w), dtype=bool)
    coarse_rays = region_rays[::stride, ::stride]
    part, _, _ = cast_body(coarse_rays.reshape(-1, 3), centers_cam, M_cam)
    coarse = (part >= 0).reshape(coarse_rays.shape[:2]).astype(np.uint8)
    coarse = cv2.dilate(coarse, np.ones((3, 3), np.uint8))
    # sample (i, j) sits at pixel (i s, j s); a grown cell covers the pixels up to its neighbours
    full = np.repeat(np.repeat(coarse, stride, 0), stride, 1)[:h, :w]
    return full.astype(bool)


def render_frame(
    view: CameraView,
    shapes: BodyShapes,
    frame: int,
    look: Appearance,
    joints: np.ndarray,
    noise_index: int,
) -> RenderedFrame:
    """Render frame `frame` of a body into one camera: image, body mask and tight box."""
    cal = view.calibration
    image = view.background.copy()
    _contact_shadow(view, image, joints)
    centers_cam = (shapes.centers[frame] @ cal.R.T + cal.t).astype(np.float32)
    M_cam = (shapes.M[frame] @ cal.R.T).astype(np.float32)  # x_world - c = R^T (x_cam - c_cam)
    mask = np.zeros((view.height, view.width), dtype=bool)
    box = np.full(4, np.nan)
    rect = _region(view, centers_cam, shapes.radius)
    if rect is not None:
        x0, y0, x1, y1 = rect
        region_rays = view.rays[y0:y1, x0:x1]  # float32: half the memory traffic
        candidates = _candidate_pixels(region_rays, centers_cam, M_cam, cal.K[0, 0])
        rays = region_rays[candidates]
        part, _, local = cast_body(rays, centers_cam, M_cam)
        hit = part >= 0
        if hit.any():
            color = shade(
                part[hit],
                local[hit],
                rays[hit],
                M_cam,
                shapes.stripe_axis[frame],
                look,
                (cal.R @ LIGHT_DIR).astype(np.float32),
            )
            sub_mask = np.zeros(candidates.shape, dtype=bool)
            sub_mask[candidates] = hit
            region = image[y0:y1, x0:x1]
            region[sub_mask] = (color * 255.0).astype(np.float32) * view.gain[y0:y1, x0:x1][
                sub_mask
            ]
            mask[y0:y1, x0:x1] = sub_mask
            rows = np.flatnonzero(sub_mask.any(1))
            cols = np.flatnonzero(sub_mask.any(0))
            box = np.array(
                [x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], dtype=np.float64
            )
    image = cv2.GaussianBlur(image, (3, 3), 0.55)
    image += view.noise[noise_index % len(view.noise)]
    np.clip(image, 0.0, 255.0, out=image)
    return RenderedFrame(image=(image + 0.5).astype(np.uint8), mask=mask, box=box)
