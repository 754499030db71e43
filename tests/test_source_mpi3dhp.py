"""MPI-INF-3DHP source: real-format fixtures (annot.mat, camera.calibration, avi) in tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from mcss_studio.core import open_dataset
from mcss_studio.core.camera import Calibration
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.joints import JOINT_NAMES
from mcss_studio.core.sources import mpi3dhp
from tests.conftest import look_at

SIZE = 64
NUM_CAMS = 4

# a standing person (z up, mm) by MPI joint name
SKELETON = {
    "pelvis": (0, 0, 950), "spine": (0, 0, 1050), "spine2": (0, 0, 1150), "spine3": (0, 0, 1250),
    "spine4": (0, 0, 1350), "neck": (0, 0, 1450), "head": (0, 0, 1560), "head_top": (0, 0, 1700),
    "left_clavicle": (60, 0, 1420), "left_shoulder": (180, 0, 1400), "left_elbow": (200, 0, 1130),
    "left_wrist": (210, 0, 880), "left_hand": (215, 0, 800),
    "right_clavicle": (-60, 0, 1420), "right_shoulder": (-180, 0, 1400),
    "right_elbow": (-200, 0, 1130), "right_wrist": (-210, 0, 880), "right_hand": (-215, 0, 800),
    "left_hip": (130, 0, 950), "left_knee": (130, 20, 500), "left_ankle": (130, 0, 80),
    "left_foot": (130, 80, 30), "left_toe": (130, 150, 10),
    "right_hip": (-130, 0, 950), "right_knee": (-130, 20, 500), "right_ankle": (-130, 0, 80),
    "right_foot": (-130, 80, 30), "right_toe": (-130, 150, 10),
}
# ours -> MPI, written out by meaning independently of the module's table
OURS_TO_MPI = {
    "hip": "pelvis", "r_hip": "right_hip", "r_knee": "right_knee", "r_foot": "right_ankle",
    "l_hip": "left_hip", "l_knee": "left_knee", "l_foot": "left_ankle", "spine": "spine",
    "thorax": "neck", "neck": "head", "head": "head_top", "l_shoulder": "left_shoulder",
    "l_elbow": "left_elbow", "l_wrist": "left_wrist", "r_shoulder": "right_shoulder",
    "r_elbow": "right_elbow", "r_wrist": "right_wrist",
}


def world_poses(frames: int) -> np.ndarray:
    base = np.array([SKELETON[n] for n in mpi3dhp.MPI_JOINT_NAMES], dtype=np.float64)
    return base[None] + np.arange(frames)[:, None, None] * np.array([15.0, -10.0, 2.0])


def camera_at(centre: np.ndarray, target: np.ndarray) -> Calibration:
    R = look_at(centre, target)
    K = np.array([[60.0, 0, SIZE / 2], [0, 60.0, SIZE / 2], [0, 0, 1]])
    return Calibration(K=K, R=R, t=-R @ centre, width=SIZE, height=SIZE)


def rig(count: int) -> list[Calibration]:
    angles = np.linspace(0.3, 0.3 + 2 * np.pi, count, endpoint=False)
    return [
        camera_at(np.array([4000 * np.cos(a), 4000 * np.sin(a), 1000 + 100 * i]),
                np.array([0.0, 0.0, 900.0]))
        for i, a in enumerate(angles)
    ]


def write_calibration(path: Path, cals: list[Calibration]) -> None:
    lines = [mpi3dhp.CALIBRATION_HEADER]
    for i, cal in enumerate(cals):
        intr = np.eye(4)
        intr[:3, :3] = cal.K
        extr = np.eye(4)
        extr[:3, :3], extr[:3, 3] = cal.R, cal.t
        lines += [f"name          {i}", "  sensor      10 10", f"  size        {SIZE} {SIZE}",
                  "  animated    0",
                  "  intrinsic   " + " ".join(f"{v:.10g}" for v in intr.ravel()) + " ",
                  "  extrinsic   " + " ".join(f"{v:.10g}" for v in extr.ravel()) + " ",
                  "  radial      0"]
    path.write_text("\n".join(lines) + "\n")


def cell(arrays: list[np.ndarray]) -> np.ndarray:
    out = np.empty((len(arrays), 1), dtype=object)
    for i, a in enumerate(arrays):
        out[i, 0] = a
    return out


def write_annot(path: Path, cals: list[Calibration], world: np.ndarray, first_frame: int = 0
                ) -> None:
    frames = world.shape[0]
    annot3 = [c.to_camera(world).reshape(frames, -1) for c in cals]
    annot2 = [c.project(world).reshape(frames, -1) for c in cals]
    scipy.io.savemat(str(path), {
        "annot2": cell(annot2), "annot3": cell(annot3), "univ_annot3": cell([a * 0.9 for a in
                                                                              annot3]),
        "frames": np.arange(first_frame, first_frame + frames, dtype=np.float64)[:, None],
        "cameras": np.arange(len(cals), dtype=np.float64)[None],
    })


def write_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (SIZE, SIZE))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((SIZE, SIZE, 3), i * 20, np.uint8))
    writer.release()


def make_sequence(root: Path, subject: str, seq: str, frames: int = 8,
                  video_frames: list[int] | None = None, first_frame: int = 0
                  ) -> tuple[Path, list[Calibration], np.ndarray]:
    folder = root / subject / seq
    (folder / "imageSequence").mkdir(parents=True)
    cals = rig(NUM_CAMS)
    world = world_poses(frames)
    write_calibration(folder / "camera.calibration", cals)
    write_annot(folder / "annot.mat", cals, world, first_frame)
    counts = video_frames or [frames + first_frame] * NUM_CAMS
    for i, n in enumerate(counts):
        write_video(folder / "imageSequence" / f"video_{i}.avi", n)
    return folder, cals, world


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "mpi"
    make_sequence(root, "S1", "Seq1", frames=8, video_frames=[8, 9, 8, 10])
    (root / "S1" / "Seq2" / "imageSequence").mkdir(parents=True)
    (root / "S2" / "Seq1").mkdir(parents=True)  # no data: not a sequence
    return root


def test_mapping_table_matches_meaning() -> None:
    ours = [mpi3dhp.MPI_JOINT_NAMES[i] for i in mpi3dhp.MPI28_TO_17]
    assert ours == [OURS_TO_MPI[n] for n in JOINT_NAMES]
    assert len(set(mpi3dhp.MPI28_TO_17)) == 17


def test_lists_sequences(root: Path, tmp_path: Path) -> None:
    assert mpi3dhp.is_mpi3dhp_root(root)
    assert not mpi3dhp.is_mpi3dhp_root(root / "S1")
    assert [i.name for i in mpi3dhp.list_mpi3dhp_sequences(root)] == ["S1/Seq1", "S1/Seq2"]
    ds = mpi3dhp.dataset(root)
    assert ds.kind == "mpi3dhp" and ds.splits == {"train": ["S1"]}
    assert open_dataset(root).names == ["S1/Seq1", "S1/Seq2"]
    with pytest.raises(UserInputError, match="not an MPI-INF-3DHP folder"):
        mpi3dhp.list_mpi3dhp_sequences(tmp_path)


def test_joints_reproject_onto_annot2(root: Path) -> None:
    folder = root / "S1" / "Seq1"
    annot2 = scipy.io.loadmat(str(folder / "annot.mat"))["annot2"].ravel()
    with mpi3dhp.list_mpi3dhp_sequences(root)[0].open() as seq:
        assert seq.camera_names == [f"video_{i}" for i in range(NUM_CAMS)]
        assert seq.num_frames == 8
        assert any("common 8 frames" in w for w in seq.warnings)
        assert not any("disagrees" in w or "K scaled" in w for w in seq.warnings)
        assert seq.joints3d.shape == (8, 17, 3)
        expected = np.array([[SKELETON[OURS_TO_MPI[n]] for n in JOINT_NAMES]], dtype=float)
        np.testing.assert_allclose(seq.joints3d[:1], expected, atol=1e-6)
        for c, view in enumerate(seq.cameras):
            uv = view.calibration.project(seq.joints3d)
            want = annot2[c].reshape(8, 28, 2)[:, list(mpi3dhp.MPI28_TO_17)]
            np.testing.assert_allclose(uv, want, atol=1e-3)
            assert np.all((uv > 0) & (uv < SIZE))
        assert seq.fps == 25 and seq.frame("video_3", 7).shape == (SIZE, SIZE, 3)


def test_camera_choice_and_frame_offset(tmp_path: Path) -> None:
    root = tmp_path / "mpi"
    make_sequence(root, "S3", "Seq2", frames=5, first_frame=2)
    assert mpi3dhp.COMMON_CAMERAS == (0, 1, 2, 4, 5, 6, 7, 8)
    with mpi3dhp.open_mpi3dhp_sequence(root, "S3", "Seq2", cameras=[2, 0]) as seq:
        assert seq.camera_names == ["video_2", "video_0"]
        assert [c.offset for c in seq.cameras] == [2, 2]
        assert seq.num_frames == 5
        assert abs(float(seq.frame(0, 0).mean()) - 2 * 20) < 6  # native frame 2
    with pytest.raises(UserInputError, match="cannot use cameras"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S3", "Seq2", cameras=[0, 9])


def test_inconsistent_calibration_warns(tmp_path: Path) -> None:
    root = tmp_path / "mpi"
    folder, cals, _ = make_sequence(root, "S1", "Seq1", frames=4)
    moved = Calibration(K=cals[1].K, R=cals[1].R, t=cals[1].t + [0, 50, 0], width=SIZE,
                        height=SIZE)
    write_calibration(folder / "camera.calibration", [cals[0], moved] + cals[2:])
    with mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1") as seq:
        assert [w for w in seq.warnings if "disagrees" in w] == [
            "camera 1: annot3 disagrees with camera 0's by up to 50 mm through camera.calibration"
        ]


def test_bad_inputs(tmp_path: Path) -> None:
    root = tmp_path / "mpi"
    folder, cals, world = make_sequence(root, "S1", "Seq1", frames=4)
    calib = folder / "camera.calibration"
    annot = folder / "annot.mat"
    good_calibration = calib.read_text()

    with pytest.raises(UserInputError, match="sequence folder not found"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq9")

    calib.write_text("hello\n" + good_calibration)
    with pytest.raises(UserInputError, match="first line"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1")
    calib.write_text(good_calibration.replace("0 0 0 1 \n  extrinsic", "0 0 1 \n  extrinsic", 1))
    with pytest.raises(UserInputError, match=r"'intrinsic' needs 16 numbers, got 15") as err:
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1")
    assert str(err.value).startswith(str(calib))
    calib.write_text(good_calibration.replace("sensor      10 10", "sensor      10 x", 1))
    with pytest.raises(UserInputError, match="non-numeric"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1")

    write_calibration(calib, cals[:3])
    with pytest.raises(UserInputError, match="camera count mismatch: 3 cameras"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1")
    calib.write_text(good_calibration)

    (folder / "imageSequence" / "video_2.avi").unlink()
    with pytest.raises(UserInputError, match=r"video_2\.avi: camera video missing"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1")
    assert mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1", cameras=[0, 1]).num_frames == 4

    bad = world.copy()
    bad[2, 5, 0] = np.nan
    write_annot(annot, cals, bad)
    with pytest.raises(UserInputError, match="NaN"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1", cameras=[0, 1])

    write_annot(annot, cals[:3], world)  # annot.mat with 3 cameras, calibration with 4
    with pytest.raises(UserInputError, match="camera count mismatch"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1", cameras=[0, 1])

    annot.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(UserInputError, match="annot.mat: not a readable MATLAB file"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1", cameras=[0, 1])

    annot.unlink()
    with pytest.raises(UserInputError, match="annot.mat not found"):
        mpi3dhp.open_mpi3dhp_sequence(root, "S1", "Seq1", cameras=[0, 1])
