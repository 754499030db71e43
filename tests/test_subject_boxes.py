"""Subject boxes ("rig", "tracked") on a synthetic 4-camera scene with distractors, the chain
that follows the subject, and the `mcss-data boxes` command."""

from __future__ import annotations

import numpy as np
import pytest

from mcss_studio.core.subject_boxes import box_iou, rig_boxes, tracked_boxes
from mcss_studio.core.subject_track import Candidates, best_chain
from tests.subjectscene import scene


def _share(found: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per camera: the share of frames whose box has IoU > 0.5 with the subject's GT box."""
    return (np.nan_to_num(box_iou(found, gt)) > 0.5).mean(axis=1)


def test_chain_prefers_a_steady_track_over_a_briefly_larger_jump():
    # frame 1 offers a larger candidate 10 units away; the steady one wins (hand-computed:
    # steady -log(1)*3 + 0 = 0; jump adds -log(3) = -1.1 but steps cost 2 * 10^2/2 = 100)
    frames = [Candidates(np.array([[0.0]]), np.array([1.0])),
              Candidates(np.array([[0.0], [10.0]]), np.array([1.0, 3.0])),
              Candidates(np.array([[0.0]]), np.array([1.0]))]
    assert best_chain(frames, sigma0=1.0, speed=0.0).tolist() == [0, 0, 0]
    # with a loose step cost the larger candidate is worth the detour
    assert best_chain(frames, sigma0=100.0, speed=0.0).tolist() == [0, 1, 0]


def test_chain_skips_empty_frames_and_widens_the_step_with_the_gap():
    empty = Candidates(np.zeros((0, 1)), np.zeros(0))
    frames = [Candidates(np.array([[0.0]]), np.array([1.0])), empty, empty,
              Candidates(np.array([[3.0], [30.0]]), np.array([1.0, 2.0]))]
    assert best_chain(frames, sigma0=0.1, speed=1.0).tolist() == [0, -1, -1, 0]
    assert best_chain([empty, empty], 1.0, 1.0).tolist() == [-1, -1]


@pytest.mark.parametrize("distractor, share", [
    ({}, 0.85), ({"occluder": True}, 0.85), ({"lighting": True}, 0.7),
    ({"second_person": True}, 0.5), ({"moving_object": True}, 0.5),
])
def test_rig_boxes_the_subject_among_distractors(distractor, share):
    seq, gt = scene(**distractor)
    found = rig_boxes(seq)
    assert (_share(found.boxes, gt) >= share).all()
    assert found.boxes.shape == (4, seq.num_frames, 4) and found.uncertain.shape == (4, 30)


@pytest.mark.parametrize("distractor", [{}, {"lighting": True}, {"moving_object": True},
                                        {"occluder": True}])
def test_tracked_boxes_follow_the_subject_without_calibration(distractor):
    seq, gt = scene(**distractor)
    assert (_share(tracked_boxes(seq).boxes, gt) >= 0.9).all()


def test_rig_needs_a_calibration():
    from mcss_studio.core import UserInputError

    seq, _ = scene()
    seq.cameras[0].calibration = None
    with pytest.raises(UserInputError, match="calibration"):
        rig_boxes(seq)
