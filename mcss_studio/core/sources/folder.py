"""A recording folder: one video or image folder per camera, optional calibration, 3D and boxes.

Two layouts are recognised (docs/FORMATS.md): flat (camera files, calibration, boxes and 3D
side by side) and the Pose2Sim project layout (camera videos in `videos/`, calibration in
`calibration/` of the recording or, for a batch trial, of its parent folder). Files the Studio
writes (boxes.npz, cache/) always go to the recording folder itself.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..camera import fit_calibration_to_image
from ..errors import UserInputError
from ..framesource import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, FrameSource, natural_key
from ..joints import NUM_JOINTS
from ..sequence import CameraView, MultiviewSequence, synchronise
from ..tomlio import read_toml

# also claim containers the reader refuses, so the user hears why instead of a missing camera
CAMERA_FILE_EXTENSIONS = (*VIDEO_EXTENSIONS, ".m4v", ".webm")
CALIBRATION_NAMES = ("calibration.toml", "calibration.json")
# folders that are never cameras even if they hold images
RESERVED_DIRS = {"cache", "runs", "calibration", "labels", "__pycache__"}
VIDEOS_SUBDIR = "videos"  # Pose2Sim: <trial>/videos/cam01.mp4
CALIBRATION_SUBDIR = "calibration"  # Pose2Sim: <trial or session>/calibration/Calib.qca.txt


def _has_images(folder: Path) -> bool:
    try:
        return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())
    except OSError:
        return False


def find_camera_files(folder: Path) -> list[tuple[str, Path]]:
    """(camera name, path) for each video file or image folder, in natural name order."""
    found = []
    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in CAMERA_FILE_EXTENSIONS:
            found.append((p.stem, p))
        elif p.is_dir() and p.name not in RESERVED_DIRS and _has_images(p):
            found.append((p.name, p))
    found.sort(key=lambda item: natural_key(item[0]))
    names = [n for n, _ in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserInputError(folder, f"two files claim camera name(s) {', '.join(dupes)}")
    return found


def camera_folder(folder: Path) -> Path:
    """Where a recording's camera files are: the folder itself, else its videos/ subfolder."""
    if find_camera_files(folder):
        return folder
    videos = folder / VIDEOS_SUBDIR
    if videos.is_dir() and find_camera_files(videos):
        return videos
    return folder


def is_recording_folder(folder: Path) -> bool:
    return folder.is_dir() and bool(find_camera_files(camera_folder(folder)))


def recording_subfolders(folder: Path) -> list[Path]:
    """Subfolders that are recordings themselves (a Pose2Sim batch session), in natural order."""
    try:
        subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                and p.name not in RESERVED_DIRS and p.name != VIDEOS_SUBDIR]
    except OSError:
        return []
    return sorted((p for p in subs if is_recording_folder(p)), key=lambda p: natural_key(p.name))


def _common_length(
    cams: list[tuple[str, Path]], sources: list[FrameSource], offsets: list[int],
    boxes: tuple[Path, np.ndarray] | None, joints: tuple[Path, np.ndarray] | None,
) -> tuple[int, list[str]]:
    """The frames every file covers, and one warning naming each file's length if they differ.

    Every per-frame file counts alike: a camera (its frames after its offset), the 3D joints
    and boxes.npz. A boxes.csv lists only frames that have a box, so it never shortens the
    sequence, but rows past the end are reported. Frames only some files cover are dropped,
    never guessed, and the warning says which file had how many.
    """
    lengths = [(p.name, s.frame_count - o, "" if o == 0 else f" after offset {o}")
               for (_, p), s, o in zip(cams, sources, offsets)]
    if joints is not None:
        lengths.append((joints[0].name, joints[1].shape[0], ""))
    if boxes is not None:
        lengths.append((boxes[0].name, boxes[1].shape[1], ""))
    counted = [n for name, n, _ in lengths if name != "boxes.csv"]
    common = min(counted)
    shown = [(name, n, note) for name, n, note in lengths if name != "boxes.csv" or n > common]
    if all(n == common for _, n, _ in shown):
        return common, []
    detail = ", ".join(f"{name} {n}{note}" for name, n, note in shown)
    return common, [f"frame counts differ ({detail}); using the common {common} frames"]


