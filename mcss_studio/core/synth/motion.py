"""Procedural human motion on the Human3.6M 17-joint skeleton, in world millimetres (z up).

Why procedural: no motion-capture data may be downloaded, yet the benchmark needs many distinct,
plausible poses with exact 3D ground truth. Each action is a small set of smooth joint-angle
curves (degrees) driven by a phase; forward kinematics turns them into joints. Angles are clipped
to anatomical limits, the lower foot is kept on the floor and the root travels through the
capture volume, so every take differs in pose, place and heading.

Two motion styles. "cyclic" (the tiny, demo and benchmark presets, kept byte for byte): each
action repeats one cycle with holds, and a take keeps one heading +-70 degrees. "varied" (the
standard preset), each change after a property of Human3.6M rather than of any method:
- subjects turn through every heading within a take (Human3.6M subjects walk about and face
  every direction; our takes are seconds long, so the turning is compressed into them);
- no action repeats: the tempo drifts (+-35%), short holds (0.1-0.3 s) interrupt it, each cycle
  has its own depth and timing, a transition blends another action in for a while, and a
  fidget layer (head, trunk, arms, weight shift) runs through everything, so that frames
  10-20 apart are rarely the same pose (mcss-data motion-stats prints the fraction);
- more actions, after Human3.6M's Directions, Phoning and Discussion (VARIED_ACTIONS).

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

# actions only the "varied" motion style offers (Human3.6M: Directions, Phoning, Discussion);
# appended, so the old actions keep their index in the per-take seeds
EXTRA_ACTIONS: tuple[str, ...] = ("point", "phone", "discuss")
VARIED_ACTIONS: tuple[str, ...] = ACTIONS + EXTRA_ACTIONS
MOTION_STYLES: tuple[str, ...] = ("cyclic", "varied")

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


def _min_jerk(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (10 - 15 * x + 6 * x * x)


def _through_knots(x: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Minimum-jerk path through (knots, values), knots increasing; constant outside."""
    i = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    u = (x - knots[i]) / (knots[i + 1] - knots[i])
    return values[i] + (values[i + 1] - values[i]) * _min_jerk(u)


