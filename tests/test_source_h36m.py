"""Human3.6M source: real-format fixtures (CDF via cdflib's writer, mp4 videos, npz) in tmp_path."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from cdflib.cdfwrite import CDF

from mcss_studio.core import open_dataset
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.sources import h36m
from mcss_studio.core.sources.h36m_cameras import CAMERA_IDS, EXTRINSICS, published_calibration
from mcss_studio.core.sources.h36m_npz import load_positions_3d

VIDEO_SIZE = (64, 64)

# a standing person at the world origin (z up, mm), our 17-joint order
STANDING_17 = np.array(
    [
        [0, 0, 950], [-130, 0, 950], [-130, 0, 500], [-130, 0, 80],  # hip, right leg
        [130, 0, 950], [130, 0, 500], [130, 0, 80],  # left leg
        [0, 0, 1180], [0, 0, 1420], [0, 0, 1520], [0, 0, 1650],  # spine, thorax, neck, head
        [180, 0, 1400], [200, 0, 1130], [210, 0, 880],  # left arm
        [-180, 0, 1400], [-200, 0, 1130], [-210, 0, 880],  # right arm
    ],
    dtype=np.float64,
)


def pose32(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, 32, 3) H36M poses with unused joints as noise, and the expected (T, 17, 3) mapping."""
    rng = np.random.default_rng(seed)
    full = rng.uniform(-3000, 3000, size=(frames, 32, 3))
    expected = STANDING_17[None] + np.arange(frames)[:, None, None] * np.array([10.0, -5.0, 1.0])
    full[:, list(h36m.H36M32_TO_17)] = expected
    return full, expected


