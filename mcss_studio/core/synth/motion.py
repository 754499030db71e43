"""Procedural human motion on the Human3.6M 17-joint skeleton, in world millimetres (z up).

Why procedural: no motion-capture data may be downloaded, yet the benchmark needs many distinct,
plausible poses with exact 3D ground truth. Each action is a small set of smooth joint-angle
curves (degrees) driven by a phase; forward kinematics turns them into joints. Angles are clipped
to anatomical limits, the lower foot is kept on the floor and the root travels through the
capture volume, so every take differs in pose, place and heading.

Body-local frame: x forward, y left, z up; the root (pelvis centre) is the origin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ACTIONS: tuple[str, ...] = (
    "walk",
    "turn",
    "wave",
    "squat",
    "reach",
    "kick",
    "jump",
    "bend",
    "sit",
    "stretch",
)

# anatomical limits in degrees (min, max); clipping happens after every action curve
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "spine_pitch": (-20.0, 85.0),  # forward bend positive
    "spine_roll": (-30.0, 30.0),  # side bend (positive to the right)
    "spine_yaw": (-45.0, 45.0),
    "head_pitch": (-40.0, 50.0),  # nod down positive
    "head_yaw": (-70.0, 70.0),
    "hip_flex": (-30.0, 125.0),  # thigh forward positive
    "hip_abd": (-15.0, 60.0),  # thigh outward positive
    "knee": (0.0, 150.0),  # flexion only, never hyperextended
    "sh_flex": (-50.0, 180.0),  # arm forward/up positive
    "sh_abd": (-5.0, 170.0),  # arm outward/up positive
    "elbow": (0.0, 150.0),
}
ANGLE_NAMES: tuple[str, ...] = (
    "spine_pitch",
    "spine_roll",
    "spine_yaw",
    "head_pitch",
    "head_yaw",
    "l_hip_flex",
    "l_hip_abd",
    "l_knee",
    "r_hip_flex",
    "r_hip_abd",
    "r_knee",
    "l_sh_flex",
    "l_sh_abd",
    "l_elbow",
    "r_sh_flex",
    "r_sh_abd",
    "r_elbow",
)

VOLUME_RADIUS_MM = 1100.0  # the root stays within this distance of the volume centre


@dataclass(frozen=True)
class Skeleton:
    """Per-subject bone lengths in mm (what makes subjects differ in proportion and height)."""

    height: float
    pelvis_half: float
    thigh: float
    shin: float
    ankle_height: float
    spine_low: float
    spine_up: float
    shoulder_half: float
    shoulder_drop: float
    upper_arm: float
    forearm: float
    nose_up: float
    nose_fwd: float
    head_up: float
    head_back: float

    @staticmethod
    def from_height(height: float, rng: np.random.Generator) -> Skeleton:
        """Scale a 1750 mm template to `height`, with a few percent of random proportion change."""
        s = height / 1750.0
        leg = 1.0 + rng.uniform(-0.04, 0.04)
        arm = 1.0 + rng.uniform(-0.05, 0.05)
        width = 1.0 + rng.uniform(-0.08, 0.08)
        thigh, shin, ankle = 445.0 * s * leg, 440.0 * s * leg, 80.0 * s
        # the torso takes whatever height the legs and head leave
        spine_total = height - (thigh + shin + ankle) - 230.0 * s
        return Skeleton(
            height=height,
            pelvis_half=125.0 * s * width,
            thigh=thigh,
            shin=shin,
            ankle_height=ankle,
            spine_low=0.45 * spine_total,
            spine_up=0.55 * spine_total,
            shoulder_half=165.0 * s * width,
            shoulder_drop=25.0 * s,
            upper_arm=285.0 * s * arm,
            forearm=255.0 * s * arm,
            nose_up=95.0 * s,
            nose_fwd=75.0 * s,
            head_up=135.0 * s,
            head_back=70.0 * s,
        )


@dataclass(frozen=True)
class Style:
    """Per-subject motion style: how big, how fast, which hand leads."""

    amplitude: float
    tempo: float
    right_handed: bool
    arm_carry: float  # resting shoulder abduction (deg)

    @staticmethod
    def sample(rng: np.random.Generator) -> Style:
        return Style(
            amplitude=float(rng.uniform(0.8, 1.15)),
            tempo=float(rng.uniform(0.85, 1.15)),
            right_handed=bool(rng.random() < 0.75),
            arm_carry=float(rng.uniform(6.0, 14.0)),
        )


# -- rotations ---------------------------------------------------------------------------------
def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack(
        [np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2
    )


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack(
        [np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2
    )


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack(
        [np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2
    )


def _apply(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(T,3,3) @ (T,3) or (3,) -> (T,3)."""
    return np.einsum("tij,...tj->...ti", R, np.broadcast_to(v, R.shape[:-1]))


