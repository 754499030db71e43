"""MPI-INF-3DHP training sequences (Mehta et al., 3DV 2017), opened as MultiviewSequences.

Layout (as distributed):

    <root>/S1/Seq1/imageSequence/video_<n>.avi   one video per camera, n = 0..13
    <root>/S1/Seq1/annot.mat                     MATLAB v5: cells annot2, annot3, univ_annot3
                                                 (one per camera), frames (T, 1), cameras (1, C)
    <root>/S1/Seq1/camera.calibration            "Skeletool Camera Calibration File V1.0" text

annot3{c} is (T, 28*3) in millimetres in camera c's coordinates; annot2{c} is (T, 28*2) pixels.
The calibration's extrinsic is world->camera ([R t; 0 1], mm) and its intrinsic is [K 0; 0 1].

World joints: annot3 of the first camera listed in annot.mat (camera 0) is taken back to the
world with that camera's extrinsic, X_world = R0^T (X_cam0 - t0), so that projecting joints3d
through every camera's calibration reproduces that camera's annot2. The metric annot3 is used,
not univ_annot3 (which is rescaled to a universal skeleton height and would not reproject).
A warning is added when another selected camera's annot3 disagrees with the world joints by more
than CONSISTENCY_TOLERANCE_MM (a sign of a calibration file from another sequence).

Camera names are the video file stems ("video_0", ...); annot row i is video frame frames[i]
of every camera (the videos' common offset is frames[0]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..camera import Calibration, fit_calibration_to_image
from ..errors import UserInputError
from ..sequence import CameraView, MultiviewSequence, synchronise
from .base import Dataset, SequenceEntry

# MPI-INF-3DHP's 28 joints (its mpii_get_joint_set.m order)
MPI_JOINT_NAMES: tuple[str, ...] = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)
NUM_MPI_JOINTS = 28

# Our 17 joints (core/joints.py, Human3.6M order) from the 28, matched by meaning. MPI's own
# 17-joint "relevant" subset holds the same joints in another order (head_top first, pelvis near
# the end), so it is not used positionally. Correspondences: hip<-pelvis, r/l_foot<-ankle (H36M's
# foot joint is the ankle), spine<-spine (the torso joint of MPI's relevant set), thorax<-neck
# (MPI's neck is the base of the neck between the shoulders), neck/nose<-head, head<-head_top.
MPI_TO_17_BY_NAME: tuple[str, ...] = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "spine", "neck", "head", "head_top",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
)
MPI28_TO_17: tuple[int, ...] = tuple(MPI_JOINT_NAMES.index(n) for n in MPI_TO_17_BY_NAME)

ALL_CAMERAS: tuple[int, ...] = tuple(range(14))
COMMON_CAMERAS: tuple[int, ...] = (0, 1, 2, 4, 5, 6, 7, 8)  # the 8 most papers use
CONSISTENCY_TOLERANCE_MM = 10.0
CALIBRATION_HEADER = "Skeletool Camera Calibration File V1.0"
_CALIBRATION_FIELDS = {"sensor": 2, "size": 2, "animated": 1, "intrinsic": 16, "extrinsic": 16}

_SUBJECT_RE = re.compile(r"^S\d+$")
_SEQ_RE = re.compile(r"^Seq\d+$")


@dataclass(frozen=True)
class SequenceInfo:
    """One subject/sequence of an MPI-INF-3DHP root; `open()` gives the MultiviewSequence."""

    root: Path
    subject: str
    action: str  # the sequence folder, "Seq1"

    @property
    def name(self) -> str:
        return f"{self.subject}/{self.action}"

    def open(self, cameras: list[int] | None = None) -> MultiviewSequence:
        return open_mpi3dhp_sequence(self.root, self.subject, self.action, cameras)


# --------------------------------------------------------------------------- discovery


def _numbered_dirs(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    try:
        found = [p for p in folder.iterdir() if p.is_dir() and pattern.match(p.name)]
    except OSError:
        return []
    return sorted(found, key=lambda p: int(re.sub(r"\D", "", p.name)))


def _sequence_dirs(root: Path) -> list[Path]:
    return [
        seq
        for subject in _numbered_dirs(root, _SUBJECT_RE)
        for seq in _numbered_dirs(subject, _SEQ_RE)
        if (seq / "imageSequence").is_dir() or (seq / "annot.mat").is_file()
    ]


def is_mpi3dhp_root(path: str | Path) -> bool:
    """True when `path` holds S<n>/Seq<m>/ folders with imageSequence/ or annot.mat."""
    root = Path(path)
    return root.is_dir() and bool(_sequence_dirs(root))


def list_mpi3dhp_sequences(root: str | Path) -> list[SequenceInfo]:
    """Every S<n>/Seq<m> of the root, in numeric order."""
    root = Path(root)
    seqs = _sequence_dirs(root) if root.is_dir() else []
    if not seqs:
        raise UserInputError(
            root, "not an MPI-INF-3DHP folder (expected S1/Seq1/imageSequence and annot.mat)"
        )
    return [SequenceInfo(root, s.parent.name, s.name) for s in seqs]


def dataset(root: str | Path) -> Dataset:
    """The root as a Dataset (kind "mpi3dhp"); all its subjects are training subjects."""
    root = Path(root)
    infos = list_mpi3dhp_sequences(root)
    entries = [
        SequenceEntry(name=i.name, subject=i.subject, action=i.action, opener=i.open)
        for i in infos
    ]
    subjects = list(dict.fromkeys(i.subject for i in infos))
    return Dataset(root=root, kind="mpi3dhp", sequences=entries, splits={"train": subjects})


# --------------------------------------------------------------------------- calibration


def load_mpi_calibration(path: str | Path) -> tuple[dict[int, Calibration], list[str]]:
    """camera.calibration as {camera number: Calibration} (world->camera, mm), plus warnings."""
    source = Path(path)
    if not source.is_file():
        raise UserInputError(source, "camera.calibration not found")
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(source, f"cannot read ({exc})") from None
    if not lines or lines[0].strip() != CALIBRATION_HEADER:
        raise UserInputError(source, f"first line is not '{CALIBRATION_HEADER}'")
    blocks: list[tuple[str, dict[str, list[float]]]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        key, values = parts[0], parts[1:]
        if key == "name":
            if len(values) != 1:
                raise UserInputError(source, f"line {lineno}: 'name' needs one value")
            blocks.append((values[0], {}))
            continue
        if not blocks:
            raise UserInputError(source, f"line {lineno}: '{key}' before any 'name'")
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            raise UserInputError(source, f"line {lineno}: '{key}' has non-numeric values") from None
        if not all(np.isfinite(numbers)):
            raise UserInputError(source, f"line {lineno}: '{key}' has non-finite values")
        expected = _CALIBRATION_FIELDS.get(key)
        if expected is not None and len(numbers) != expected:
            raise UserInputError(
                source, f"line {lineno}: '{key}' needs {expected} numbers, got {len(numbers)}"
            )
        blocks[-1][1][key] = numbers
    if not blocks:
        raise UserInputError(source, "contains no cameras")
    cams: dict[int, Calibration] = {}
    warnings = []
    for name, fields in blocks:
        if not name.isdigit():
            raise UserInputError(source, f"camera name {name!r} is not a camera number")
        for key in ("size", "intrinsic", "extrinsic"):
            if key not in fields:
                raise UserInputError(source, f"camera {name}: missing '{key}'")
        if fields.get("animated", [0.0])[0] != 0:
            raise UserInputError(source, f"camera {name}: animated cameras are not supported")
        intrinsic = np.array(fields["intrinsic"]).reshape(4, 4)
        extrinsic = np.array(fields["extrinsic"]).reshape(4, 4)
        K, R, t = intrinsic[:3, :3], extrinsic[:3, :3], extrinsic[:3, 3]
        if not np.allclose(K[2], [0, 0, 1]) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise UserInputError(source, f"camera {name}: intrinsic is not a pinhole matrix")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
            raise UserInputError(source, f"camera {name}: extrinsic rotation is not a rotation")
        if any(fields.get("radial", [0.0])):
            warnings.append(f"camera {name}: radial distortion in {source.name} is ignored")
        width, height = (int(v) for v in fields["size"])
        if int(name) in cams:
            raise UserInputError(source, f"camera {name} appears twice")
        cams[int(name)] = Calibration(K=K, R=R, t=t, width=width, height=height)
    return cams, warnings


# --------------------------------------------------------------------------- annotations


def _annot_cells(source: Path, mat: dict, key: str, count: int) -> list[np.ndarray]:
    """A MATLAB cell array of per-camera matrices as a list of float arrays."""
    if key not in mat:
        raise UserInputError(source, f"has no '{key}' variable")
    value = np.asarray(mat[key])
    if value.dtype == object:
        cells = value.ravel()
    else:  # a single camera saved as a plain matrix
        cells = np.empty(1, dtype=object)
        cells[0] = value
    if cells.size != count:
        raise UserInputError(
            source, f"camera count mismatch: '{key}' has {cells.size} cells, 'cameras' has {count}"
        )
    out = []
    for i, cell in enumerate(cells):
        arr = np.asarray(cell)
        if arr.dtype.kind not in "fiu":
            raise UserInputError(source, f"'{key}' cell {i} is not numeric")
        out.append(arr.astype(np.float64))
    return out


def load_annot(path: str | Path) -> tuple[list[int], np.ndarray, list[np.ndarray]]:
    """annot.mat as (camera numbers, frame numbers (T,), annot3 per camera (T, 28, 3) mm)."""
    import scipy.io

    source = Path(path)
    if not source.is_file():
        raise UserInputError(source, "annot.mat not found")
    try:
        mat = scipy.io.loadmat(str(source), variable_names=["annot3", "frames", "cameras"])
    except NotImplementedError:
        raise UserInputError(source, "MATLAB v7.3 files are not supported; save as -v7") from None
    except Exception as exc:  # scipy raises many types on garbled input
        raise UserInputError(source, f"not a readable MATLAB file ({type(exc).__name__})") from None
    if "cameras" not in mat or "frames" not in mat:
        raise UserInputError(source, "needs 'cameras' and 'frames' variables")
    cam_numbers = np.asarray(mat["cameras"]).ravel()
    if cam_numbers.dtype.kind not in "fiu" or not np.all(cam_numbers == np.round(cam_numbers)):
        raise UserInputError(source, "'cameras' must be camera numbers")
    cameras = [int(c) for c in cam_numbers]
    frames = np.asarray(mat["frames"]).ravel()
    if frames.dtype.kind not in "fiu" or frames.size == 0:
        raise UserInputError(source, "'frames' must be frame numbers")
    if frames[0] < 0 or not np.all(np.diff(frames) == 1):
        raise UserInputError(source, "'frames' must be consecutive frame numbers from 0 or more")
    annot3 = _annot_cells(source, mat, "annot3", len(cameras))
    poses = []
    for cam, arr in zip(cameras, annot3):
        if arr.ndim != 2 or arr.shape != (frames.size, NUM_MPI_JOINTS * 3):
            raise UserInputError(
                source,
                f"annot3 of camera {cam} is {list(arr.shape)}, expected "
                f"[{frames.size}, {NUM_MPI_JOINTS * 3}] (frames x 28 joints x 3)",
            )
        if not np.all(np.isfinite(arr)):
            raise UserInputError(source, f"annot3 of camera {cam} contains NaN or infinite values")
        poses.append(arr.reshape(frames.size, NUM_MPI_JOINTS, 3))
    return cameras, frames.astype(np.int64), poses


def camera_to_world(points_cam: np.ndarray, cal: Calibration) -> np.ndarray:
    """Invert x_cam = R @ X + t for points (..., 3)."""
    return (np.asarray(points_cam, dtype=np.float64) - cal.t) @ cal.R


# --------------------------------------------------------------------------- opening


def open_mpi3dhp_sequence(
    root: str | Path, subject: str, seq: str, cameras: list[int] | None = None
) -> MultiviewSequence:
    """One S<n>/Seq<m> as a MultiviewSequence; `cameras` are camera numbers (default: all)."""
    from ..video import open_frame_source

    folder = Path(root) / subject / seq
    if not folder.is_dir():
        raise UserInputError(folder, "sequence folder not found")
    annot_cams, frames, annot3 = load_annot(folder / "annot.mat")
    calib_path = folder / "camera.calibration"
    calibs, warnings = load_mpi_calibration(calib_path)
    if len(calibs) != len(annot_cams) or set(calibs) != set(annot_cams):
        raise UserInputError(
            calib_path,
            f"camera count mismatch: {len(calibs)} cameras ({_list(calibs)}) but annot.mat has "
            f"{len(annot_cams)} ({_list(annot_cams)})",
        )
    wanted = list(annot_cams) if cameras is None else [int(c) for c in cameras]
    missing = [c for c in wanted if c not in annot_cams]
    if missing or not wanted or len(set(wanted)) != len(wanted):
        raise UserInputError(
            folder, f"cannot use cameras {wanted}; this sequence has {_list(annot_cams)}"
        )

    # world joints from the reference camera's metric annot3
    ref = annot_cams[0]
    world28 = camera_to_world(annot3[0], calibs[ref])
    for cam in wanted:
        predicted = calibs[cam].to_camera(world28)
        err = float(np.max(np.linalg.norm(predicted - annot3[annot_cams.index(cam)], axis=-1)))
        if err > CONSISTENCY_TOLERANCE_MM:
            warnings.append(
                f"camera {cam}: annot3 disagrees with camera {ref}'s by up to {err:.0f} mm "
                "through camera.calibration"
            )
    joints = world28[:, MPI28_TO_17, :]

    names = [f"video_{c}" for c in wanted]
    paths = [folder / "imageSequence" / f"{n}.avi" for n in names]
    for p in paths:
        if not p.is_file():
            raise UserInputError(p, f"camera video missing for {subject}/{seq}")
    offset = int(frames[0])
    sources = []
    try:
        for p in paths:
            sources.append(open_frame_source(p))
        num_frames, sync_warnings = synchronise(
            folder,
            names + ["annot.mat"],
            [s.frame_count for s in sources] + [len(frames)],
            [offset] * len(names) + [0],
        )
        warnings = sync_warnings + warnings
        views = []
        for cam, name, src in zip(wanted, names, sources):
            cal, note = fit_calibration_to_image(calibs[cam], src.width, src.height)
            if note:
                warnings.append(f"camera {name}: {note}")
            views.append(CameraView(name=name, source=src, offset=offset, calibration=cal))
    except BaseException:
        for s in sources:
            s.close()
        raise
    fps_values = [s.fps for s in sources]
    if max(fps_values) - min(fps_values) > 0.01 * max(fps_values):
        warnings.append("cameras report different frame rates: " + ", ".join(
            f"{n}={f:g}" for n, f in zip(names, fps_values)))
    return MultiviewSequence(
        path=folder,
        name=f"{subject}/{seq}",
        cameras=views,
        num_frames=num_frames,
        fps=float(np.median(fps_values)),
        joints3d=joints[:num_frames],
        subject=subject,
        action=seq,
        warnings=warnings,
    )


def _list(numbers: object) -> str:
    return ", ".join(str(n) for n in sorted(numbers)) or "none"