def write_cdf(path: Path, poses32: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = poses32.reshape(poses32.shape[0], -1)
    cdf = CDF(str(path), delete=True)
    spec = {"Variable": "Pose", "Data_Type": CDF.CDF_DOUBLE, "Num_Elements": 1,
            "Rec_Vary": True, "Dim_Sizes": list(flat.shape)}
    cdf.write_var(spec, var_data=flat[None])
    cdf.close()


def write_video(path: Path, frames: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = VIDEO_SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50.0, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((h, w, 3), (i * 20) % 256, np.uint8)
        writer.write(img)
    writer.release()


def make_action(root: Path, subject: str, action: str, counts: dict[str, int],
                poses: np.ndarray | None) -> None:
    for cam, n in counts.items():
        write_video(root / subject / "Videos" / f"{action}.{cam}.mp4", n)
    if poses is not None:
        write_cdf(root / subject / "MyPoseFeatures" / "D3_Positions" / f"{action}.cdf", poses)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "h36m"
    counts = dict(zip(CAMERA_IDS, (12, 11, 12, 13)))
    make_action(root, "S1", "Directions 1", counts, pose32(10)[0])
    make_action(root, "S5", "Walking", {CAMERA_IDS[0]: 4, CAMERA_IDS[2]: 4}, None)
    make_action(root, "S5", "_ALL 1", {CAMERA_IDS[0]: 2}, None)
    return root


def test_lists_sequences(root: Path, tmp_path: Path) -> None:
    assert h36m.is_h36m_root(root)
    assert not h36m.is_h36m_root(tmp_path / "nothing")
    assert not h36m.is_h36m_root(root / "S1")
    infos = h36m.list_h36m_sequences(root)
    assert [i.name for i in infos] == ["S1/Directions 1", "S5/Walking"]
    assert infos[0].cameras == CAMERA_IDS
    assert infos[1].cameras == (CAMERA_IDS[0], CAMERA_IDS[2])
    assert (infos[0].subject, infos[0].action) == ("S1", "Directions 1")
    ds = h36m.dataset(root)
    assert ds.kind == "h36m" and ds.names == ["S1/Directions 1", "S5/Walking"]
    assert open_dataset(root).kind == "h36m"  # the lead's entry point finds us
    with pytest.raises(UserInputError, match="not a Human3.6M folder"):
        h36m.list_h36m_sequences(tmp_path)


def test_open_common_range_and_joint_mapping(root: Path) -> None:
    info = h36m.list_h36m_sequences(root)[0]
    with info.open() as seq:
        assert seq.camera_names == list(CAMERA_IDS)
        assert [c.frames for c in seq.cameras] == [12, 11, 12, 13]
        assert seq.num_frames == 10  # poses are the shortest stream
        assert any("common 10 frames" in w and "D3_Positions=10" in w for w in seq.warnings)
        np.testing.assert_allclose(seq.joints3d, pose32(10)[1])
        assert seq.joints3d.shape == (10, 17, 3)
        assert seq.frame(CAMERA_IDS[1], 9).shape == (64, 64, 3)
        assert seq.subject == "S1" and seq.action == "Directions 1" and seq.fps == 50
        assert seq.is_calibrated


def test_video_shortest_without_poses(root: Path) -> None:
    with h36m.open_h36m_sequence(root, "S5", "Walking", cameras=[CAMERA_IDS[2]]) as seq:
        assert seq.num_frames == 4 and seq.joints3d is None
        assert seq.camera_names == [CAMERA_IDS[2]]


def test_published_cameras_see_a_person_at_the_origin(root: Path) -> None:
    # the original metadata R of S1 camera 54138969 (world->camera), as a check of conventions
    cal = published_calibration("S1", "54138969")
    np.testing.assert_allclose(
        cal.R, [[-0.9153617, 0.4018084, 0.0257475], [0.0515481, 0.1803735, -0.9822465],
                [-0.3993190, -0.8977836, -0.1858194]], atol=2e-6)
    for subject in EXTRINSICS:
        for cam in CAMERA_IDS:
            cal = published_calibration(subject, cam)
            np.testing.assert_allclose(cal.R @ cal.R.T, np.eye(3), atol=1e-6)
            depth = cal.to_camera(STANDING_17)[:, 2]
            assert np.all((depth > 3500) & (depth < 6500)), (subject, cam)
            uv = cal.project(STANDING_17)
            assert np.all((uv > 0) & (uv < [cal.width, cal.height])), (subject, cam)
            # the person is upright in the image: head above the feet
            assert uv[10, 1] < uv[3, 1] - 300
    with h36m.list_h36m_sequences(root)[0].open() as seq:
        for view in seq.cameras:  # K scaled to the 64x64 test videos
            uv = view.calibration.project(seq.joints3d[0])
            assert np.all((uv > 0) & (uv < 64))
        assert any("K scaled" in w for w in seq.warnings)


def test_calibration_json_overrides(root: Path) -> None:
    cam = CAMERA_IDS[3]
    doc = {"cameras": {cam: {"K": [[100, 0, 32], [0, 100, 32], [0, 0, 1]],
                             "R": np.eye(3).tolist(), "t": [0, 0, 5000], "size": [64, 64]}}}
    (root / "S1" / "calibration.json").write_text(json.dumps(doc))
    with h36m.open_h36m_sequence(root, "S1", "Directions 1") as seq:
        assert seq.cameras[3].calibration.K[0, 0] == 100
        np.testing.assert_allclose(seq.cameras[3].calibration.t, [0, 0, 5000])
        ref = published_calibration("S1", CAMERA_IDS[0])
        np.testing.assert_allclose(seq.cameras[0].calibration.R, ref.R)


def test_npz_used_when_cdf_absent(tmp_path: Path) -> None:
    root = tmp_path / "h36m"
    make_action(root, "S9", "Eating 2", dict.fromkeys(CAMERA_IDS, 6), None)
    full, expected = pose32(6, seed=3)
    make_action(root, "S9", "Sitting 1", dict.fromkeys(CAMERA_IDS, 6), None)
    positions = {"S9": {"Eating 2": (full / 1000.0).astype(np.float32),
                        "Sitting 1": expected[:5] / 1000.0}}  # already 17 joints
    np.savez_compressed(root / h36m.NPZ_NAME, positions_3d=positions)
    loaded = load_positions_3d(root / h36m.NPZ_NAME)
    assert loaded["S9"]["Eating 2"].shape == (6, 32, 3)
    with h36m.open_h36m_sequence(root, "S9", "Eating 2") as seq:
        assert seq.num_frames == 6
        assert not any("differ" in w for w in seq.warnings)
        np.testing.assert_allclose(seq.joints3d, expected, atol=0.05)  # float32 metres
    with h36m.open_h36m_sequence(root, "S9", "Sitting 1") as seq:
        assert seq.num_frames == 5
        np.testing.assert_allclose(seq.joints3d, expected[:5])
    assert h36m.load_h36m_joints3d(root, "S9", "Walking") is None


class _Hostile:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # unpickling this calls os.mkdir(target)
        return (os.mkdir, (self.target,))


def test_npz_hostile_pickle_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "h36m"
    make_action(root, "S1", "Walking", dict.fromkeys(CAMERA_IDS, 3), None)
    marker = tmp_path / "pwned"
    payload = {"S1": {"Walking": _Hostile(str(marker))}}
    np.savez(root / h36m.NPZ_NAME, positions_3d=np.array(payload, dtype=object))
    assert b"mkdir" in pickle.dumps(_Hostile("x"))
    with pytest.raises(UserInputError, match="refusing to unpickle"):
        h36m.open_h36m_sequence(root, "S1", "Walking")
    assert not marker.exists()


def test_bad_inputs(root: Path) -> None:
    (root / "S7").mkdir()
    with pytest.raises(UserInputError, match="Videos folder not found"):
        h36m.open_h36m_sequence(root, "S7", "Walking")
    with pytest.raises(UserInputError, match="subject folder not found"):
        h36m.open_h36m_sequence(root, "S2", "Walking")
    with pytest.raises(UserInputError, match=r"Walking\.55011271\.mp4: camera video missing"):
        h36m.open_h36m_sequence(root, "S5", "Walking")
    with pytest.raises(UserInputError, match="unknown camera"):
        h36m.open_h36m_sequence(root, "S5", "Walking", cameras=["123"])

    cdf = root / "S1" / "MyPoseFeatures" / "D3_Positions" / "Directions 1.cdf"
    cdf.write_bytes(b"\xcd\xf3\x00\x01" + os.urandom(300))
    with pytest.raises(UserInputError, match="not a readable CDF") as err:
        h36m.open_h36m_sequence(root, "S1", "Directions 1")
    assert "\n" not in str(err.value) and str(cdf) in str(err.value)

    poses, _ = pose32(10)
    poses[4, 13, 1] = np.nan
    write_cdf(cdf, poses)
    with pytest.raises(UserInputError, match="NaN or infinite values .first at frame 4"):
        h36m.open_h36m_sequence(root, "S1", "Directions 1")

    write_cdf(cdf, np.zeros((3, 48)))
    with pytest.raises(UserInputError, match="96"):
        h36m.load_d3_positions(cdf)

    bad_npz = root / h36m.NPZ_NAME
    bad_npz.write_bytes(b"not a zip")
    with pytest.raises(UserInputError, match="not a readable .npz"):
        load_positions_3d(bad_npz)
