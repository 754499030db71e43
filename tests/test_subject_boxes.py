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


# measured shares (per camera, this scene): clean 0.97..1, occluder 0.8 in the occluded view
# (its box covers the visible part), second person 0.97..1 (0.7 in the views where the two
# overlap before the subject's colours were learnt from its body core only). On a CPU without
# AVX-512 (numpy's sin/cos/exp from libm, the rendered scene different in its last bits) clean,
# lighting, second person and moving object give 0.93..1: the first two frames' boxes sit at
# IoU 0.46-0.56 in cameras 1 and 3, on the threshold, so 0.9 here (at most 3 misses of 30)
@pytest.mark.parametrize("distractor, share", [
    ({}, 0.9), ({"occluder": True}, 0.8), ({"lighting": True}, 0.9),
    ({"second_person": True}, 0.9), ({"moving_object": True}, 0.9),
], ids=["clean", "occluder", "lighting", "second_person", "moving_object"])
def test_rig_boxes_the_subject_among_distractors(distractor, share):
    seq, gt = scene(**distractor)
    found = rig_boxes(seq)
    assert (_share(found.boxes, gt) >= share).all()
    assert found.boxes.shape == (4, seq.num_frames, 4) and found.uncertain.shape == (4, 30)


def test_rig_keeps_a_second_person_passing_close_by_out_of_the_subject_box():
    # the second person walks past the subject, 0.9 m from them at the closest (frame 7): in
    # the frames where the two stand within 1.4 m (5..10) their voxels carve into one blob;
    # measured: all 6 of these frames boxed in every camera (before the floor-position split
    # and the core's colours, 1 or 2 of 6 in cameras 0..2), and 0.87..0.97 of all frames
    # (camera 2 sees the two side by side in others: the rim of blended colours left around
    # the second person once their colours are dropped must go too); 0.8 in camera 2 on a CPU
    # without AVX-512 (see above)
    seq, gt = scene(close_person=True)
    found = rig_boxes(seq)
    close = slice(5, 11)
    assert (_share(found.boxes[:, close], gt[:, close]) >= 0.8).all()
    assert (_share(found.boxes, gt) >= 0.75).all()


def test_rig_keeps_a_still_person_beside_the_path_out_of_the_subject_box():
    # someone stands 0.95 m from the subject's path (closest in frames 21..24), swaying so
    # little that only the edges of their blue top carve, and swinging an arm of the subject's
    # red up to 0.8 m out towards the path: too short a column to count as a standing body,
    # the arm carves within the subject's reach. Where the blue carves in two views is another
    # body: measured over frames 17..27, cameras 0 and 2 box the subject in 10 and 11 of 11
    # frames (8 of 11 each without that body); cameras 1 and 3 see the still person in front
    # of the subject in some of these frames (8 of 11 either way)
    seq, gt = scene(still_person=True)
    share = _share(rig_boxes(seq).boxes[:, 17:28], gt[:, 17:28])
    assert share[0] >= 0.9 and share[2] >= 0.9


def test_subject_part_stops_halfway_to_a_second_person():
    from mcss_studio.core.subject_boxes import _subject_part

    # subject column at x = 0, a second person 1000 mm away: within PERSON_REACH (900 mm),
    # the voxels of the second person's column nearer to them than to the subject are theirs
    two = np.concatenate([_column(0, 1700), _column(1000, 1600)])
    mine = _subject_part(np.ones(len(two), bool), np.ones(len(two), bool), np.zeros(2),
                         _grid_of(two))
    x = two[:, 0]
    assert mine[x < 500].all() and not mine[x > 500].any()
    # a short column 1000 mm away is a limb or a box, not a person: it stays within reach
    leg = np.concatenate([_column(0, 1700), _column(1000, 900)])
    x = leg[:, 0]
    mine = _subject_part(np.ones(len(leg), bool), np.ones(len(leg), bool), np.zeros(2),
                         _grid_of(leg))
    assert (mine == (np.linalg.norm(leg[:, :2], axis=1) <= 900)).all() and mine[x > 500].any()
    # ... unless a person is known to stand there (_other_body_track): then it is halved too
    mine = _subject_part(np.ones(len(leg), bool), np.ones(len(leg), bool), np.zeros(2),
                         _grid_of(leg), others=np.array([[1000.0, 0.0]]))
    assert mine[x < 500].all() and not mine[x > 500].any()