def _varied_cycle(phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0..1 depth through alternating low (0-0.2) and high (0.55-1) targets at half-cycles,
    each knot jittered by up to a quarter of a half-cycle: no two cycles alike, no holds."""
    lo, hi = int(np.floor(phase.min())) - 1, int(np.ceil(phase.max())) + 1
    half = np.arange(2 * lo, 2 * hi + 1)
    knots = half * 0.5 + rng.uniform(-0.12, 0.12, size=len(half))
    values = np.where(half % 2 == 0, rng.uniform(0.0, 0.2, len(half)),
                      rng.uniform(0.55, 1.0, len(half)))
    return _through_knots(phase, knots, values)


def _random_targets(
    rng: np.random.Generator, t: np.ndarray, lo: float, hi: float, dwell: tuple[float, float]
) -> np.ndarray:
    """A smooth curve moving between random values in [lo, hi], a new target every
    dwell[0]..dwell[1] seconds (gestures, fidgeting: never periodic)."""
    start, end = float(t.min()), float(t.max())
    gaps = rng.uniform(*dwell, size=int((end - start) / dwell[0]) + 3)
    knots = start - gaps[0] + np.concatenate([[0.0], np.cumsum(gaps)])
    return _through_knots(t, knots, rng.uniform(lo, hi, size=len(knots)))


def warped_time(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "varied" style's action clock: tempo drifting within +-35% and a short hold
    (0.1-0.3 s at a tenth of the speed) every 1.5-3.5 s; same length as t, starts at 0."""
    rate = np.clip(1.0 + _random_targets(rng, t, -0.35, 0.35, (0.6, 1.6)), 0.5, 1.5)
    when = float(t.min()) + rng.uniform(0.3, 2.0)
    while when < float(t.max()):
        width = rng.uniform(0.1, 0.3)
        rate = rate * (1.0 - 0.9 * _bump((t - when) / width))
        when += width + rng.uniform(1.5, 3.5)
    dt = np.diff(t, prepend=t[0])
    return np.cumsum(rate * dt)


def _fidget(take: Take, out: dict[str, np.ndarray]) -> None:
    """Gestures, glances and weight shifts on top of any action, a new target every 0.4-1.2 s
    (Human3.6M subjects talk and gesture through their actions). The amplitudes are what brings
    same-pose pairs 10-20 frames apart under 10% (half of them left 21%; stats.py measures)."""
    rng, t = take.rng, take.t
    dwell = (0.4, 1.2)
    for name, amp in (("head_yaw", 45), ("head_pitch", 20), ("spine_yaw", 30),
                      ("spine_roll", 15), ("spine_pitch", 12)):
        out[name] = out[name] + _random_targets(rng, t, -amp, amp, dwell)
    for side in "lr":
        for name, amp in (("sh_flex", 50), ("sh_abd", 30), ("elbow", 60)):
            key = f"{side}_{name}"
            out[key] = out[key] + _random_targets(rng, t, -amp, amp, dwell)
    shift = _random_targets(rng, t, -1.0, 1.0, (0.8, 2.0))  # weight from one leg to the other
    for side, sign in (("l", 1.0), ("r", -1.0)):
        out[f"{side}_knee"] = out[f"{side}_knee"] + 20 * np.clip(sign * shift, 0, None)
        out[f"{side}_hip_abd"] = out[f"{side}_hip_abd"] + 8 * sign * shift


@dataclass
class Take:
    """Everything an action needs to know about one take."""

    t: np.ndarray  # seconds, (T,)
    style: Style
    rng: np.random.Generator
    phase: float  # cycle offset in [0, 1) shared by the angle curves and the jump's flight
    varied: bool = False  # the "varied" motion style; t is then the tempo-warped time

    def zeros(self) -> np.ndarray:
        return np.zeros_like(self.t)

    def cycle(self, phase: np.ndarray, down: float, hold: float) -> np.ndarray:
        """An action's 0..1 depth curve: the held cycle (cyclic) or, varied, a path through
        random depths at jittered half-cycles with no holds (each cycle its own)."""
        if not self.varied:
            return _smooth_cycle(phase, down, hold)
        return _varied_cycle(phase, self.rng)

    def wrap(self, x: np.ndarray) -> np.ndarray:
        """Phase within the cycle: x mod 1 (cyclic) or, varied, each cycle's first 60%
        (the movement) stretched over 80-90% of it, so the rest between cycles is short."""
        if not self.varied:
            return np.mod(x, 1.0)
        n = np.floor(x)
        cycles = np.arange(int(n.min()), int(n.max()) + 1)
        active = self.rng.uniform(0.8, 0.9, size=len(cycles))[(n - cycles[0]).astype(int)]
        f = x - n
        return np.where(f < active, 0.6 * f / active, 0.6 + 0.4 * (f - active) / (1 - active))


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
    raise_ = take.cycle(take.t / 3.5 + take.rng.random(), 0.15, 0.6)
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
    d = take.cycle(take.t / (2.4 / take.style.tempo) + take.rng.random(), 0.3, 0.15)
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
        d = take.cycle(take.t / period + 0.5 * k + take.rng.random() * 0.2, 0.25, 0.2)
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
    p = take.wrap(take.t / period + take.rng.random())
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
    d = take.cycle(take.t / (3.2 / take.style.tempo) + take.rng.random(), 0.3, 0.15)
    out["spine_pitch"] = out["spine_pitch"] + 75 * d * take.style.amplitude
    out["head_pitch"] = out["head_pitch"] - 20 * d
    for s in "lr":
        out[f"{s}_sh_flex"] = out[f"{s}_sh_flex"] + 55 * d
        out[f"{s}_knee"] = out[f"{s}_knee"] + 12 * d
        out[f"{s}_hip_flex"] = out[f"{s}_hip_flex"] - 8 * d
    return out


def _act_sit(take: Take) -> dict[str, np.ndarray]:
    out = _rest(take)
    d = take.cycle(take.t / (4.5 / take.style.tempo) + take.rng.random(), 0.25, 0.3)
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
    up = take.cycle(take.t / period + take.rng.random(), 0.2, 0.6)
    side = np.sin(2 * np.pi * take.t / period) * up
    for s in "lr":
        out[f"{s}_sh_abd"] = out[f"{s}_sh_abd"] * (1 - up) + 155 * up
        out[f"{s}_sh_flex"] = out[f"{s}_sh_flex"] + 20 * up
        out[f"{s}_elbow"] = out[f"{s}_elbow"] * (1 - up) + 20 * up
    out["spine_roll"] = out["spine_roll"] + 25 * side
    out["spine_pitch"] = out["spine_pitch"] - 8 * up
    return out


def _act_point(take: Take) -> dict[str, np.ndarray]:
    """Directions: one arm points at one target after another, head and trunk follow."""
    out = _rest(take)
    lead, _ = _hands(take)
    rng, t = take.rng, take.t
    aim = _random_targets(rng, t, -1.0, 1.0, (0.6, 1.5))  # where, left to right
    up = take.cycle(t / (2.0 / take.style.tempo) + rng.random(), 0.2, 0.3)  # arm up, down
    out[f"{lead}_sh_flex"] = out[f"{lead}_sh_flex"] * (1 - up) + (70 + 25 * aim) * up
    outward = aim if lead == "r" else -aim  # pointing to the lead side lifts the arm outwards
    out[f"{lead}_sh_abd"] = out[f"{lead}_sh_abd"] + (20 + 35 * outward) * up
    out[f"{lead}_elbow"] = out[f"{lead}_elbow"] * (1 - up) + 10 * up
    out["head_yaw"] = out["head_yaw"] + 35 * aim
    out["spine_yaw"] = out["spine_yaw"] + 15 * aim
    return out


def _act_phone(take: Take) -> dict[str, np.ndarray]:
    """Phoning: slow steps with one hand at the ear, the other arm gesturing."""
    out = _rest(take)
    _gait(take, out, 0.6 * take.style.tempo, 0.45)
    lead, other = _hands(take)
    rng, t = take.rng, take.t
    at_ear = take.cycle(t / 5.0 + rng.random(), 0.1, 0.7)
    out[f"{lead}_sh_flex"] = out[f"{lead}_sh_flex"] * (1 - at_ear) + 45 * at_ear
    out[f"{lead}_sh_abd"] = out[f"{lead}_sh_abd"] + 30 * at_ear
    out[f"{lead}_elbow"] = out[f"{lead}_elbow"] * (1 - at_ear) + 140 * at_ear
    out[f"{other}_sh_flex"] = out[f"{other}_sh_flex"] + _random_targets(rng, t, -10, 70, (0.5, 1.2))
    out[f"{other}_elbow"] = out[f"{other}_elbow"] + _random_targets(rng, t, 0, 90, (0.5, 1.2))
    out["head_pitch"] = out["head_pitch"] + _random_targets(rng, t, -10, 25, (0.7, 1.6))
    return out


def _act_discuss(take: Take) -> dict[str, np.ndarray]:
    """Discussion: both arms gesture, the trunk leans and turns towards listeners."""
    out = _rest(take)
    rng, t = take.rng, take.t
    for side in "lr":
        out[f"{side}_sh_flex"] = out[f"{side}_sh_flex"] + _random_targets(rng, t, 0, 80, (0.4, 1.0))
        out[f"{side}_sh_abd"] = out[f"{side}_sh_abd"] + _random_targets(rng, t, 0, 45, (0.4, 1.0))
        out[f"{side}_elbow"] = out[f"{side}_elbow"] + _random_targets(rng, t, 20, 110, (0.4, 1.0))
    out["spine_pitch"] = out["spine_pitch"] + _random_targets(rng, t, -5, 25, (0.8, 1.8))
    out["spine_yaw"] = out["spine_yaw"] + _random_targets(rng, t, -30, 30, (0.8, 1.8))
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
    "point": _act_point,
    "phone": _act_phone,
    "discuss": _act_discuss,
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


def _varied_heading(
    action: str, t: np.ndarray, heading: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Headings that turn through the whole circle within the take (1-1.5 turns at a drifting
    rate, one direction) with +-15 degrees of wobble; walkers keep their path's heading (the
    loop already faces every way)."""
    if action == "walk":
        return heading
    rate = np.clip(1.0 + _random_targets(rng, t, -0.6, 0.6, (0.8, 2.0)), 0.2, None)
    progress = np.cumsum(rate) / rate.sum()
    turns = rng.uniform(1.0, 1.5) * rng.choice([-1.0, 1.0])
    return (rng.uniform(0, 2 * np.pi) + 2 * np.pi * turns * progress
            + np.radians(_wobble(rng, t, 30)))


# actions a transition may blend in (not the jump: its flight lifts the root)
_TRANSITION_ACTIONS = ("wave", "squat", "reach", "kick", "bend", "stretch", "point", "discuss")


def _with_transition(take: Take, action: str, angles: dict[str, np.ndarray]) -> dict:
    """Blend another action in for 1-2 s somewhere in the take (min-jerk in and out)."""
    others = [a for a in _TRANSITION_ACTIONS if a != action]
    other = _ACTION_FUNCS[others[int(take.rng.integers(len(others)))]](take)
    t = take.t
    ramp = take.rng.uniform(0.3, 0.6)
    length = take.rng.uniform(1.0, 2.0)
    start = take.rng.uniform(float(t.min()), max(float(t.min()), float(t.max()) - length))
    w = _min_jerk((t - start) / ramp) * (1 - _min_jerk((t - start - length + ramp) / ramp))
    return {k: (1 - w) * v + w * other[k] for k, v in angles.items()}


def synthesize(
    action: str,
    frames: int,
    fps: float,
    skel: Skeleton,
    style: Style,
    rng: np.random.Generator,
    motion: str = "cyclic",
) -> np.ndarray:
    """One take of `action`: (frames, 17, 3) world joints in mm, z up, floor at z = 0.

    motion "cyclic" is the original generator (its output never changes for a seed); "varied"
    adds turning through every heading, tempo drift, short holds, a transition and fidgeting.
    """
    if action not in _ACTION_FUNCS:
        raise ValueError(f"unknown action {action!r}")
    if motion not in MOTION_STYLES:
        raise ValueError(f"unknown motion style {motion!r}, expected one of {MOTION_STYLES}")
    varied = motion == "varied"
    t = np.arange(frames) / float(fps)
    clock = warped_time(t, rng) if varied else t
    take = Take(t=clock, style=style, rng=rng, phase=float(rng.random()), varied=varied)
    raw = _ACTION_FUNCS[action](take)
    if varied:
        raw = _with_transition(take, action, raw)
        _fidget(take, raw)
    angles = clip_angles(raw)
    local = forward_kinematics(skel, angles)
    if action not in ("walk", "turn", "phone"):
        # planted feet: shift the body so the supporting foot does not slide
        feet = local[:, [3, 6]]
        w = np.exp(-(feet[..., 2] - feet[..., 2].min(axis=1, keepdims=True)) / 30.0)
        anchor = (feet[..., :2] * w[..., None]).sum(1) / w.sum(1)[:, None]
        local[..., :2] -= (anchor - anchor[:1])[:, None, :]
    xy, heading = _trajectory(action, t, style, rng)
    if varied:
        heading = _varied_heading(action, t, heading, rng)
    lift = jump_lift(clock, style, take.phase) if action == "jump" else np.zeros_like(t)
    c, s = np.cos(heading), np.sin(heading)
    world = np.empty_like(local)
    world[..., 0] = c[:, None] * local[..., 0] - s[:, None] * local[..., 1] + xy[:, None, 0]
    world[..., 1] = s[:, None] * local[..., 0] + c[:, None] * local[..., 1] + xy[:, None, 1]
    lowest_foot = local[:, [3, 6], 2].min(axis=1)
    world[..., 2] = local[..., 2] + (skel.ankle_height - lowest_foot + lift)[:, None]
    return world
