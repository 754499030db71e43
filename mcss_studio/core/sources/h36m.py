"""Human3.6M in its original layout, opened as MultiviewSequences.

Layout (as distributed by the dataset's site):

    <root>/S1/Videos/<Action> <n>.<camera id>.mp4          4 cameras, 50 fps
    <root>/S1/MyPoseFeatures/D3_Positions/<Action> <n>.cdf  variable "Pose" (1, T, 96), mm, world
    <root>/data_3d_h36m.npz                                optional, VideoPose3D's preprocessed
                                                           poses (metres); used when a CDF is absent
    <root>/S1/calibration.json or <root>/calibration.json  optional, overrides published cameras

The four videos and the poses differ by a few frames; the common range is used and a warning says
so. Camera names are the Human3.6M camera ids ("54138969", ...). Cameras come from the published
parameters (see h36m_cameras.py) unless a calibration.json (docs/FORMATS.md) names the camera.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..camera import Calibration, fit_calibration_to_image
from ..errors import UserInputError
from ..joints import NUM_JOINTS
from ..sequence import CameraView, MultiviewSequence, synchronise
from .base import Dataset, SequenceEntry
from .h36m_cameras import CAMERA_IDS, published_calibration
from .h36m_npz import load_positions_3d

# Human3.6M 32-joint skeleton -> our 17 joints (core/joints.py order), by meaning:
# hip<-0 Hips, r_hip<-1 RightUpLeg, r_knee<-2 RightLeg, r_foot<-3 RightFoot, l_hip<-6 LeftUpLeg,
# l_knee<-7 LeftLeg, l_foot<-8 LeftFoot, spine<-12 Spine1, thorax<-13 Neck, neck<-14 Head,
# head<-15 head end site, l_shoulder<-17 LeftArm, l_elbow<-18 LeftForeArm, l_wrist<-19 LeftHand,
# r_shoulder<-25 RightArm, r_elbow<-26 RightForeArm, r_wrist<-27 RightHand (VideoPose3D's choice).
H36M32_TO_17: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
NUM_H36M_JOINTS = 32

NPZ_NAME = "data_3d_h36m.npz"
CALIBRATION_NAME = "calibration.json"
POSES_STREAM = "D3_Positions"  # how the 3D stream is named in frame-count warnings
SPLITS = {  # the usual protocol (DESIGN.md section 2)
    "train": ["S1", "S5", "S6", "S7", "S8"],
    "test": ["S9", "S11"],
    "labelled": ["S1"],
}

_SUBJECT_RE = re.compile(r"^S\d+$")
_VIDEO_RE = re.compile(r"^(?P<action>.+)\.(?P<camera>\d{8})\.mp4$", re.IGNORECASE)


@dataclass(frozen=True)
class SequenceInfo:
    """One subject/action of a Human3.6M root; `open()` gives the MultiviewSequence."""

    root: Path
    subject: str
    action: str
    cameras: tuple[str, ...] = field(default=CAMERA_IDS)  # camera ids that have a video here

    @property
    def name(self) -> str:
        return f"{self.subject}/{self.action}"

    def open(self, cameras: list[str] | None = None) -> MultiviewSequence:
        return open_h36m_sequence(self.root, self.subject, self.action, cameras)


# --------------------------------------------------------------------------- discovery


def _subject_dirs(root: Path) -> list[Path]:
    try:
        found = [p for p in root.iterdir() if p.is_dir() and _SUBJECT_RE.match(p.name)]
    except OSError:
        return []
    return sorted(found, key=lambda p: int(p.name[1:]))


def _videos(subject_dir: Path) -> dict[str, dict[str, Path]]:
    """{action: {camera id: video path}} of one subject's Videos folder."""
    actions: dict[str, dict[str, Path]] = {}
    videos = subject_dir / "Videos"
    if not videos.is_dir():
        return actions
    for p in videos.iterdir():
        m = _VIDEO_RE.match(p.name)
        if m and p.is_file() and m["camera"] in CAMERA_IDS:
            actions.setdefault(m["action"], {})[m["camera"]] = p
    return actions


