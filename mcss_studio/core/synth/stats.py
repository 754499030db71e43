"""Statistics of the synthetic motion that the limited-supervision benchmark depends on.

MCSS mines negatives by time: frames tau..tau_max apart in one take are assumed to show different
poses. `same_pose_fraction` measures how often that is false (the pair is the same pose within
kappa after unit scaling and Procrustes alignment, as the retrieval protocol judges poses).
`heading_coverage` measures how much of the circle of body headings a take visits (Human3.6M
subjects face every direction within a take). Both need only the joints, not the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import paired_pose_distance

HEADING_BINS = 12  # 30-degree sectors


def same_pose_fraction(
    joints: np.ndarray, tau: int = 10, tau_max: int = 20, kappa: float = 0.1
) -> tuple[int, int]:
    """(same-pose pairs, all pairs) over frame pairs (t, t + dt), tau <= dt <= tau_max."""
    joints = np.asarray(joints, dtype=np.float64)
    same = total = 0
    for dt in range(tau, tau_max + 1):
        if dt >= len(joints):
            break
        d = paired_pose_distance(joints[:-dt], joints[dt:])
        same += int((d <= kappa).sum())
        total += len(d)
    return same, total


def headings(joints: np.ndarray) -> np.ndarray:
    """(T,) body heading in radians on the floor (z up): facing direction, perpendicular to the
    right-hip -> left-hip axis (Human3.6M joints 1 and 4)."""
    left = joints[:, 4, :2] - joints[:, 1, :2]
    return np.arctan2(-left[:, 0], left[:, 1])  # forward = left axis turned by -90 degrees


def heading_coverage(joints: np.ndarray, bins: int = HEADING_BINS) -> float:
    """Fraction of the `bins` equal sectors of the circle that the heading visits."""
    sector = np.floor(np.mod(headings(joints), 2 * np.pi) / (2 * np.pi) * bins).astype(int)
    return len(np.unique(np.clip(sector, 0, bins - 1))) / bins


@dataclass
class ActionStats:
    action: str
    takes: int
    same_pairs: int
    pairs: int
    coverage: float  # mean over takes

    @property
    def same_fraction(self) -> float:
        return self.same_pairs / max(self.pairs, 1)


def motion_statistics(
    preset: str, seed: int = 0, tau: int = 10, tau_max: int = 20, kappa: float = 0.1,
    fps: float | None = None,
) -> list[ActionStats]:
    """Per action of a synth preset: same-pose in-window pairs and heading coverage, computed
    from the joints the preset would render (no images are made)."""
    from .generate import make_subject, plan_dataset, sequence_joints

    plan = plan_dataset(preset, seed, fps=fps)
    subjects = {name: make_subject(plan.seed, name) for name in plan.subjects}
    found: dict[str, list] = {}
    for seq in plan.sequences:
        joints = sequence_joints(plan, seq, subjects[seq.subject])
        same, total = same_pose_fraction(joints, tau, tau_max, kappa)
        entry = found.setdefault(seq.action, [0, 0, 0, []])
        entry[0] += 1
        entry[1] += same
        entry[2] += total
        entry[3].append(heading_coverage(joints))
    return [ActionStats(a, n, s, t, float(np.mean(c))) for a, (n, s, t, c) in found.items()]


def format_statistics(stats: list[ActionStats], tau: int, tau_max: int, kappa: float) -> str:
    lines = [f"{'action':<10} {'takes':>5} {'same pose':>10} {'headings':>9}",
             f"{'':<10} {'':>5} {f'{tau}-{tau_max} fr':>10} {'visited':>9}"]
    for s in stats:
        lines.append(f"{s.action:<10} {s.takes:>5} {100 * s.same_fraction:>9.1f}% "
                     f"{100 * s.coverage:>8.0f}%")
    same = sum(s.same_pairs for s in stats)
    pairs = sum(s.pairs for s in stats)
    lines.append(f"{'all':<10} {sum(s.takes for s in stats):>5} "
                 f"{100 * same / max(pairs, 1):>9.1f}%")
    lines.append(f"same pose: frame pairs {tau}-{tau_max} apart within kappa {kappa:g} "
                 "(unit-scale Procrustes); headings: share of 30-degree sectors a take faces")
    return "\n".join(lines)