def _views_of(grid, theirs: np.ndarray, foreign_views: int, frames: int = 3):
    """Four views that see every voxel of `grid` on its own pixel, all foreground (so the
    carving occupies every voxel); the voxels `theirs` (V,) bool land on the others' colours in
    the first `foreign_views` views."""
    V = len(grid.centres)
    carved = [np.ones(V, bool) for _ in range(frames)]
    masks = [np.ones((frames, V), bool) for _ in range(4)]
    subject_like = [np.ones((frames, V), bool) for _ in range(4)]
    for c in range(foreign_views):
        subject_like[c][:, theirs] = False
    return carved, masks, subject_like, [np.arange(V)] * 4, np.ones((4, V), bool)


def test_other_body_is_where_the_others_colours_carve_in_two_views():
    from mcss_studio.core.subject_boxes import OTHER_MIN_VOXELS, _other_body_track

    # the subject's column at x = 0, another person's 900 mm tall column (9 voxels on the
    # floor, 9 high) at x = 1000, whose voxels are the others' colours
    points = np.concatenate([_column(0, 1700), _column(1000, 900)])
    grid, theirs = _grid_of(points), points[:, 0] > 500
    centre = np.zeros((3, 2))
    track = _other_body_track(*_views_of(grid, theirs, 2), grid, centre, 25.0)
    assert (np.abs(track - [1000.0, 0.0]) <= grid.voxel / 2).all()  # a floor-count cell's centre
    # the others' colours in one view only: not theirs (one view's colour error)
    track = _other_body_track(*_views_of(grid, theirs, 1), grid, centre, 25.0)
    assert np.isnan(track).all()
    # a subject standing within OTHER_GAP (800 mm) of that peak: it is the subject's own
    near = np.tile([[300.0, 0.0]], (3, 1))
    assert np.isnan(_other_body_track(*_views_of(grid, theirs, 2), grid, near, 25.0)).all()
    # fewer than OTHER_MIN_VOXELS such voxels: a stray few, not a body
    few = theirs & (points[:, 2] == 0) & (points[:, 1] == 0)
    few[np.flatnonzero(few)[OTHER_MIN_VOXELS - 1:]] = False
    assert np.isnan(_other_body_track(*_views_of(grid, few, 2), grid, centre, 25.0)).all()


# without a calibration an object that touches the subject in the image joins its blob (the
# moving object of this scene does in camera 1: 27% of its frames), so it is not tested here
@pytest.mark.parametrize("distractor", [{}, {"lighting": True}, {"occluder": True}],
                         ids=["clean", "lighting", "occluder"])
def test_tracked_boxes_follow_the_subject_without_calibration(distractor):
    seq, gt = scene(**distractor)
    assert (_share(tracked_boxes(seq).boxes, gt) >= 0.9).all()


def test_rig_needs_a_calibration():
    from mcss_studio.core import UserInputError

    seq, _ = scene()
    seq.cameras[0].calibration = None
    with pytest.raises(UserInputError, match="calibration"):
        rig_boxes(seq)


def _grid_of(points: np.ndarray, voxel: float = 100.0):
    """A Grid holding just `points` (V, 3) mm on a 100 mm lattice, z up."""
    from mcss_studio.core.subject_boxes import Grid

    index = np.round(points / voxel).astype(int)
    index -= index.min(axis=0)
    return Grid(centres=points, index=index, cells=int(index.max()) + 1, voxel=voxel,
                focus=np.zeros(3), reach=4000.0, plane=points[:, :2], height=points[:, 2])


def _column(x: float, top: float) -> np.ndarray:
    """Voxel centres of a 300 x 300 mm column from the floor to `top` at x (y = 0)."""
    return np.array([[x + dx, dy, z] for dx in (-100, 0, 100) for dy in (-100, 0, 100)
                     for z in np.arange(0, top, 100.0)])