def is_h36m_root(path: str | Path) -> bool:
    """True when `path` holds S<n>/Videos folders (the Human3.6M layout)."""
    root = Path(path)
    return root.is_dir() and any((s / "Videos").is_dir() for s in _subject_dirs(root))


def list_h36m_sequences(root: str | Path) -> list[SequenceInfo]:
    """Every subject/action with at least one camera video, subjects in numeric order."""
    root = Path(root)
    if not is_h36m_root(root):
        raise UserInputError(root, "not a Human3.6M folder (expected S1/Videos/*.mp4 and so on)")
    infos = []
    for subject_dir in _subject_dirs(root):
        for action, cams in sorted(_videos(subject_dir).items()):
            if action.startswith("_ALL"):  # the dataset's concatenated clips, not a sequence
                continue
            present = tuple(c for c in CAMERA_IDS if c in cams)
            infos.append(SequenceInfo(root, subject_dir.name, action, present))
    if not infos:
        raise UserInputError(
            root, "no Human3.6M videos found (expected S1/Videos/<Action>.<camera id>.mp4)"
        )
    return infos


def dataset(root: str | Path) -> Dataset:
    """The root as a Dataset (kind "h36m") with the usual subject splits."""
    root = Path(root)
    entries = [
        SequenceEntry(name=i.name, subject=i.subject, action=i.action, opener=i.open)
        for i in list_h36m_sequences(root)
    ]
    return Dataset(root=root, kind="h36m", sequences=entries, splits={k: list(v) for k, v in
                                                                       SPLITS.items()})


# --------------------------------------------------------------------------- 3D poses


def _to_17_joints(source: Path, positions: np.ndarray, scale_to_mm: float) -> np.ndarray:
    """(T, 32, 3) in file units -> (T, 17, 3) float64 mm; NaN/inf and empty refused.

    Poses that already have 17 joints are taken to be in our order (a preprocessed file).
    """
    if positions.ndim != 3 or positions.shape[1:] not in ((NUM_H36M_JOINTS, 3), (NUM_JOINTS, 3)):
        raise UserInputError(
            source, f"expected poses of 32 (or 17) joints x 3, got shape {list(positions.shape)}"
        )
    if positions.shape[0] == 0:
        raise UserInputError(source, "contains no pose frames")
    if positions.shape[1] == NUM_H36M_JOINTS:
        positions = positions[:, H36M32_TO_17, :]
    joints = positions.astype(np.float64) * scale_to_mm
    bad = ~np.all(np.isfinite(joints), axis=(1, 2))
    if bad.any():
        raise UserInputError(
            source, f"poses contain NaN or infinite values (first at frame {int(np.argmax(bad))})"
        )
    return joints


def load_d3_positions(path: str | Path) -> np.ndarray:
    """A D3_Positions CDF file as (T, 17, 3) float64 mm, world frame."""
    import cdflib

    source = Path(path)
    if not source.is_file():
        raise UserInputError(source, "pose file not found")
    try:
        cdf = cdflib.CDF(str(source))
        pose = np.asarray(cdf.varget("Pose"))
    except Exception as exc:  # cdflib raises many types on garbled input
        raise UserInputError(source, f"not a readable CDF pose file ({type(exc).__name__}: "
                             f"{exc})") from None
    if pose.dtype.kind not in "fiu" or pose.size == 0 or pose.shape[-1] != 3 * NUM_H36M_JOINTS:
        raise UserInputError(
            source, f"variable 'Pose' should be (1, frames, 96) numbers, got {list(pose.shape)}"
        )
    return _to_17_joints(source, pose.reshape(-1, NUM_H36M_JOINTS, 3), 1.0)


@functools.lru_cache(maxsize=1)
def _npz_positions(path: str, mtime_ns: int, size: int) -> dict[str, dict[str, np.ndarray]]:
    """Parsed npz, cached by identity (the file is large and listed once per sequence)."""
    return load_positions_3d(path)


def _npz_actions(npz: Path) -> dict[str, dict[str, np.ndarray]]:
    st = npz.stat()
    return _npz_positions(str(npz), st.st_mtime_ns, st.st_size)


