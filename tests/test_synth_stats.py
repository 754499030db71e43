"""Motion statistics (same-pose pairs in the negative window, heading coverage) and the
standard preset's motion, with the old presets' joints unchanged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mcss_studio.core.synth.generate import make_subject, plan_dataset, sequence_joints
from mcss_studio.core.synth.stats import (
    heading_coverage,
    headings,
    motion_statistics,
    same_pose_fraction,
)


def _pose(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 300, size=(17, 3))


def test_same_pose_fraction_hand_case():
    # 24 frames: pose A for frames 0-11, a very different pose B for 12-23; window 10..12
    joints = np.stack([_pose(0)] * 12 + [_pose(1)] * 12)
    # dt 10: t = 0..13, same when t < 2 or t >= 12 (4 of 14); dt 11: t < 1 or t = 12 (2 of 13);
    # dt 12: none of 12
    assert same_pose_fraction(joints, tau=10, tau_max=12) == (6, 39)
    still = np.stack([_pose(0)] * 30)
    assert same_pose_fraction(still, 10, 20) == (sum(30 - dt for dt in range(10, 21)),) * 2
    # a rotated, scaled, shifted copy is the same pose (Procrustes, unit scale)
    c, s = np.cos(1.0), np.sin(1.0)
    turned = 2.0 * _pose(0) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + 50.0
    assert same_pose_fraction(np.stack([_pose(0)] * 10 + [turned] * 10), 10, 10) == (10, 10)


def test_headings_and_coverage():
    joints = np.zeros((36, 17, 3))
    angle = np.radians(np.arange(36) * 10.0)  # one full turn
    # left hip at +y when facing +x: the heading is the left axis turned by -90 degrees
    joints[:, 4, 0], joints[:, 4, 1] = -np.sin(angle), np.cos(angle)
    joints[:, 1] = -joints[:, 4]
    assert np.allclose(np.unwrap(headings(joints)), angle)
    assert heading_coverage(joints) == 1.0
    assert heading_coverage(joints[:1].repeat(10, axis=0)) == pytest.approx(1 / 12)
    assert heading_coverage(joints[:9]) == pytest.approx(3 / 12)  # 0..80 degrees


def test_standard_motion_is_rarely_the_same_pose_in_the_window_and_turns_all_round():
    stats = motion_statistics("standard", seed=0)
    assert len(stats) == 13
    same = sum(s.same_pairs for s in stats) / sum(s.pairs for s in stats)
    assert same < 0.10
    assert all(s.same_fraction < 0.15 and s.coverage >= 0.9 for s in stats)
    old = motion_statistics("demo", seed=0)  # the cyclic style it replaces, for contrast
    assert sum(s.same_pairs for s in old) / sum(s.pairs for s in old) > 0.2


def test_old_presets_keep_their_joints():
    """tiny and demo give the joints they gave before the varied style existed (commit
    138867b), to 0.01 mm: the last bits of sin/cos/exp differ between CPUs (numpy's AVX-512
    routines against libm), so the digest is of the joints rounded; none of these 33048
    values lies within 1e-8 mm of a rounding boundary, so that noise cannot flip one."""
    digest = hashlib.sha256()
    for preset in ("tiny", "demo"):
        plan = plan_dataset(preset, 0)
        assert plan.motion == "cyclic"
        subjects = {n: make_subject(0, n) for n in plan.subjects}
        for seq in plan.sequences:
            joints = sequence_joints(plan, seq, subjects[seq.subject])
            digest.update(np.ascontiguousarray(np.round(joints, 2)).tobytes())
    assert digest.hexdigest() == OLD_DIGEST


def test_unknown_motion_style_is_refused():
    from mcss_studio.core.synth.motion import Skeleton, Style, synthesize

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="motion style"):
        synthesize("walk", 10, 25.0, Skeleton.from_height(1700, rng), Style.sample(rng), rng,
                   "wobbly")


# of the rounded joints; the unrounded ones of 138867b hashed to 5987021b... on AVX-512 machines
OLD_DIGEST = "9e41e0b6085835bad0afab19e3fc71730bf98ae19885844ec0196bfc696acd32"