def clip_angles(angles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Clip every angle curve to JOINT_LIMITS (names with an l_/r_ prefix share one limit)."""
    out = {}
    for name, value in angles.items():
        key = name[2:] if name[:2] in ("l_", "r_") else name
        lo, hi = JOINT_LIMITS[key]
        out[name] = np.clip(value, lo, hi)
    return out


def forward_kinematics(skel: Skeleton, angles: dict[str, np.ndarray]) -> np.ndarray:
    """Joint angles (degrees, (T,) each) -> (T, 17, 3) joints in the body-local frame, root at 0."""
    a = {k: np.radians(v) for k, v in angles.items()}
    T = len(a["spine_pitch"])
    J = np.zeros((T, 17, 3))
    up = np.array([0.0, 0.0, 1.0])
    down = -up
    R_half = _rot_z(a["spine_yaw"] / 2) @ _rot_y(a["spine_pitch"] / 2) @ _rot_x(a["spine_roll"] / 2)
    R_full = _rot_z(a["spine_yaw"]) @ _rot_y(a["spine_pitch"]) @ _rot_x(a["spine_roll"])
    J[:, 7] = _apply(R_half, up * skel.spine_low)
    J[:, 8] = J[:, 7] + _apply(R_full, up * skel.spine_up)
    R_head = R_full @ _rot_z(a["head_yaw"]) @ _rot_y(a["head_pitch"])
    J[:, 9] = J[:, 8] + _apply(R_head, np.array([skel.nose_fwd, 0.0, skel.nose_up]))
    J[:, 10] = J[:, 9] + _apply(R_head, np.array([-skel.head_back, 0.0, skel.head_up]))
    for side, sign, (hip, knee, foot), (sho, elb, wri) in (
        ("l", 1.0, (4, 5, 6), (11, 12, 13)),
        ("r", -1.0, (1, 2, 3), (14, 15, 16)),
    ):
        J[:, hip] = np.array([0.0, sign * skel.pelvis_half, 0.0])
        R_thigh = _rot_y(-a[f"{side}_hip_flex"]) @ _rot_x(sign * a[f"{side}_hip_abd"])
        J[:, knee] = J[:, hip] + _apply(R_thigh, down * skel.thigh)
        R_shin = R_thigh @ _rot_y(a[f"{side}_knee"])
        J[:, foot] = J[:, knee] + _apply(R_shin, down * skel.shin)
        J[:, sho] = J[:, 8] + _apply(
            R_full, np.array([0.0, sign * skel.shoulder_half, -skel.shoulder_drop])
        )
        R_upper = R_full @ _rot_y(-a[f"{side}_sh_flex"]) @ _rot_x(sign * a[f"{side}_sh_abd"])
        J[:, elb] = J[:, sho] + _apply(R_upper, down * skel.upper_arm)
        R_fore = R_upper @ _rot_y(-a[f"{side}_elbow"])
        J[:, wri] = J[:, elb] + _apply(R_fore, down * skel.forearm)
    return J


# -- smooth helpers ----------------------------------------------------------------------------
def _wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth random curve (sum of two slow sinusoids): what keeps two takes from being equal."""
    out = np.zeros_like(t)
    for _ in range(2):
        f = rng.uniform(0.15, 0.7)
        out += amplitude / 2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out


def _bump(x: np.ndarray) -> np.ndarray:
    """0 -> 1 -> 0 smooth bump over x in [0, 1] (0 outside)."""
    x = np.clip(x, 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


def _smooth_cycle(phase: np.ndarray, down: float, hold: float) -> np.ndarray:
    """Depth 0..1 over a cycle: go down during `down`, hold, come back up during `down`."""
    p = np.mod(phase, 1.0)
    rise = np.clip(p / down, 0, 1)
    fall = np.clip((p - down - hold) / down, 0, 1)
    s = lambda x: x * x * (3 - 2 * x)  # noqa: E731 - smoothstep
    return s(rise) - s(fall)


@dataclass
class Take:
    """Everything an action needs to know about one take."""

    t: np.ndarray  # seconds, (T,)
    style: Style
    rng: np.random.Generator
    phase: float  # cycle offset in [0, 1) shared by the angle curves and the jump's flight

    def zeros(self) -> np.ndarray:
        return np.zeros_like(self.t)


def _rest(take: Take) -> dict[str, np.ndarray]:
    """Relaxed standing posture with a little breathing sway."""
    z, rng, t = take.zeros(), take.rng, take.t
    out = {name: z.copy() for name in ANGLE_NAMES}
    out["spine_pitch"] = 3 + _wobble(rng, t, 3)
    out["spine_roll"] = _wobble(rng, t, 2)
    out["spine_yaw"] = _wobble(rng, t, 4)
    out["head_pitch"] = 5 + _wobble(rng, t, 6)
    out["head_yaw"] = _wobble(rng, t, 15)
    for s in "lr":
        out[f"{s}_hip_abd"] = 4 + _wobble(rng, t, 2)
        out[f"{s}_hip_flex"] = 2 + _wobble(rng, t, 2)
        out[f"{s}_knee"] = 4 + np.abs(_wobble(rng, t, 4))
        out[f"{s}_sh_abd"] = take.style.arm_carry + _wobble(rng, t, 4)
        out[f"{s}_sh_flex"] = 3 + _wobble(rng, t, 6)
        out[f"{s}_elbow"] = 12 + np.abs(_wobble(rng, t, 10))
    return out


def _hands(take: Take) -> tuple[str, str]:
    """(leading side, other side) for one-handed actions."""
    lead = "r" if take.style.right_handed else "l"
    if take.rng.random() < 0.25:  # sometimes the other hand
        lead = "l" if lead == "r" else "r"
    return lead, ("l" if lead == "r" else "r")


def _gait(take: Take, out: dict[str, np.ndarray], cadence: float, size: float) -> None:
    """Walking legs and counter-swinging arms; cadence in strides per second."""
    A = take.style.amplitude * size
    ph = 2 * np.pi * cadence * take.t + take.rng.uniform(0, 2 * np.pi)
    for s, off in (("l", 0.0), ("r", np.pi)):
        p = ph + off
        out[f"{s}_hip_flex"] = 8 + 24 * A * np.sin(p)
        # knee flexes in swing (hip moving forward) and a little at heel strike
        out[f"{s}_knee"] = (
            8 + 55 * A * np.clip(np.sin(p + 1.2), 0, None) ** 1.5 + 6 * np.cos(p) ** 2
        )
        out[f"{s}_sh_flex"] = -22 * A * np.sin(p)
        out[f"{s}_elbow"] = 18 + 14 * A * np.clip(-np.sin(p), 0, None)
    out["spine_yaw"] = out["spine_yaw"] + 6 * A * np.sin(ph)
    out["spine_pitch"] = out["spine_pitch"] + 4


def _act_walk(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    _gait(take, out, 0.9 * take.style.tempo, 1.0)
    return out


def _act_turn(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    _gait(take, out, 0.8 * take.style.tempo, 0.45)
    out["head_yaw"] = out["head_yaw"] + 25 * np.sin(2 * np.pi * 0.3 * take.t)
    return out


def _act_wave(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    lead, _ = _hands(take)
    f = 1.6 * take.style.tempo
    raise_ = _smooth_cycle(take.t / 3.5 + take.rng.random(), 0.15, 0.6)
    out[f"{lead}_sh_abd"] = (
        out[f"{lead}_sh_abd"] * (1 - raise_)
        + 120 * raise_
        + 25 * raise_ * np.sin(2 * np.pi * f * take.t)
    )
    out[f"{lead}_sh_flex"] = out[f"{lead}_sh_flex"] + 20 * raise_
    out[f"{lead}_elbow"] = out[f"{lead}_elbow"] * (1 - raise_) + 70 * raise_
    out["head_yaw"] = out["head_yaw"] + (18 if lead == "r" else -18) * raise_
    return out


def _act_squat(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    d = _smooth_cycle(take.t / (2.4 / take.style.tempo) + take.rng.random(), 0.3, 0.15)
    d = d * take.style.amplitude
    for s in "lr":
        out[f"{s}_hip_flex"] = out[f"{s}_hip_flex"] + 95 * d
        out[f"{s}_knee"] = out[f"{s}_knee"] + 115 * d
        out[f"{s}_hip_abd"] = out[f"{s}_hip_abd"] + 10 * d
        out[f"{s}_sh_flex"] = out[f"{s}_sh_flex"] + 80 * d
        out[f"{s}_elbow"] = out[f"{s}_elbow"] * (1 - d)
    out["spine_pitch"] = out["spine_pitch"] + 30 * d
    return out


def _act_reach(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    period = 2.8 / take.style.tempo
    for k, s in enumerate("lr"):
        d = _smooth_cycle(take.t / period + 0.5 * k + take.rng.random() * 0.2, 0.25, 0.2)
        high = take.rng.uniform(80, 150)
        out[f"{s}_sh_flex"] = out[f"{s}_sh_flex"] * (1 - d) + high * d
        out[f"{s}_sh_abd"] = out[f"{s}_sh_abd"] + 15 * d
        out[f"{s}_elbow"] = out[f"{s}_elbow"] * (1 - d) + 5 * d
        out["spine_roll"] = out["spine_roll"] + (10 if s == "r" else -10) * d
    out["spine_pitch"] = out["spine_pitch"] + 12 * np.abs(np.sin(np.pi * take.t / period))
    return out


def _act_kick(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    lead, other = _hands(take)
    period = 1.8 / take.style.tempo
    p = np.mod(take.t / period + take.rng.random(), 1.0)
    chamber = _bump(p / 0.6)  # knee lifts
    extend = _bump((p - 0.15) / 0.35)  # then the shin snaps out
    A = take.style.amplitude
    out[f"{lead}_hip_flex"] = out[f"{lead}_hip_flex"] + 80 * A * chamber
    out[f"{lead}_knee"] = out[f"{lead}_knee"] + 90 * chamber * (1 - extend)
    out[f"{other}_knee"] = out[f"{other}_knee"] + 10 * chamber
    out["spine_pitch"] = out["spine_pitch"] - 10 * chamber
    for s in "lr":
        out[f"{s}_sh_abd"] = out[f"{s}_sh_abd"] + 30 * chamber
        out[f"{s}_elbow"] = out[f"{s}_elbow"] + 60 * chamber
    return out


def _act_jump(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    period = 1.4 / take.style.tempo
    p = np.mod(take.t / period + take.phase, 1.0)
    crouch = _bump(p / 0.35)
    land = _bump((p - 0.7) / 0.3)
    air = _bump((p - 0.35) / 0.35)
    bend = crouch + 0.6 * land
    for s in "lr":
        out[f"{s}_hip_flex"] = out[f"{s}_hip_flex"] + 55 * bend + 10 * air
        out[f"{s}_knee"] = out[f"{s}_knee"] + 75 * bend + 20 * air
        out[f"{s}_sh_flex"] = out[f"{s}_sh_flex"] - 40 * crouch + 150 * air
        out[f"{s}_elbow"] = out[f"{s}_elbow"] * (1 - air)
    out["spine_pitch"] = out["spine_pitch"] + 25 * bend
    return out


def jump_lift(t: np.ndarray, style: Style, phase: float) -> np.ndarray:
    """Height of the flight phase (mm), matching _act_jump's airborne window."""
    period = 1.4 / style.tempo
    p = np.mod(t / period + phase, 1.0)
    x = np.clip((p - 0.38) / 0.3, 0, 1)
    return 280.0 * style.amplitude * 4 * x * (1 - x)


def _act_bend(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    d = _smooth_cycle(take.t / (3.2 / take.style.tempo) + take.rng.random(), 0.3, 0.15)
    out["spine_pitch"] = out["spine_pitch"] + 75 * d * take.style.amplitude
    out["head_pitch"] = out["head_pitch"] - 20 * d
    for s in "lr":
        out[f"{s}_sh_flex"] = out[f"{s}_sh_flex"] + 55 * d
        out[f"{s}_knee"] = out[f"{s}_knee"] + 12 * d
        out[f"{s}_hip_flex"] = out[f"{s}_hip_flex"] - 8 * d
    return out


def _act_sit(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    d = _smooth_cycle(take.t / (4.5 / take.style.tempo) + take.rng.random(), 0.25, 0.3)
    for s in "lr":
        out[f"{s}_hip_flex"] = out[f"{s}_hip_flex"] + 88 * d
        out[f"{s}_knee"] = out[f"{s}_knee"] + 92 * d
        out[f"{s}_hip_abd"] = out[f"{s}_hip_abd"] + 6 * d
        out[f"{s}_sh_flex"] = out[f"{s}_sh_flex"] + 35 * d
        out[f"{s}_elbow"] = out[f"{s}_elbow"] + 60 * d
    out["spine_pitch"] = out["spine_pitch"] + 10 * d
    return out


def _act_stretch(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    period = 4.0 / take.style.tempo
    up = _smooth_cycle(take.t / period + take.rng.random(), 0.2, 0.6)
    side = np.sin(2 * np.pi * take.t / period) * up
    for s in "lr":
        out[f"{s}_sh_abd"] = out[f"{s}_sh_abd"] * (1 - up) + 155 * up
        out[f"{s}_sh_flex"] = out[f"{s}_sh_flex"] + 20 * up
        out[f"{s}_elbow"] = out[f"{s}_elbow"] * (1 - up) + 20 * up
    out["spine_roll"] = out["spine_roll"] + 25 * side
    out["spine_pitch"] = out["spine_pitch"] - 8 * up
    return out


_ACTION_FUNCS: dict[str, Callable[[Take], dict[str, np.ndarray]]] = {
    "walk": _act_walk,
    "turn": _act_turn,
    "wave": _act_wave,
    "squat": _act_squat,
    "reach": _act_reach,
    "kick": _act_kick,
    "jump": _act_jump,
    "bend": _act_bend,
    "sit": _act_sit,
    "stretch": _act_stretch,
}


def _trajectory(
    action: str, t: np.ndarray, style: Style, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Root path (T,2) in mm and heading (T,) in radians: walkers circle, others drift and turn."""
    if action == "walk":
        # an ellipse through the volume, walked at a speed matching the gait
        a = rng.uniform(650, 1000)
        b = rng.uniform(450, 850)
        rot = rng.uniform(0, 2 * np.pi)
        speed = 1150.0 * style.tempo * style.amplitude * rng.uniform(0.9, 1.1)
        direction = rng.choice([-1.0, 1.0])
        theta = rng.uniform(0, 2 * np.pi) + direction * speed * t / ((a + b) / 2)
        local = np.stack([a * np.cos(theta), b * np.sin(theta)], -1)
    else:
        start = rng.uniform(-500, 500, size=2)
        drift = rng.uniform(-200, 200, size=2)
        duration = max(float(t[-1]), 1.0)
        local = start + drift * (t / duration)[:, None]
        local = local + np.stack([_wobble(rng, t, 120), _wobble(rng, t, 120)], -1)
        rot = 0.0
    c, s = np.cos(rot), np.sin(rot)
    xy = local @ np.array([[c, s], [-s, c]])
    if action == "walk":
        vel = np.gradient(xy, axis=0)
        heading = np.unwrap(np.arctan2(vel[:, 1], vel[:, 0]))
    elif action == "turn":
        rate = rng.uniform(50, 90) * style.tempo * rng.choice([-1.0, 1.0])
        heading = rng.uniform(0, 2 * np.pi) + np.radians(rate) * t
    else:
        heading = rng.uniform(0, 2 * np.pi) + np.radians(_wobble(rng, t, 70))
    # keep the person inside the capture volume whatever the random draws were
    r = np.linalg.norm(xy, axis=-1, keepdims=True)
    xy = np.where(r > VOLUME_RADIUS_MM, xy * VOLUME_RADIUS_MM / np.maximum(r, 1e-9), xy)
    return xy, heading


def synthesize(
    action: str,
    frames: int,
    fps: float,
    skel: Skeleton,
    style: Style,
    rng: np.random.Generator,
) -> np.ndarray:
    """One take of `action`: (frames, 17, 3) world joints in mm, z up, floor at z = 0."""
    if action not in _ACTION_FUNCS:
        raise ValueError(f"unknown action {action!r}")
    t = np.arange(frames) / float(fps)
    take = Take(t=t, style=style, rng=rng, phase=float(rng.random()))
    angles = clip_angles(_ACTION_FUNCS[action](take))
    local = forward_kinematics(skel, angles)
    if action not in ("walk", "turn"):
        # planted feet: shift the body so the supporting foot does not slide
        feet = local[:, [3, 6]]
        w = np.exp(-(feet[..., 2] - feet[..., 2].min(axis=1, keepdims=True)) / 30.0)
        anchor = (feet[..., :2] * w[..., None]).sum(1) / w.sum(1)[:, None]
        local[..., :2] -= (anchor - anchor[:1])[:, None, :]
    xy, heading = _trajectory(action, t, style, rng)
    lift = jump_lift(t, style, take.phase) if action == "jump" else np.zeros_like(t)
    c, s = np.cos(heading), np.sin(heading)
    world = np.empty_like(local)
    world[..., 0] = c[:, None] * local[..., 0] - s[:, None] * local[..., 1] + xy[:, None, 0]
    world[..., 1] = s[:, None] * local[..., 0] + c[:, None] * local[..., 1] + xy[:, None, 1]
    lowest_foot = local[:, [3, 6], 2].min(axis=1)
    world[..., 2] = local[..., 2] + (skel.ankle_height - lowest_foot + lift)[:, None]
    return world