def _calibration_in(folder: Path, any_toml: bool) -> Path | None:
    """calibration.toml/.json, else (calibration/ folder) the one *.toml, else one *.qca.txt."""
    for name in CALIBRATION_NAMES:
        if (folder / name).is_file():
            return folder / name
    # Pose2Sim converts its source calibration to Calib_<kind>.toml next to it: that one wins
    for pattern in ("*.toml", "*.qca.txt") if any_toml else ("*.qca.txt",):
        found = sorted(folder.glob(pattern))
        if len(found) > 1:
            raise UserInputError(folder, f"more than one {pattern[1:]} calibration file")
        if found:
            return found[0]
    return None


def find_calibration_file(folder: Path) -> Path | None:
    """The recording's calibration: in the folder, its calibration/ subfolder, or (Pose2Sim
    batch trial, videos in videos/) the parent's calibration/ subfolder; the first place wins."""
    places = [(folder, False), (folder / CALIBRATION_SUBDIR, True)]
    if camera_folder(folder) != folder:
        places.append((folder.parent / CALIBRATION_SUBDIR, True))
    for place, any_toml in places:
        if place.is_dir():
            found = _calibration_in(place, any_toml)
            if found is not None:
                return found
    return None


def load_joints3d(path: Path) -> np.ndarray:
    """(T, 17, 3) float64 mm from joints3d.npz or joints3d.csv; NaN or bad shape refused."""
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "joints3d" not in data:
                    raise UserInputError(path, "has no array named 'joints3d'")
                arr = np.asarray(data["joints3d"], dtype=np.float64)
        except UserInputError:
            raise
        except Exception as exc:  # zip errors, pickled content, truncated file
            raise UserInputError(path, f"not a readable npz file ({exc})") from None
    else:
        arr = _read_joints_csv(path)
    if arr.ndim == 2 and arr.shape[1] == NUM_JOINTS * 3:
        arr = arr.reshape(-1, NUM_JOINTS, 3)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise UserInputError(path, f"expected shape (T, 17, 3), got {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise UserInputError(path, "has no frames")
    bad = ~np.isfinite(arr)
    if bad.any():
        frame = int(np.argwhere(bad.any(axis=(1, 2)))[0, 0])
        raise UserInputError(path, f"NaN or infinite values (first at frame {frame})")
    return arr


def _read_joints_csv(path: Path) -> np.ndarray:
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(path, f"cannot read: {exc}") from None
    if rows:
        try:
            float(rows[0][0])
        except ValueError:
            rows = rows[1:]  # header
    values = []
    for i, row in enumerate(rows):
        if len(row) != NUM_JOINTS * 3:
            raise UserInputError(path, f"row {i + 1} has {len(row)} values, expected 51")
        try:
            values.append([float(c) for c in row])
        except ValueError:
            raise UserInputError(path, f"row {i + 1} has a non-numeric value") from None
    return np.asarray(values, dtype=np.float64).reshape(-1, NUM_JOINTS * 3)


def _read_sequence_toml(path: Path, camera_names: list[str]) -> dict:
    meta = read_toml(path)
    offsets = meta.get("offsets", {})
    if not isinstance(offsets, dict):
        raise UserInputError(path, "[offsets] must be a table of camera = frames")
    for cam, off in offsets.items():
        if cam not in camera_names:
            raise UserInputError(path, f"offset for unknown camera {cam!r}")
        if not isinstance(off, int) or isinstance(off, bool):
            raise UserInputError(path, f"offset of camera {cam!r} must be an integer")
    return meta


def _fit_calibrations(
    path: Path, names: list[str], calibrations: list, sources: list[FrameSource]
) -> tuple[list, list[str]]:
    """Scale K to resized videos; refuse a calibration made for another image shape."""
    fitted, notes = [], []
    for name, cal, src in zip(names, calibrations, sources):
        if cal is not None and cal.width and cal.height:
            if abs(cal.width / cal.height - src.width / src.height) > 0.02:
                raise UserInputError(
                    path,
                    f"camera {name} is calibrated for {cal.width}x{cal.height} images but its "
                    f"video is {src.width}x{src.height} (wrong camera or rotated video?)",
                )
            cal, note = fit_calibration_to_image(cal, src.width, src.height)
            if note:
                notes.append(f"camera {name}: {note}")
        fitted.append(cal)
    return fitted, notes


def open_recording(folder: str | Path) -> MultiviewSequence:
    """Open a recording folder as a MultiviewSequence (frame-exact readers, lazy decode)."""
    from ..calibration import load_calibration, match_calibration
    from ..video import open_frame_source

    folder = Path(folder)
    if not folder.exists():
        raise UserInputError(folder, "does not exist")
    if not folder.is_dir():
        raise UserInputError(folder, "is not a folder")
    cams = find_camera_files(camera_folder(folder))
    if not cams:
        raise UserInputError(
            folder, "no camera videos or image folders found "
            "(expected e.g. cam0.mp4, cam1.mp4 or videos/cam0.mp4)"
        )
    names = [n for n, _ in cams]
    meta: dict = {}
    if (folder / "sequence.toml").is_file():
        meta = _read_sequence_toml(folder / "sequence.toml", names)
    offsets = [int(meta.get("offsets", {}).get(n, 0)) for n in names]

    fps_override = meta.get("fps")
    if fps_override is not None and (
        isinstance(fps_override, bool)
        or not isinstance(fps_override, (int, float))
        or not 0 < fps_override <= 1000
    ):
        raise UserInputError(
            folder / "sequence.toml", f"fps must be a positive number, not {fps_override!r}"
        )

    opened: dict[Path, FrameSource] = {}
    try:
        # videos first: image folders take the videos' rate (or sequence.toml's fps)
        for _, p in cams:
            if p.is_file():
                opened[p] = open_frame_source(p)
        video_fps = [s.fps for s in opened.values()]
        folder_fps = fps_override or (float(np.median(video_fps)) if video_fps else None)
        for _, p in cams:
            if p.is_dir():
                opened[p] = open_frame_source(p, fps=folder_fps)
        sources = [opened[p] for _, p in cams]
        if video_fps and max(video_fps) - min(video_fps) > 0.01 * max(video_fps):
            detail = ", ".join(f"{n}={opened[p].fps:g}" for n, p in cams if p.is_file())
            raise UserInputError(
                folder, f"cameras have different frame rates ({detail}); resample them first"
            )
        calibrations: list = [None] * len(cams)
        calib_path = find_calibration_file(folder)
        if calib_path is not None:
            in_file = load_calibration(calib_path)
            calibrations = match_calibration(in_file, names, calib_path)
            used = {id(c) for c in calibrations}
            unused = [n for n, c in in_file.items() if id(c) not in used]
            calibrations, notes = _fit_calibrations(calib_path, names, calibrations, sources)
            if unused:
                notes.append(f"{calib_path.name}: no video for calibrated camera(s) {unused}")
        else:
            notes = []
        num_frames, _ = synchronise(
            folder, names, [s.frame_count for s in sources], offsets
        )
        boxes = joints = None
        box_file = next((folder / n for n in ("boxes.npz", "boxes.csv")
                         if (folder / n).is_file()), None)
        if box_file is not None:
            from ..boxes import load_boxes_file

            boxes = load_boxes_file(box_file, names, None)
        joint_file = next((folder / n for n in ("joints3d.npz", "joints3d.csv")
                           if (folder / n).is_file()), None)
        if joint_file is not None:
            joints = load_joints3d(joint_file)
        num_frames, warnings = _common_length(
            cams, sources, offsets, None if boxes is None else (box_file, boxes),
            None if joints is None else (joint_file, joints))
        warnings += notes
        if joints is not None:
            joints = joints[:num_frames]
        if boxes is not None:  # a csv without boxes in the last frames: those have none (NaN)
            padded = np.full((len(names), num_frames, 4), np.nan)
            kept = min(num_frames, boxes.shape[1])
            padded[:, :kept] = boxes[:, :kept]
            boxes = padded
    except BaseException:
        for src in opened.values():
            src.close()
        raise
    views = [
        CameraView(name=n, source=s, offset=o, calibration=c)
        for n, s, o, c in zip(names, sources, offsets, calibrations)
    ]
    return MultiviewSequence(
        path=folder,
        name=str(meta.get("name", folder.name)),
        cameras=views,
        num_frames=num_frames,
        fps=float(fps_override or np.median([s.fps for s in sources])),
        joints3d=joints,
        boxes=boxes,
        subject=meta.get("subject"),
        action=meta.get("action"),
        warnings=warnings,
    )
