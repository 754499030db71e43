"""The MediaPipe landmark -> 17-joint mapping and the detector's guards, without mediapipe
(one test runs the real detector where it is installed)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.joints import JOINT_NAMES
from mcss_studio.core.pose_detector import (
    INSTALL_HINT,
    Detection,
    MediaPipeDetector,
    landmarks_to_joints,
    mediapipe_status,
)

W, H = 200, 400
J = {name: j for j, name in enumerate(JOINT_NAMES)}


def hand_landmarks() -> np.ndarray:
    """(33, 3): every landmark k at normalised (k / 100, k / 50), visibility 0.5 + k / 100."""
    k = np.arange(33, dtype=np.float64)
    return np.stack([k / 100, k / 50, 0.5 + k / 100], axis=1)


def px(k: int) -> np.ndarray:
    return np.array([k / 100 * W, k / 50 * H])


def test_single_landmark_joints_are_those_landmarks_in_pixels():
    det = landmarks_to_joints(hand_landmarks(), W, H)
    for name, k in [("r_hip", 24), ("r_knee", 26), ("r_foot", 28), ("l_hip", 23),
                    ("l_knee", 25), ("l_foot", 27), ("neck", 0), ("l_shoulder", 11),
                    ("l_elbow", 13), ("l_wrist", 15), ("r_shoulder", 12), ("r_elbow", 14),
                    ("r_wrist", 16)]:
        np.testing.assert_allclose(det.joints[J[name]], px(k), err_msg=name)
        assert det.confidence[J[name]] == pytest.approx(0.5 + k / 100), name


def test_derived_joints_by_hand():
    lm = hand_landmarks()
    det = landmarks_to_joints(lm, W, H)
    # landmark k sits at (2k, 8k) px: hips 23, 24 -> (47, 188); shoulders 11, 12 -> (23, 92)
    np.testing.assert_allclose(det.joints[J["hip"]], [47, 188])
    np.testing.assert_allclose(det.joints[J["thorax"]], [23, 92])
    np.testing.assert_allclose(det.joints[J["spine"]], [35, 140])
    # eyes (2, 5) -> (7, 28); ears (7, 8) -> (15, 60); mouth (9, 10) -> (19, 76)
    # head = mid(eyes, ears) + 1.6 * (eyes - mouth) = (11, 44) + 1.6 * (-12, -48)
    np.testing.assert_allclose(det.joints[J["head"]], [11 - 19.2, 44 - 76.8])
    assert det.confidence[J["hip"]] == pytest.approx(0.73)  # min of landmarks 23, 24
    assert det.confidence[J["spine"]] == pytest.approx(0.61)  # min of 11, 12, 23, 24
    assert det.confidence[J["head"]] == pytest.approx(0.52)  # min of 2, 5, 7, 8, 9, 10


def test_box_is_the_landmark_extent_widened_and_clipped():
    lm = hand_landmarks()  # x 0..64 px, y 0..256 px
    det = landmarks_to_joints(lm, W, H)
    # widened by 10 % of 64 x 256 each side, clipped at the image's top-left corner
    np.testing.assert_allclose(det.box, [0, 0, 64 + 6.4, 256 + 25.6])
    lm[:, 0] += 0.5  # x 100..164 px: nothing to clip on the left now
    np.testing.assert_allclose(landmarks_to_joints(lm, W, H).box[[0, 2]], [93.6, 170.4])
    lm[:, 0] += 2.0  # wholly right of the image
    assert not landmarks_to_joints(lm, W, H).found


def test_visibility_is_clipped_and_a_z_column_is_ignored():
    lm = hand_landmarks()
    lm[24, 2] = 1.7
    with_z = np.insert(lm, 2, 123.0, axis=1)  # MediaPipe's (x, y, z, visibility)
    det = landmarks_to_joints(with_z, W, H)
    assert det.confidence[J["r_hip"]] == 1.0
    np.testing.assert_allclose(det.joints[J["r_hip"]], px(24))


def test_wrong_landmark_count_is_refused():
    with pytest.raises(ValueError, match="33"):
        landmarks_to_joints(np.zeros((17, 3)), W, H)


def test_no_person_detection_is_all_nan():
    none = Detection.none()
    assert not none.found and np.isnan(none.joints).all() and not none.confidence.any()


def test_missing_mediapipe_is_one_line_with_the_recipe(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import raises ImportError
    problem = mediapipe_status()
    assert problem is not None and INSTALL_HINT in problem and "\n" not in problem
    with pytest.raises(UserInputError, match="needs mediapipe 0.10.14"):
        MediaPipeDetector()


def test_another_mediapipe_version_is_refused_before_it_could_download(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", types.SimpleNamespace(__version__="0.10.21"))
    with pytest.raises(UserInputError, match="mediapipe 0.10.21 is installed"):
        MediaPipeDetector()


def test_real_mediapipe_runs_offline_on_an_empty_image():
    pytest.importorskip("mediapipe")
    if mediapipe_status() is not None:
        pytest.skip(mediapipe_status())
    with MediaPipeDetector() as det:
        result = det.detect(np.zeros((256, 192, 3), np.uint8))
    assert not result.found and result.joints.shape == (17, 2)
