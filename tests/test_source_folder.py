"""Recording folders and manifest datasets: loading, synchronisation and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcss_studio.core import UserInputError, open_dataset, open_sequence
from mcss_studio.core.sources.folder import load_joints3d
from tests.conftest import pattern_frame, ring_cameras, write_mp4v, write_pattern_folder


def test_recording_folder_loads_cameras_calibration_and_3d(make_recording):
    folder = make_recording(cameras=3, frames=10)
    with open_sequence(folder) as seq:
        assert seq.camera_names == ["cam0", "cam1", "cam2"]
        assert seq.num_frames == 10 and seq.fps == pytest.approx(25.0)
        assert seq.is_calibrated and seq.has_3d
        assert seq.joints3d.shape == (10, 17, 3)
        expected = ring_cameras(3)[1]
        np.testing.assert_allclose(seq.cameras[1].calibration.K, expected.K)
        np.testing.assert_allclose(seq.cameras[1].calibration.t, expected.t)
        frame = seq.frame("cam2", 4)
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        # mp4v is lossy: the frame is close to the pattern it was written from, in RGB order
        diff = np.abs(frame.astype(int) - pattern_frame(4, 64, 48, camera=2).astype(int))
        assert diff.mean() < 12


def test_image_folders_and_mixed_orientation(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    write_pattern_folder(rec / "portrait", 6, 32, 48, camera=0)
    write_mp4v(rec / "landscape.mp4", 6, 64, 48, camera=1)
    with open_sequence(rec) as seq:
        assert [(c.name, c.width, c.height) for c in seq.cameras] == [
            ("landscape", 64, 48), ("portrait", 32, 48)]
        np.testing.assert_array_equal(seq.frame("portrait", 5), pattern_frame(5, 32, 48, 0))
        assert not seq.is_calibrated and not seq.has_3d


def test_mismatched_frame_counts_use_common_range_and_warn(make_recording):
    folder = make_recording(cameras=2, frames=[10, 8], joints=False)
    with open_sequence(folder) as seq:
        assert seq.num_frames == 8
        assert any("common 8 frames" in w for w in seq.warnings)


def test_offsets_shift_native_frames(make_recording):
    folder = make_recording(cameras=2, frames=[10, 10], joints=False)
    (folder / "sequence.toml").write_text('name = "take"\n[offsets]\ncam0 = 3\n')
    with open_sequence(folder) as seq:
        assert seq.name == "take"
        assert seq.num_frames == 7
        assert seq.native_index("cam0", 0) == 3 and seq.native_index("cam1", 0) == 0
        np.testing.assert_array_equal(seq.frame("cam0", 2), seq.cameras[0].source.read(5))


def test_joints_csv_with_header(make_recording):
    folder = make_recording(cameras=2, frames=6, joints=False)
    rows = ["x" + ",y" * 50] + [",".join(["1.5"] * 51)] * 6
    (folder / "joints3d.csv").write_text("\n".join(rows) + "\n")
    with open_sequence(folder) as seq:
        assert seq.joints3d.shape == (6, 17, 3) and seq.joints3d[0, 0, 0] == 1.5


def test_manifest_dataset(make_recording, tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    for name in ("S1_walk", "S9_walk"):
        rec = make_recording(name=name, cameras=2, frames=5)
        rec.rename(root / name)
    doc = {"format": "mcss-multiview-dataset", "version": 1,
           "sequences": [{"name": "S1_walk", "path": "S1_walk", "subject": "S1", "action": "walk"},
                         {"name": "S9_walk", "path": "S9_walk", "subject": "S9", "action": "walk"}],
           "splits": {"train": ["S1"], "test": ["S9"]}}
    (root / "manifest.json").write_text(json.dumps(doc))
    ds = open_dataset(root)
    assert ds.kind == "manifest" and ds.names == ["S1_walk", "S9_walk"]
    assert ds.subjects == ["S1", "S9"] and ds.splits["test"] == ["S9"]
    assert [e.name for e in ds.for_subjects(["S9"])] == ["S9_walk"]
    with ds.open("S9_walk") as seq:
        assert seq.subject == "S9" and seq.num_frames == 5
    with pytest.raises(UserInputError, match="no sequence named 'S2'"):
        ds.open("S2")


# -- bad input --------------------------------------------------------------------------------

def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        open_sequence(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="is not a recording"):
        open_sequence(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserInputError, match="is not a folder"):
        open_sequence(tmp_path / "file.txt")


def test_fps_mismatch_is_refused(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    write_mp4v(rec / "a.mp4", 5, 32, 32, fps=25)
    write_mp4v(rec / "b.mp4", 5, 32, 32, fps=50)
    with pytest.raises(UserInputError, match="different frame rates.*a=25.*b=50"):
        open_sequence(rec)


def test_calibration_names_matching_no_video(make_recording):
    folder = make_recording(cameras=2, frames=4, calibration=False, joints=False)
    cams = ring_cameras(2)
    doc = {"cameras": {"north": cams[0].to_dict(), "south": cams[1].to_dict()}}
    (folder / "calibration.json").write_text(json.dumps(doc))
    with pytest.raises(UserInputError, match="calibration.json"):
        open_sequence(folder)


def test_garbled_calibration(make_recording):
    folder = make_recording(cameras=2, frames=4, calibration=False, joints=False)
    (folder / "calibration.json").write_text("{not json")
    with pytest.raises(UserInputError, match="calibration.json"):
        open_sequence(folder)


def test_nan_in_joints_is_refused(make_recording):
    folder = make_recording(cameras=2, frames=4, joints=False)
    joints = np.zeros((4, 17, 3))
    joints[2, 5, 1] = np.nan
    np.savez(folder / "joints3d.npz", joints3d=joints)
    with pytest.raises(UserInputError, match=r"joints3d.npz: NaN .*frame 2"):
        open_sequence(folder)


@pytest.mark.parametrize(
    "content, message",
    [
        ("1,2,3\n", "row 1 has 3 values"),
        (",".join(["a"] * 51) + "\n" + ",".join(["1"] * 50 + ["x"]) + "\n", "non-numeric"),
    ],
)
def test_malformed_joints_csv(tmp_path, content, message):
    p = tmp_path / "joints3d.csv"
    p.write_text(content)
    with pytest.raises(UserInputError, match=message):
        load_joints3d(p)


def test_joints_npz_wrong_shape_or_garbage(tmp_path):
    p = tmp_path / "joints3d.npz"
    np.savez(p, joints3d=np.zeros((4, 16, 3)))
    with pytest.raises(UserInputError, match=r"expected shape \(T, 17, 3\)"):
        load_joints3d(p)
    p.write_bytes(b"garbage")
    with pytest.raises(UserInputError, match="not a readable npz"):
        load_joints3d(p)


def test_bad_offsets(make_recording):
    folder = make_recording(cameras=2, frames=4, joints=False)
    (folder / "sequence.toml").write_text("[offsets]\ncam7 = 1\n")
    with pytest.raises(UserInputError, match="unknown camera 'cam7'"):
        open_sequence(folder)
    (folder / "sequence.toml").write_text("[offsets]\ncam0 = -1\n")
    with pytest.raises(UserInputError, match="negative frame offset"):
        open_sequence(folder)
    (folder / "sequence.toml").write_text("[offsets\n")
    with pytest.raises(UserInputError, match="not valid TOML"):
        open_sequence(folder)


def test_bad_manifest(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(UserInputError, match="manifest"):
        open_dataset(root)
    (root / "manifest.json").write_text(
        '{"format": "mcss-multiview-dataset", "sequences": [{"path": "../../etc"}]}')
    with pytest.raises(UserInputError, match="leaves the dataset folder"):
        open_dataset(root)


def test_calibration_for_resized_video_is_scaled(make_recording):
    folder = make_recording(cameras=2, frames=4, calibration=False, joints=False)
    cams = ring_cameras(2, 128, 96)  # calibrated at twice the video size
    doc = {"cameras": {f"cam{i}": {**c.to_dict(), "size": [128, 96]} for i, c in enumerate(cams)}}
    (folder / "calibration.json").write_text(json.dumps(doc))
    with open_sequence(folder) as seq:
        np.testing.assert_allclose(seq.cameras[0].calibration.K[0, 0], cams[0].K[0, 0] / 2)
        assert any("K scaled" in w for w in seq.warnings)


def test_calibration_for_other_orientation_is_refused(make_recording):
    folder = make_recording(cameras=2, frames=4, calibration=False, joints=False)
    cams = ring_cameras(2, 48, 64)  # portrait calibration for landscape videos
    doc = {"cameras": {f"cam{i}": {**c.to_dict(), "size": [48, 64]} for i, c in enumerate(cams)}}
    (folder / "calibration.json").write_text(json.dumps(doc))
    with pytest.raises(UserInputError, match="calibrated for 48x64 images but its video is 64x48"):
        open_sequence(folder)


def test_calibrated_camera_without_video_is_reported(make_recording):
    folder = make_recording(cameras=2, frames=4, calibration=False, joints=False)
    cams = ring_cameras(3)
    doc = {"cameras": {f"cam{i}": c.to_dict() for i, c in enumerate(cams)}}
    (folder / "calibration.json").write_text(json.dumps(doc))
    with open_sequence(folder) as seq:
        assert seq.is_calibrated
        assert any("no video for calibrated camera(s) ['cam2']" in w for w in seq.warnings)


def _joints(frames: int) -> np.ndarray:
    return np.arange(frames * 17 * 3, dtype=np.float64).reshape(frames, 17, 3)


@pytest.mark.parametrize("box_frames, joint_frames, common, detail", [
    (12, None, 8, "cam0.mp4 10, cam1.mp4 8, boxes.npz 12"),  # boxes longer: trimmed, not refused
    (None, 12, 8, "cam0.mp4 10, cam1.mp4 8, joints3d.npz 12"),  # joints longer: now reported
    (6, None, 6, "cam0.mp4 10, cam1.mp4 8, boxes.npz 6"),  # boxes shorter: the common range
    (12, 7, 7, "cam0.mp4 10, cam1.mp4 8, joints3d.npz 7, boxes.npz 12"),
])
def test_every_per_frame_file_is_trimmed_to_the_common_range_with_one_warning(
        make_recording, box_frames, joint_frames, common, detail):
    folder = make_recording(cameras=2, frames=[10, 8], joints=False)
    if box_frames is not None:
        boxes = np.tile([1.0, 2.0, 30.0, 40.0], (2, box_frames, 1))
        boxes[:, :, 0] += np.arange(box_frames)  # frame t's box starts at x = 1 + t
        np.savez(folder / "boxes.npz", boxes=boxes, cameras=np.array(["cam0", "cam1"]))
    if joint_frames is not None:
        np.savez(folder / "joints3d.npz", joints3d=_joints(joint_frames))
    with open_sequence(folder) as seq:
        assert seq.num_frames == common
        warning = f"frame counts differ ({detail}); using the common {common} frames"
        assert seq.warnings == [warning] and seq.describe()["warnings"] == [warning]
        if box_frames is not None:
            assert seq.boxes.shape == (2, common, 4)
            np.testing.assert_array_equal(seq.boxes[1, :, 0], 1.0 + np.arange(common))
        if joint_frames is not None:
            np.testing.assert_array_equal(seq.joints3d, _joints(joint_frames)[:common])


def test_sparse_csv_boxes_never_shorten_the_sequence(make_recording):
    folder = make_recording(cameras=2, frames=[8, 8], joints=False)
    (folder / "boxes.csv").write_text("camera,frame,x0,y0,x1,y1\ncam0,2,1,2,3,4\n")
    with open_sequence(folder) as seq:  # boxes for frame 2 only: others have none, no warning
        assert seq.num_frames == 8 and seq.warnings == []
        assert np.isnan(seq.boxes[0, 3]).all() and seq.boxes[0, 2].tolist() == [1, 2, 3, 4]
    (folder / "boxes.csv").write_text("camera,frame,x0,y0,x1,y1\ncam1,9,1,2,3,4\n")
    with open_sequence(folder) as seq:  # a row past the end is dropped, and said so
        assert seq.num_frames == 8 and np.isnan(seq.boxes).all()
        assert seq.warnings == [
            "frame counts differ (cam0.mp4 8, cam1.mp4 8, boxes.csv 10); using the common 8 frames"]


def _pose2sim_trial(trial, cameras: int = 2, frames: int = 6) -> None:
    """A Pose2Sim trial: videos in videos/, no calibration of its own."""
    (trial / "videos").mkdir(parents=True)
    for c in range(cameras):
        write_mp4v(trial / "videos" / f"cam{c}.mp4", frames, 64, 48, camera=c)


def _calibration_json(folder, cameras: int = 2):
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"cameras": {f"cam{c}": {**cal.to_dict(), "size": [64, 48]}
                       for c, cal in enumerate(ring_cameras(cameras))}}
    (folder / "calibration.json").write_text(json.dumps(doc))


def test_pose2sim_project_layout_videos_and_calibration_subfolders(tmp_path):
    rec = tmp_path / "Demo"
    _pose2sim_trial(rec)
    _calibration_json(rec / "calibration")
    ds = open_dataset(rec)
    assert ds.kind == "recording" and ds.names == ["Demo"]
    with ds.open("Demo") as seq:
        assert seq.camera_names == ["cam0", "cam1"] and seq.num_frames == 6
        assert seq.is_calibrated and seq.path == rec  # files the Studio writes go to Demo/
        np.testing.assert_allclose(seq.cameras[1].calibration.K, ring_cameras(2)[1].K)


def test_pose2sim_batch_session_is_a_dataset_of_trials_sharing_its_calibration(tmp_path):
    session = tmp_path / "Batch"
    for trial in ("Trial_10", "Trial_2"):
        _pose2sim_trial(session / trial, frames=5)
    _calibration_json(session / "calibration")
    ds = open_dataset(session)
    assert ds.kind == "recordings" and ds.names == ["Trial_2", "Trial_10"]
    with ds.open("Trial_10") as seq:
        assert seq.is_calibrated and seq.num_frames == 5
    with open_sequence(session / "Trial_2") as seq:  # one trial alone finds ../calibration
        assert seq.is_calibrated


def test_pose2sim_calibration_folder_prefers_its_converted_toml(tmp_path):
    from mcss_studio.core.calibration import save_calibration_toml
    from mcss_studio.core.sources.folder import find_calibration_file

    rec = tmp_path / "rec"
    _pose2sim_trial(rec)
    (rec / "calibration").mkdir()
    (rec / "calibration" / "Calib.qca.txt").write_text("<calibration/>")
    save_calibration_toml(rec / "calibration" / "Calib_qualisys.toml",
                          {f"cam{c}": cal for c, cal in enumerate(ring_cameras(2))})
    assert find_calibration_file(rec) == rec / "calibration" / "Calib_qualisys.toml"
    (rec / "calibration" / "Calib_other.toml").write_text("")
    with pytest.raises(UserInputError, match="more than one .toml"):
        open_sequence(rec)


def test_flat_calibration_wins_and_flat_cameras_ignore_videos_folder(make_recording):
    folder = make_recording(cameras=2, frames=6, joints=False)
    (folder / "videos").mkdir()
    write_mp4v(folder / "videos" / "other.mp4", 6, 64, 48)
    with open_sequence(folder) as seq:
        assert seq.camera_names == ["cam0", "cam1"] and seq.is_calibrated
