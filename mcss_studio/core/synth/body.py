"""Volumetric body: ellipsoids dressed on the 17 joints, with per-subject appearance.

Every body part is an ellipsoid given by its centre c and a matrix M that maps world offsets to
the unit sphere (|M (x - c)| = 1 on the surface), which makes one vectorised ray test serve all
parts. Limbs are spheroids spanning their bone; pelvis, chest, head and feet carry their own
frame (forward, left, up) so the face, hair and shoes point the right way.

Appearance (skin, hair, clothing, sleeve length, stripes, left/right colour cues) is a function
of the subject only, so frames far apart in one take share it: that is what makes temporal
negatives hard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .motion import Skeleton

SUBJECT_ORDER: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")

PART_NAMES: tuple[str, ...] = (
    "pelvis",
    "chest",
    "neck",
    "head",
    "l_shoulder",
    "r_shoulder",
    "l_upper_arm",
    "r_upper_arm",
    "l_elbow",
    "r_elbow",
    "l_forearm",
    "r_forearm",
    "l_hand",
    "r_hand",
    "l_thigh",
    "r_thigh",
    "l_knee",
    "r_knee",
    "l_shin",
    "r_shin",
    "l_foot",
    "r_foot",
)
NUM_PARTS = len(PART_NAMES)
HEAD_PART = PART_NAMES.index("head")

_SKIN = (
    (241, 196, 168),
    (226, 174, 138),
    (199, 138, 102),
    (163, 108, 76),
    (112, 74, 52),
    (233, 184, 150),
)
_HAIR = ((38, 28, 22), (20, 18, 18), (196, 160, 96), (122, 60, 32), (140, 136, 130), (80, 52, 34))
_SHIRT = (
    (200, 40, 45),
    (30, 50, 120),
    (40, 130, 70),
    (235, 235, 230),
    (120, 120, 125),
    (230, 190, 40),
    (20, 140, 150),
    (110, 50, 140),
    (230, 120, 40),
    (35, 35, 40),
    (240, 150, 170),
    (150, 200, 230),
)
_PANTS = (
    (45, 70, 120),
    (28, 28, 32),
    (170, 150, 110),
    (105, 105, 110),
    (50, 80, 50),
    (95, 65, 45),
    (140, 40, 40),
)
_SHOES = (
    (240, 240, 240),
    (25, 25, 25),
    (200, 40, 40),
    (40, 80, 190),
    (130, 130, 130),
    (240, 200, 40),
)
_CUE_COLORS = ((250, 120, 20), (30, 200, 80), (230, 30, 170), (250, 230, 40), (20, 170, 230))


@dataclass(frozen=True)
class Appearance:
    """Per-part colours (RGB 0..1), optional stripes, girth and the left/right cue description."""

    albedo: np.ndarray  # (NUM_PARTS, 3)
    stripe_color: np.ndarray  # (NUM_PARTS, 3)
    stripe_freq: np.ndarray  # (NUM_PARTS,) stripes per unit of the part's axis; 0 = plain
    hair: np.ndarray  # (3,)
    girth: float
    cue: str  # "none", "sleeve", "shoe", "trouser"


def _pick(rng: np.random.Generator, palette: tuple, exclude: tuple = ()) -> np.ndarray:
    choices = [c for c in palette if c not in exclude]
    return np.array(choices[int(rng.integers(len(choices)))], dtype=np.float64)


def subject_seed(seed: int, subject: str) -> np.random.SeedSequence:
    """Subject identity depends on the dataset seed and the subject name only."""
    index = (
        SUBJECT_ORDER.index(subject) if subject in SUBJECT_ORDER else 100 + sum(map(ord, subject))
    )
    return np.random.SeedSequence([seed, 7919, index])


def make_appearance(rng: np.random.Generator, subject_index: int, seed: int) -> Appearance:
    """Clothing and skin for one subject; every other subject gets a left/right colour cue.

    Shirt, trousers and shoes walk through palettes permuted once per dataset seed, so subjects
    of one dataset never share a shirt colour; cue kinds and sides take turns likewise.
    """
    palettes = np.random.default_rng(np.random.SeedSequence([seed, 1234]))
    shirt_order = palettes.permutation(len(_SHIRT))
    pants_order = palettes.permutation(len(_PANTS))
    shoes_order = palettes.permutation(len(_SHOES))
    cue_offset = int(palettes.integers(3))
    skin = _pick(rng, _SKIN)
    hair = _pick(rng, _HAIR)
    shirt = np.array(_SHIRT[shirt_order[subject_index % len(_SHIRT)]], dtype=np.float64)
    pants = np.array(_PANTS[pants_order[subject_index % len(_PANTS)]], dtype=np.float64)
    shoes = np.array(_SHOES[shoes_order[subject_index % len(_SHOES)]], dtype=np.float64)
    long_sleeves = bool(rng.random() < 0.5)
    shorts = bool(rng.random() < 0.25)
    striped = bool(rng.random() < 0.35)
    turn = subject_index // 2
    cue = "none" if subject_index % 2 else ("sleeve", "shoe", "trouser")[(turn + cue_offset) % 3]
    side = "l" if (turn // 3 + turn) % 2 == 0 else "r"
    albedo = np.zeros((NUM_PARTS, 3))
    part = {name: i for i, name in enumerate(PART_NAMES)}
    for name in ("chest", "l_shoulder", "r_shoulder", "l_upper_arm", "r_upper_arm"):
        albedo[part[name]] = shirt
    for name in ("l_elbow", "r_elbow", "l_forearm", "r_forearm"):
        albedo[part[name]] = shirt if long_sleeves else skin
    for name in ("neck", "head", "l_hand", "r_hand"):
        albedo[part[name]] = skin
    for name in ("pelvis", "l_thigh", "r_thigh", "l_knee", "r_knee", "l_shin", "r_shin"):
        albedo[part[name]] = pants
    if shorts:
        for name in ("l_knee", "r_knee", "l_shin", "r_shin"):
            albedo[part[name]] = skin
    albedo[part["l_foot"]] = shoes
    albedo[part["r_foot"]] = shoes
    base = {"sleeve": shirt, "shoe": shoes, "trouser": pants}.get(cue, shirt)
    # the cue must stand out from what the other side wears
    contrast = tuple(c for c in _CUE_COLORS if np.abs(np.array(c) - base).sum() > 150)
    cue_color = _pick(rng, contrast or _CUE_COLORS)
    if cue == "sleeve":
        names = ["shoulder", "upper_arm"] + (["elbow", "forearm"] if long_sleeves else [])
        for name in names:
            albedo[part[f"{side}_{name}"]] = cue_color
    elif cue == "shoe":
        albedo[part[f"{side}_foot"]] = cue_color
    elif cue == "trouser":
        names = ["thigh"] + ([] if shorts else ["knee", "shin"])
        for name in names:
            albedo[part[f"{side}_{name}"]] = cue_color
    stripe_color = albedo.copy()
    stripe_freq = np.zeros(NUM_PARTS)
    if striped:
        second = _pick(rng, _SHIRT, exclude=(tuple(shirt.astype(int)),))
        for name in ("chest", "l_upper_arm", "r_upper_arm"):
            if albedo[part[name]].tolist() == shirt.tolist():
                stripe_color[part[name]] = second
                stripe_freq[part[name]] = 3.0
    return Appearance(
        albedo=albedo / 255.0,
        stripe_color=stripe_color / 255.0,
        stripe_freq=stripe_freq,
        hair=hair / 255.0,
        girth=float(rng.uniform(0.88, 1.2)),
        cue=cue,
    )


@dataclass
class BodyShapes:
    """Ellipsoids of every frame: centres (T,N,3), world->unit-sphere matrices (T,N,3,3),
    axis used for stripes in unit-sphere coordinates (T,N,3) and a bounding radius (N,) in mm."""

    centers: np.ndarray
    M: np.ndarray
    stripe_axis: np.ndarray
    radius: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _orthonormal(left: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(T,3,3) frame with columns forward, left, up; up is kept, left is made orthogonal."""
    up = _unit(up)
    left = _unit(left - (left * up).sum(-1, keepdims=True) * up)
    fwd = np.cross(left, up)
    return np.stack([fwd, left, up], -1)