def load_h36m_joints3d(root: str | Path, subject: str, action: str) -> np.ndarray | None:
    """(T, 17, 3) mm from the action's CDF file, else from data_3d_h36m.npz, else None."""
    root = Path(root)
    cdf = root / subject / "MyPoseFeatures" / "D3_Positions" / f"{action}.cdf"
    if cdf.is_file():
        return load_d3_positions(cdf)
    npz = root / NPZ_NAME
    if npz.is_file():
        positions = _npz_actions(npz).get(subject, {}).get(action)
        if positions is not None:
            return _to_17_joints(npz, positions, 1000.0)  # VideoPose3D stores metres
    return None


# --------------------------------------------------------------------------- cameras


def _override_calibrations(root: Path, subject: str) -> tuple[Path | None, dict[str, Calibration]]:
    from ..calibration import load_calibration

    for path in (root / subject / CALIBRATION_NAME, root / CALIBRATION_NAME):
        if path.is_file():
            return path, load_calibration(path)
    return None, {}


def h36m_calibrations(
    root: str | Path, subject: str, camera_ids: list[str]
) -> tuple[list[Calibration | None], list[str]]:
    """Calibration per camera id (override file first, then published), plus warnings."""
    root = Path(root)
    path, override = _override_calibrations(root, subject)
    cals: list[Calibration | None] = []
    warnings = []
    for cam in camera_ids:
        cal = override.get(cam) or published_calibration(subject, cam)
        if cal is None:
            warnings.append(f"camera {cam}: no calibration for {subject} (not published"
                            + (f", not in {path}" if path else "") + ")")
        cals.append(cal)
    return cals, warnings


# --------------------------------------------------------------------------- opening


def open_h36m_sequence(
    root: str | Path, subject: str, action: str, cameras: list[str] | None = None
) -> MultiviewSequence:
    """One subject/action as a MultiviewSequence; `cameras` picks camera ids (default all 4)."""
    from ..video import open_frame_source

    root = Path(root)
    subject_dir = root / subject
    if not subject_dir.is_dir():
        raise UserInputError(subject_dir, "subject folder not found")
    videos_dir = subject_dir / "Videos"
    if not videos_dir.is_dir():
        raise UserInputError(videos_dir, "Videos folder not found")
    wanted = list(CAMERA_IDS) if cameras is None else [str(c) for c in cameras]
    unknown = [c for c in wanted if c not in CAMERA_IDS]
    if unknown or not wanted:
        raise UserInputError(
            videos_dir, f"unknown camera id(s) {unknown or wanted}; use {', '.join(CAMERA_IDS)}"
        )
    paths = [videos_dir / f"{action}.{cam}.mp4" for cam in wanted]
    for p in paths:
        if not p.is_file():
            raise UserInputError(p, f"camera video missing for {subject}/{action}")

    joints = load_h36m_joints3d(root, subject, action)
    cals, warnings = h36m_calibrations(root, subject, wanted)
    sources = []
    try:
        for p in paths:
            sources.append(open_frame_source(p))
        names = list(wanted)
        counts = [s.frame_count for s in sources]
        if joints is not None:
            names.append(POSES_STREAM)
            counts.append(joints.shape[0])
        num_frames, sync_warnings = synchronise(subject_dir, names, counts, [0] * len(names))
        warnings = sync_warnings + warnings
        views = []
        for cam, src, cal in zip(wanted, sources, cals):
            if cal is not None:
                cal, note = fit_calibration_to_image(cal, src.width, src.height)
                if note:
                    warnings.append(f"camera {cam}: {note}")
            views.append(CameraView(name=cam, source=src, offset=0, calibration=cal))
    except BaseException:
        for s in sources:
            s.close()
        raise
    fps = float(np.median([s.fps for s in sources]))
    return MultiviewSequence(
        path=subject_dir,
        name=f"{subject}/{action}",
        cameras=views,
        num_frames=num_frames,
        fps=fps,
        joints3d=None if joints is None else joints[:num_frames],
        subject=subject,
        action=action,
        warnings=warnings,
    )