def test_two_people_in_one_blob_are_split_but_a_lunging_leg_is_not():
    from mcss_studio.core.subject_boxes import _split_people

    two = np.concatenate([_column(0, 1700), _column(1000, 1600)])  # 1 m apart, both tall
    labels = _split_people(np.ones(len(two), int), _grid_of(two))
    assert len(np.unique(labels)) == 2
    first = labels[: len(two) // 2 + 1]
    assert len(np.unique(first)) == 1 and labels[-1] != first[0]
    leg = np.concatenate([_column(0, 1700), _column(800, 900)])  # the second column: a leg
    assert len(np.unique(_split_people(np.ones(len(leg), int), _grid_of(leg)))) == 1


def test_world_up_from_upright_cameras():
    from mcss_studio.core.subject_boxes import world_up
    from tests.subjectscene import ring

    np.testing.assert_allclose(world_up(ring()), [0, 0, 1], atol=0.1)


class _FakeDetector:
    """Finds a person in every frame but the third; its box is the frame index."""

    detector_id = "fake-1"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, rgb):
        from mcss_studio.core.pose_detector import Detection

        self.calls += 1
        if self.calls % 3 == 0:
            return Detection.none()
        return Detection(np.zeros((17, 2)), np.full(17, 0.9), np.array([10.0, 10, 50, 90]))

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_detector_method_keeps_keypoints_and_flags_frames_without_a_person(monkeypatch,
                                                                          tmp_path):
    from mcss_studio.core.subject_boxes import boxes_and_doubts

    monkeypatch.setattr("mcss_studio.core.pose_detector.MediaPipeDetector", _FakeDetector)
    seq, _ = scene()
    seq.path = tmp_path
    result, used = boxes_and_doubts(seq, "detector", cache_dir=tmp_path / "cache")
    assert used == "detector"
    assert list((tmp_path / "cache" / "keypoints").glob("*.npz"))  # kept for the assist
    assert np.isfinite(result.boxes).all()  # the missing frames are filled from neighbours
    missing = np.zeros((4, 30), bool)
    missing.reshape(-1)[2::3] = True  # every third detection, camera after camera
    np.testing.assert_array_equal(result.uncertain, missing)
    np.testing.assert_allclose(result.boxes[0, 0], [10, 10, 50, 90])


def test_auto_picks_rig_when_calibrated_and_tracked_otherwise():
    from mcss_studio.core.boxes import choose_box_method

    seq, _ = scene()
    assert choose_box_method(seq) == "rig"
    seq.cameras[1].calibration = None
    assert choose_box_method(seq) == "tracked"


def test_centre_prior_by_hand():
    from mcss_studio.core.subject_boxes import _centre_prior

    weights = _centre_prior(np.array([[0.0, 0, 0], [1000, 0, 0], [0, 2000, 0]]), np.zeros(3),
                            4000.0)
    np.testing.assert_allclose(weights, [1.0, np.exp(-0.5), np.exp(-2.0)])


# -- mcss-data boxes ---------------------------------------------------------------------------
def _cli(*args: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "mcss_studio.cli.data", "boxes", *args],
                         capture_output=True, text=True, timeout=300)
    return res.returncode, res.stdout, res.stderr


def test_boxes_command_reports_and_writes_the_box_file(tmp_path):
    import json

    from mcss_studio.core import open_sequence
    from tests.subjectscene import write_recording

    gt = write_recording(tmp_path / "rec")
    code, out, err = _cli(str(tmp_path / "rec"), "--json")
    assert code == 0, err
    doc = json.loads(out)[0]
    assert doc["method"] == "rig" and doc["frames"] == 30 and doc["written"] is None
    assert [c["name"] for c in doc["cameras"]] == ["cam0", "cam1", "cam2", "cam3"]
    assert all(c["frames_with_box"] == 30 for c in doc["cameras"])
    assert all(c["uncertain"] == len(c["uncertain_frames"]) for c in doc["cameras"])
    assert not (tmp_path / "rec" / "boxes.npz").exists()  # nothing written without --write

    code, out, err = _cli(str(tmp_path / "rec"), "--method", "tracked", "--write")
    assert code == 0, err
    assert "method tracked" in out and "camera cam3: 30 frames with a box" in out
    with np.load(tmp_path / "rec" / "boxes.npz") as z:
        assert z["uncertain"].shape == (4, 30) and z["uncertain"].dtype == bool
    with open_sequence(tmp_path / "rec") as seq:  # the recording now carries its boxes
        assert (_share(seq.boxes, gt) >= 0.9).all()