def _framed(center: np.ndarray, frame: np.ndarray, axes: tuple[float, float, float]):
    """Ellipsoid with semi-axes along the frame's columns."""
    inv = np.diag(1.0 / np.asarray(axes))
    M = inv @ np.swapaxes(frame, -1, -2)
    stripe = np.broadcast_to(np.array([0.0, 0.0, 1.0]), center.shape)
    return center, M, stripe, max(axes)


def _spheroid(a: np.ndarray, b: np.ndarray, radius: float, overhang: float):
    """Spheroid around segment a-b, reaching `overhang` mm past each end."""
    axis = b - a
    length = np.linalg.norm(axis, axis=-1)
    u = _unit(axis)
    semi = length / 2 + overhang
    uu = u[..., :, None] * u[..., None, :]
    M = (np.eye(3) - uu) / radius + uu / semi[:, None, None]
    return (a + b) / 2, M, u, float(semi.max())


def _sphere(center: np.ndarray, radius: float):
    M = np.broadcast_to(np.eye(3) / radius, center.shape[:-1] + (3, 3))
    stripe = np.broadcast_to(np.array([0.0, 0.0, 1.0]), center.shape)
    return center, M, stripe, radius


def build_shapes(joints: np.ndarray, skel: Skeleton, girth: float) -> BodyShapes:
    """Ellipsoids for every frame of a (T,17,3) joint sequence, in the order of PART_NAMES."""
    J = np.asarray(joints, dtype=np.float64)
    s = skel.height / 1750.0
    g = s * girth
    up_world = np.broadcast_to(np.array([0.0, 0.0, 1.0]), J[:, 0].shape)
    hip_left = J[:, 4] - J[:, 1]
    sh_left = J[:, 11] - J[:, 14]
    pelvis_frame = _orthonormal(hip_left, J[:, 7] - J[:, 0])
    chest_frame = _orthonormal(sh_left, J[:, 8] - J[:, 7])
    # head frame from nose and crown: both vectors turn with the head, their cross is its left
    crown = J[:, 10] - J[:, 9]
    face = J[:, 9] - J[:, 8]
    head_left = np.cross(crown, face)
    alpha = np.arctan2(skel.head_back, skel.head_up)
    e = _unit(crown - (crown * _unit(head_left)).sum(-1, keepdims=True) * _unit(head_left))
    gdir = np.cross(_unit(head_left), e)
    head_up = np.cos(alpha) * e + np.sin(alpha) * gdir
    head_frame = _orthonormal(head_left, head_up)
    head_center = J[:, 9] + head_frame @ np.array([-48.0 * s, 0.0, 52.0 * s])

    parts = [
        _framed((J[:, 0] * 0.8 + J[:, 7] * 0.2), pelvis_frame, (100 * g, 152 * g, 132 * s)),
        _framed(
            (J[:, 7] * 0.45 + J[:, 8] * 0.55),
            chest_frame,
            (118 * g, 165 * g, 0.62 * skel.spine_up + 40 * s),
        ),
        _spheroid(J[:, 8], J[:, 8] * 0.4 + J[:, 9] * 0.6, 50 * s * girth**0.5, 20 * s),
        _framed(head_center, head_frame, (100 * s, 82 * s, 112 * s)),
    ]
    side_parts: dict[str, list] = {}
    for side, (sho, elb, wri, hip, knee, ankle) in (
        ("l", (11, 12, 13, 4, 5, 6)),
        ("r", (14, 15, 16, 1, 2, 3)),
    ):
        hand_dir = _unit(J[:, wri] - J[:, elb])
        shin_up = _unit(J[:, knee] - J[:, ankle])
        lift = np.clip((J[:, ankle, 2] - skel.ankle_height) / 150.0, 0.0, 1.0)[:, None]
        foot_up = _unit((1 - lift) * up_world + lift * shin_up)
        foot_frame = _orthonormal(hip_left, foot_up)
        foot_center = J[:, ankle] + foot_frame @ np.array([55.0 * s, 0.0, -38.0 * s])
        side_parts[side] = [
            _sphere(J[:, sho], 60 * g),
            _spheroid(J[:, sho], J[:, elb], 50 * g, 30 * s),
            _sphere(J[:, elb], 40 * g),
            _spheroid(J[:, elb], J[:, wri], 40 * g, 20 * s),
            _spheroid(J[:, wri], J[:, wri] + hand_dir * 120 * s, 38 * s, 10 * s),
            _spheroid(J[:, hip], J[:, knee], 78 * g, 45 * s),
            _sphere(J[:, knee], 55 * g),
            _spheroid(J[:, knee], J[:, ankle], 54 * g, 30 * s),
            _framed(foot_center, foot_frame, (125 * s, 48 * s, 42 * s)),
        ]
    for k in range(9):  # interleave left/right in PART_NAMES order
        parts.append(side_parts["l"][k])
        parts.append(side_parts["r"][k])
    T = J.shape[0]
    centers = np.stack([np.broadcast_to(p[0], (T, 3)) for p in parts], 1)
    M = np.stack([np.broadcast_to(p[1], (T, 3, 3)) for p in parts], 1)
    stripe = np.stack([np.broadcast_to(p[2], (T, 3)) for p in parts], 1)
    radius = np.array([p[3] for p in parts])
    return BodyShapes(centers=centers, M=M, stripe_axis=stripe, radius=radius)
