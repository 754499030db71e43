"""Synthetic motion and subjects: rigid bones, joint limits, floor contact, variation, cues."""

from __future__ import annotations

import numpy as np
import pytest

from mcss_studio.core.joints import BONES
from mcss_studio.core.synth.body import SUBJECT_ORDER
from mcss_studio.core.synth.generate import make_subject
from mcss_studio.core.synth.motion import ACTIONS, VARIED_ACTIONS, VOLUME_RADIUS_MM, synthesize


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors (..., 3)."""
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.mark.parametrize(
    "action, motion",
    [(a, "cyclic") for a in ACTIONS] + [(a, "varied") for a in VARIED_ACTIONS],
)
def test_action_is_plausible(action: str, motion: str) -> None:
    subject = make_subject(0, "S5")
    joints = synthesize(
        action, 150, 25.0, subject.skeleton, subject.style, np.random.default_rng(1), motion
    )
    assert joints.shape == (150, 17, 3) and np.isfinite(joints).all()
    lengths = np.stack([np.linalg.norm(joints[:, c] - joints[:, p], axis=-1) for p, c in BONES], 1)
    assert np.ptp(lengths, axis=0).max() < 1e-6  # rigid skeleton
    feet_z = joints[:, [3, 6], 2].min(axis=1)
    ankle = subject.skeleton.ankle_height
    assert feet_z.min() >= ankle - 1e-6
    if action != "jump":
        assert np.allclose(feet_z, ankle)  # one foot always on the floor
    else:
        assert feet_z.max() > ankle + 100  # it does leave the floor
    root_r = np.linalg.norm(joints[:, 0, :2], axis=-1)
    assert root_r.max() <= VOLUME_RADIUS_MM + 400
    # knees and elbows bend one way and stay within 150 degrees of flexion
    for hip, knee, foot in ((1, 2, 3), (4, 5, 6)):
        assert (
            _angle(joints[:, knee] - joints[:, hip], joints[:, foot] - joints[:, knee]).max()
            <= 150.5
        )
    for sho, elb, wri in ((11, 12, 13), (14, 15, 16)):
        assert (
            _angle(joints[:, elb] - joints[:, sho], joints[:, wri] - joints[:, elb]).max() <= 150.5
        )
    # knees never hyperextend: the shin turns backwards from the thigh, about the pelvis' left axis
    left = joints[:, 4] - joints[:, 1]
    for hip, knee, foot in ((1, 2, 3), (4, 5, 6)):
        thigh, shin = joints[:, knee] - joints[:, hip], joints[:, foot] - joints[:, knee]
        bend = (np.cross(thigh, shin) * left).sum(-1) / np.linalg.norm(left, axis=-1)
        assert (
            bend >= -1e-6 * np.linalg.norm(thigh, axis=-1) * np.linalg.norm(shin, axis=-1)
        ).all()
    # the head stays above the pelvis (no impossible flips)
    assert (joints[:, 10, 2] > joints[:, 0, 2]).all()
    # the person moves: either travels or changes pose over the take
    assert np.abs(joints - joints[:1]).max() > 150


def test_takes_and_subjects_vary() -> None:
    s1, s9 = make_subject(0, "S1"), make_subject(0, "S9")
    a = synthesize("walk", 50, 25.0, s1.skeleton, s1.style, np.random.default_rng(1))
    b = synthesize("walk", 50, 25.0, s1.skeleton, s1.style, np.random.default_rng(2))
    c = synthesize("walk", 50, 25.0, s9.skeleton, s9.style, np.random.default_rng(1))
    assert np.abs(a - b).max() > 100 and np.abs(a - c).max() > 50
    assert s1.skeleton.height != s9.skeleton.height
    assert not np.allclose(s1.look.albedo, s9.look.albedo)
    # same subject from the same seed is the same person
    assert np.array_equal(make_subject(0, "S1").look.albedo, s1.look.albedo)


def test_some_subjects_have_left_right_cues_and_some_do_not() -> None:
    cues = {name: make_subject(0, name).look.cue for name in SUBJECT_ORDER}
    assert any(c == "none" for c in cues.values()) and any(c != "none" for c in cues.values())
    for name, cue in cues.items():
        look = make_subject(0, name).look
        left_right_differ = not np.allclose(look.albedo[4::2][:9], look.albedo[5::2][:9])
        assert left_right_differ == (cue != "none"), name