def test_boxes_command_errors_are_one_line_and_leave_the_box_file(tmp_path):
    from tests.readonly import read_only
    from tests.subjectscene import write_recording

    write_recording(tmp_path / "rec", calibrated=False)
    code, _, err = _cli(str(tmp_path / "rec"), "--method", "rig")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "calibration" in err
    code, _, err = _cli(str(tmp_path / "nowhere"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    from mcss_studio.core.boxes import save_boxes_npz

    save_boxes_npz(tmp_path / "rec" / "boxes.npz", np.ones((4, 30, 4)),
                   [f"cam{c}" for c in range(4)])
    old = (tmp_path / "rec" / "boxes.npz").read_bytes()
    with read_only(tmp_path / "rec") as mechanism:
        if mechanism == "EROFS at the OS calls":
            pytest.skip("a subprocess does not see Python-level write refusals")
        code, _, err = _cli(str(tmp_path / "rec"), "--method", "full", "--write")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "boxes.npz" in err and "cannot write" in err
    assert (tmp_path / "rec" / "boxes.npz").read_bytes() == old


def test_appearance_masks_drop_the_colours_of_the_others_only():
    from mcss_studio.core.subject_boxes import _appearance_masks

    # one view of 1 x 40 pixels, 2 frames: the subject's blob (voxels 0..9) projects onto
    # pixels 0..9 (colour 7); pixels 30..39 are another person's foreground (colour 9)
    masks = [np.zeros((2, 40), bool)]
    masks[0][:, :10] = masks[0][:, 30:] = True
    colours = [np.zeros((2, 40), np.uint16)]
    colours[0][:, :10], colours[0][:, 30:] = 7, 9
    lookups = [np.arange(10)]
    labels = [np.ones(10, int), np.ones(10, int)]
    frames = [Candidates(np.zeros((1, 3)), np.array([10.0]))] * 2
    grid, nowhere = _grid_of(np.zeros((10, 3))), np.full((2, 2), np.nan)
    out = _appearance_masks(np.array([0, 0]), frames, labels, masks, lookups, colours, [(1, 40)],
                            grid, nowhere)
    assert out[0][:, :10].all() and not out[0][:, 30:].any()
    # seen fewer than OTHER_MIN_PIXELS times, a colour is kept
    masks[0][:, 31:] = False
    out = _appearance_masks(np.array([0, 0]), frames, labels, masks, lookups, colours, [(1, 40)],
                            grid, nowhere)
    assert out[0][:, 30].all()


def test_appearance_learns_the_subject_from_its_body_core_only():
    from mcss_studio.core.subject_boxes import _appearance_masks

    # the blob: voxels 0..9 at the subject's floor position (pixels 0..9, colour 7) and voxels
    # 10..19 600 mm away, within reach but outside the core (pixels 14..23, colour 9: a second
    # person the blob swallowed); that person's colour 9 is also seen at pixels 30..39
    points = np.array([[0.0, 0.0, 100.0 * i] for i in range(10)]
                      + [[600.0, 0.0, 100.0 * i] for i in range(10)])
    masks = [np.zeros((2, 40), bool)]
    masks[0][:, :10] = masks[0][:, 14:24] = masks[0][:, 30:] = True
    colours = [np.zeros((2, 40), np.uint16)]
    colours[0][:, :10], colours[0][:, 14:24], colours[0][:, 30:] = 7, 9, 9
    lookups = [np.r_[np.arange(10), np.arange(14, 24)]]
    labels = [np.ones(20, int), np.ones(20, int)]
    frames = [Candidates(np.zeros((1, 3)), np.array([20.0]))] * 2
    args = (np.array([0, 0]), frames, labels, masks, lookups, colours, [(1, 40)],
            _grid_of(points))
    # with the floor position: colour 9 is only the others', dropped wherever it is
    out = _appearance_masks(*args, np.zeros((2, 2)))[0]
    assert out[:, :10].all() and not out[:, 14:24].any() and not out[:, 30:].any()
    # without it the whole blob is the subject: colour 9 is as much theirs as the others'
    out = _appearance_masks(*args, np.full((2, 2), np.nan))[0]
    assert out[:, :10].all() and out[:, 14:24].all() and out[:, 30:].all()


def test_feet_are_on_the_floor_under_the_body_by_hand():
    from mcss_studio.core.subject_boxes import FOOT_SPREAD, _feet, _floor_level

    grid = _grid_of(np.concatenate([_column(0, 1700), [[0.0, 0.0, -900.0]]]))
    body = grid.height >= 0  # the column stands on the floor (z = 0); -900 is a stray voxel
    knees = grid.height >= 500  # a frame that lost the lower legs
    # lowest voxel per frame: 0 in 5 frames, 500 in 15 (legs lost): a quarter reach 0
    assert _floor_level([body] * 5 + [knees] * 15, grid) == 0.0
    # ... 0 in 4 of 20 frames: a quarter (5) reach 500
    assert _floor_level([body] * 4 + [knees] * 16, grid) == 500.0
    # a stray voxel below the floor in 1 of 20 frames does not sink it
    assert _floor_level([body | ~body] + [body] * 19, grid) == 0.0
    assert np.isnan(_floor_level([np.zeros(len(grid.centres), bool)], grid))
    feet = _feet(np.array([100.0, 200.0]), 0.0, grid)
    s = FOOT_SPREAD
    assert np.allclose(feet, [[100, 200, 0], [100 + s, 200, 0], [100 - s, 200, 0],
                              [100, 200 + s, 0], [100, 200 - s, 0]])
    assert _feet(np.full(2, np.nan), 0.0, grid).shape == (0, 3)


def test_box_bottom_goes_down_to_points_in_front_of_the_camera_only():
    from mcss_studio.core.subject_boxes import _down_to
    from tests.subjectscene import ring

    cal = ring()[0]
    feet = np.array([[0.0, 0.0, 0.0], [300.0, 0.0, 0.0]])  # on the floor, the rig's centre
    (u, v), (u2, v2) = cal.project(feet)
    box = np.array([u - 5, v - 40, u + 5, v - 20])  # above the feet, narrower than them
    assert np.allclose(_down_to(box, cal, feet), [u - 5, v - 40, u + 5, max(v, v2)])
    low = np.array([u - 5, v - 40, u + 5, max(v, v2) + 7])  # already lower: unchanged
    assert np.allclose(_down_to(low, cal, feet), low)
    behind = cal.center + 2 * (cal.center - feet[0])  # behind the camera: ignored
    assert np.allclose(_down_to(box, cal, behind[None]), box)
    assert np.isnan(_down_to(np.full(4, np.nan), cal, feet)).all()


def test_rig_box_reaches_the_floor_when_no_view_sees_the_legs():
    # from frame 15 on the subject's lower 500 mm is not drawn (legs the colour of the floor):
    # the carving ends at the knees; the floor the subject stood on in the first half holds
    # its feet, so the box is stretched to them; measured: the bottom within 3 px of GT's in
    # every camera and frame from 18 on (9..14 px above it without the feet: 0 of them)
    seq, gt = scene(hidden_legs=True)
    found = rig_boxes(seq)
    late = slice(seq.num_frames // 2 + 3, None)  # the smoothing window reaches 2 frames back
    gap = np.abs(found.boxes[:, late, 3] - gt[:, late, 3])
    assert np.mean(gap <= 3) >= 0.9
