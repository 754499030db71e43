"""Box corrections (core/box_edits.py): propagation in time and across views with hand-computed
expectations, exact apply and undo, the box file after every edit, a kill while saving, a
read-only folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mcss_studio.core.box_edits import (
    BoxTrack,
    blend_weights,
    box_file_of,
    load_keyframes,
    propagate_in_time,
    transfer_to_views,
)
from mcss_studio.core.boxes import load_boxes_file
from mcss_studio.core.camera import Calibration
from mcss_studio.core.errors import UserInputError
from tests import faultlib
from tests.readonly import read_only

K = np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
SIZE = (100, 100)


def rig() -> list[Calibration]:
    """A at the origin looking along +z; B at (2000, 0, 2000) looking along -x; both see the
    point (0, 0, 2000) at their image centre (50, 50)."""
    a = Calibration(K=K, R=np.eye(3), t=np.zeros(3))
    rb = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    b = Calibration(K=K, R=rb, t=-rb @ np.array([2000.0, 0, 2000]))
    return [a, b]


# -- in time -------------------------------------------------------------------------------------
def test_weights_fall_linearly_and_stop_at_keyframes() -> None:
    keyed = np.zeros(12, bool)
    keyed[8] = True
    w = blend_weights(5, keyed, spread=4)
    # left: 1 - d/5 for d = 1..4; right: the keyframe 3 frames away ends it: 1 - d/3
    np.testing.assert_allclose(w, [0, 0.2, 0.4, 0.6, 0.8, 1, 2 / 3, 1 / 3, 0, 0, 0, 0])
    np.testing.assert_allclose(blend_weights(0, np.zeros(3, bool), 10), [1, 10 / 11, 9 / 11])


def test_offset_is_blended_into_neighbours_and_nans_stay() -> None:
    row = np.tile([10.0, 20, 30, 60], (7, 1))
    row[5] = np.nan
    new = propagate_in_time(row, np.zeros(7, bool), 2, [14, 20, 34, 70], spread=2)
    # offset (4, 0, 4, 10), weights 1/3, 2/3, 1, 2/3, 1/3 over frames 0..4
    np.testing.assert_allclose(new[:5, 0], [10 + 4 / 3, 10 + 8 / 3, 14, 10 + 8 / 3, 10 + 4 / 3])
    np.testing.assert_allclose(new[1, 3], 60 + 20 / 3)
    assert np.isnan(new[5]).all()  # no box there before: none now
    np.testing.assert_array_equal(new[6], row[6])  # 4 frames away: outside the spread


def test_a_box_drawn_where_there_was_none_changes_that_frame_only() -> None:
    row = np.full((5, 4), np.nan)
    row[3] = (0, 0, 10, 10)
    new = propagate_in_time(row, np.zeros(5, bool), 1, [5, 5, 25, 45], spread=3)
    np.testing.assert_array_equal(new[1], [5, 5, 25, 45])
    np.testing.assert_array_equal(new[3], row[3])
    assert np.isnan(new[[0, 2, 4]]).all()


def test_two_keyframes_interpolate_the_offset_linearly(tmp_path: Path) -> None:
    auto = np.zeros((1, 11, 4))
    auto[0] = (100, 100, 200, 300)
    track = BoxTrack(tmp_path / "boxes.npz", auto, ["a"], [(1000, 1000)])
    track.apply(track.correct(0, 2, (110, 100, 210, 300), spread=20))
    track.apply(track.correct(0, 8, (130, 100, 230, 300), spread=20))
    # offsets: +10 at frame 2 (kept), +30 at frame 8, linear in between: +10 + 20 (t - 2) / 6
    expected = 100 + 10 + 20 * (np.arange(2, 9) - 2) / 6
    np.testing.assert_allclose(track.boxes[0, 2:9, 0], expected)
    np.testing.assert_allclose(track.boxes[0, 2:9, 2] - track.boxes[0, 2:9, 0], 100)
    assert track.keyed[0].tolist() == [i in (2, 8) for i in range(11)]


# -- across views --------------------------------------------------------------------------------
def test_a_corrected_box_is_projected_into_the_other_view() -> None:
    boxes = np.array([[0, 0, 1, 1], [45, 45, 55, 55.0]])  # B's box centred on (50, 50)
    out = transfer_to_views(0, np.array([40, 30, 60, 70.0]), boxes, rig(), [SIZE, SIZE])
    # depth 2000 from B's centre ray; the box there is 400 x 800 mm: a cylinder of radius 200
    # and height 800 on the axis x = 0, z = 2000, 2000 mm from B. B sees its outline tangents
    # at u = 50 +- 100 * 200 / sqrt(2000^2 - 200^2) and its near rim (1800 mm) at y = +-400
    assert np.isnan(out[0]).all()
    half_u = 100 * 200 / np.sqrt(2000**2 - 200**2)
    np.testing.assert_allclose(out[1], [50 - half_u, 50 - 100 * 400 / 1800,
                                        50 + half_u, 50 + 100 * 400 / 1800], atol=0.01)


def test_depth_is_the_median_of_the_other_views() -> None:
    """Two views agree on the person, a third boxes a bystander: the depth stays right."""
    a, b = rig()
    rb2 = np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])  # C at (-2000, 0, 2000) looking +x
    c = Calibration(K=K, R=rb2, t=-rb2 @ np.array([-2000.0, 0, 2000]))
    cams = [a, b, c, b]
    boxes = np.array([[0, 0, 1, 1], [45, 45, 55, 55], [45, 45, 55, 55], [5, 45, 15, 55.0]])
    out = transfer_to_views(0, np.array([40, 30, 60, 70.0]), boxes, cams, [SIZE] * 4)
    half_u = 100 * 200 / np.sqrt(2000**2 - 200**2)
    np.testing.assert_allclose(out[1], [50 - half_u, 27.777778, 50 + half_u, 72.222222],
                               atol=0.01)
    np.testing.assert_allclose(out[2], out[1], atol=1e-9)  # C mirrors B


def test_no_other_box_gives_no_transfer() -> None:
    boxes = np.full((2, 4), np.nan)
    assert np.isnan(transfer_to_views(0, np.array([40, 30, 60, 70.0]), boxes, rig(),
                                      [SIZE, SIZE])).all()


def test_correct_with_other_views_keys_both_and_blends_both(tmp_path: Path) -> None:
    auto = np.zeros((2, 5, 4))
    auto[0] = (40, 30, 60, 70)
    auto[1] = (45, 45, 55, 55)
    track = BoxTrack(tmp_path / "boxes.npz", auto, ["a", "b"], [SIZE, SIZE], rig())
    patch = track.correct(0, 2, (40, 30, 60, 70.0), spread=1, other_views=True)
    assert sorted(patch.keys) == [(0, 2), (1, 2)]
    track.apply(patch)
    half_u = 100 * 200 / np.sqrt(2000**2 - 200**2)
    np.testing.assert_allclose(track.boxes[1, 2], [50 - half_u, 27.777778, 50 + half_u,
                                                   72.222222], atol=0.01)
    half = (track.boxes[1, 2] - auto[1, 2]) / 2  # spread 1: half the offset next door
    np.testing.assert_allclose(track.boxes[1, 1], auto[1, 1] + half)
    np.testing.assert_allclose(track.boxes[1, 0], auto[1, 0])


# -- apply, undo, the file -----------------------------------------------------------------------
def make_track(folder: Path, name: str = "boxes.npz") -> BoxTrack:
    rng = np.random.default_rng(3)
    lo = rng.uniform(0, 40, size=(2, 9, 2))
    auto = np.concatenate([lo, lo + rng.uniform(10, 50, size=(2, 9, 2))], axis=-1)
    auto[1, 4] = np.nan
    return BoxTrack(folder / name, auto, ["a", "b"], [SIZE, SIZE])


def test_apply_and_undo_restore_exact_arrays_and_the_file(tmp_path: Path) -> None:
    track = make_track(tmp_path)
    start, start_keyed = track.boxes.copy(), track.keyed.copy()
    p1 = track.correct(0, 3, (12.25, 7.5, 60.125, 80.0), spread=3)
    track.apply(p1)
    after1 = track.boxes.copy()
    p2 = track.correct(1, 4, (1, 2, 30, 40))
    track.apply(p2)
    np.testing.assert_array_equal(load_boxes_file(track.path, ["a", "b"], 9), track.boxes)
    np.testing.assert_array_equal(load_keyframes(track.path, ["a", "b"], 9), track.keyed)
    track.apply(p2, forward=False)
    np.testing.assert_array_equal(track.boxes, after1)
    track.apply(p1, forward=False)
    np.testing.assert_array_equal(track.boxes, start)
    np.testing.assert_array_equal(track.keyed, start_keyed)
    np.testing.assert_array_equal(load_boxes_file(track.path, ["a", "b"], 9), start)
    track.apply(p1)
    np.testing.assert_array_equal(track.boxes, after1)


def test_a_csv_box_file_stays_csv(tmp_path: Path) -> None:
    (tmp_path / "boxes.csv").write_text("camera,frame,x0,y0,x1,y1\n")
    assert box_file_of(tmp_path).name == "boxes.csv"
    track = make_track(tmp_path, "boxes.csv")
    track.apply(track.correct(0, 0, (1, 1, 30, 30)))
    np.testing.assert_array_equal(load_boxes_file(track.path, ["a", "b"], 9), track.boxes)
    assert not (tmp_path / "boxes.npz").exists()


def test_a_read_only_folder_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    track = make_track(folder)
    before = track.boxes.copy()
    patch = track.correct(0, 1, (5, 5, 50, 50))
    with read_only(folder), pytest.raises(UserInputError) as err:
        track.apply(patch)
    assert len(str(err.value).splitlines()) == 1 and "boxes.npz" in str(err.value)
    assert "read-only" in str(err.value) or "permission" in str(err.value)
    np.testing.assert_array_equal(track.boxes, before)
    assert not track.path.exists()


def test_a_kill_while_saving_edits_keeps_every_committed_edit(tmp_path: Path) -> None:
    """A child applies edits one by one and reports each after `apply` returned; SIGKILLed at
    write calls through the run, the file must be readable and hold at least every reported
    edit (and at most the one in flight)."""
    rng = np.random.default_rng(7)
    edits = [(int(rng.integers(2)), int(rng.integers(9)),
              tuple(float(v) for v in np.r_[rng.uniform(0, 30, 2), rng.uniform(40, 90, 2)]))
             for _ in range(6)]
    (tmp_path / "ref").mkdir()
    ref = make_track(tmp_path / "ref")
    ref.apply(ref.correct(0, 0, tuple(ref.boxes[0, 0])))  # as the child starts: state 0
    states = [ref.boxes.copy()]  # the file after 0, 1, 2... edits
    for cam, t, box in edits:
        ref.apply(ref.correct(cam, t, box, spread=2))
        states.append(ref.boxes.copy())
    assert len({s.tobytes() for s in states}) == len(states)  # every edit tells itself apart

    def child(folder: Path, fd: int) -> int:
        track = make_track(folder)
        track.apply(track.correct(0, 0, tuple(states[0][0, 0])))  # the file exists: state 0
        os.write(fd, b"0")
        for i, (cam, t, box) in enumerate(edits, 1):
            track.apply(track.correct(cam, t, box, spread=2))
            os.write(fd, str(i).encode())
        return 0

    def run(folder: Path, kill_at: int | None) -> tuple[faultlib.Outcome, int]:
        folder.mkdir()
        r, w = os.pipe()
        out = faultlib.run_child(lambda: child(folder, w), kill_at=kill_at)
        os.close(w)
        with open(r, "rb") as f:
            reported = f.read().decode()
        return out, int(reported[-1]) if reported else -1

    total = run(tmp_path / "all", None)[0].calls
    points = faultlib.kill_points(total, 12, seed=5)
    assert len(points) >= 10
    for k in points:
        out, committed = run(tmp_path / f"k{k}", k)
        assert out.status in (0, -9), out
        path = tmp_path / f"k{k}" / "boxes.npz"
        if committed < 0:
            continue  # killed before the first save finished: no file or the first one
        boxes = load_boxes_file(path, ["a", "b"], 9)
        held = [i for i, s in enumerate(states) if np.array_equal(boxes, s, equal_nan=True)]
        assert held and held[0] in (committed, committed + 1), (k, committed, held)


def test_a_track_opens_from_the_file_or_the_automatic_boxes_never_from_nothing(tmp_path):
    from mcss_studio.core.box_edits import open_box_track
    from tests.test_boxes import blank, make_seq

    seq = make_seq(tmp_path, [blank(4), blank(4)])
    auto = np.tile([1.0, 2, 30, 40], (2, 4, 1))
    track = open_box_track(seq, auto)
    assert track.path == tmp_path / "boxes.npz" and not track.keyed.any()
    np.testing.assert_array_equal(track.boxes, auto)
    with pytest.raises(UserInputError, match="still being detected"):
        open_box_track(seq, None)  # a first correction would write NaN everywhere else
    track.apply(track.correct(1, 2, (5, 5, 20, 20), spread=0))
    seq.boxes = load_boxes_file(track.path, ["cam0", "cam1"], 4)  # reopened from the file
    again = open_box_track(seq, None)
    np.testing.assert_array_equal(again.boxes, track.boxes)
    assert np.argwhere(again.keyed).tolist() == [[1, 2]]
