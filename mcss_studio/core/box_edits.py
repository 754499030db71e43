"""Corrections of person boxes: edit records, propagation in time and across calibrated views,
exact apply and undo, and transactional saving to the recording's box file.

A correction sets one camera's box at one frame ("key"). What it does to the other boxes:

- In time: the offset between the new and the old box (per coordinate) is blended into the
  same camera's boxes of the neighbouring frames, with a weight falling linearly from 1 at the
  corrected frame to 0 at `spread` + 1 frames away, or at the nearest frame already corrected
  by the user on that side, if that is closer. Corrected frames ("keyframes") are never moved by
  another frame's correction, so between two keyframes less than `spread` + 1 frames apart the
  offset to the automatic boxes is interpolated linearly from one keyframe to the other.
  Frames without a box (NaN) stay without one: only a frame the user draws on gets a new box.
- Across views (calibrated sequences, when asked): the corrected box's centre ray is
  intersected with the other views' box-centre rays (the median of the closest points along
  it, so one view boxing a bystander does not move it), giving the person's depth; the box
  back-projected at that depth and turned into an upright cylinder as wide as the box is a 3D
  person volume whose projection becomes every other view's box at that frame (a key there
  too, propagated in time alike).
  A frame where no other view has a box gives no depth, and the other views are left alone.

`BoxTrack` holds the boxes (C, T, 4) and the keyframe flags of one sequence with its box file.
`correct` returns a `BoxPatch` (every changed (camera, frame) with its exact values before and
after); `apply` writes the file first and changes the arrays only when the write succeeded, so
undo and redo restore exact arrays and the arrays never differ from the file. Saving goes
through core/atomic.py: a kill mid-write leaves the previous file, never half of one; a
read-only folder or full disk is a one-line UserInputError.

File: boxes.npz keeps `boxes` and `cameras` (docs/FORMATS.md) plus `corrected` (C, T) uint8,
the keyframe flags; a recording whose box file is boxes.csv keeps it (boxes only: its
keyframes live as long as the Studio session).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .boxes import save_boxes_csv
from .camera import Calibration
from .errors import UserInputError
from .geometry import undistort_points
from .sequence import MultiviewSequence

BOX_FILES = ("boxes.npz", "boxes.csv")  # the loader's order (core/sources/folder.py)
DEFAULT_SPREAD = 10  # frames each side a correction is blended into
MIN_SIDE = 2.0  # px: a box edited or blended smaller than this is widened to it


# -- propagation in time -----------------------------------------------------------------------
def blend_weights(frame: int, keyed: np.ndarray, spread: int) -> np.ndarray:
    """(T,) weights of a correction at `frame`: 1 there, falling linearly to 0 at spread + 1
    frames away or at the nearest keyframe on each side, whichever is closer; 0 elsewhere."""
    T = len(keyed)
    w = np.zeros(T)
    w[frame] = 1.0
    for direction in (-1, 1):
        reach = spread + 1
        t = frame + direction
        while 0 <= t < T and abs(t - frame) < reach:
            if keyed[t]:
                reach = abs(t - frame)
                break
            t += direction
        for d in range(1, reach):
            if 0 <= frame + direction * d < T:
                w[frame + direction * d] = 1.0 - d / reach
    return w


def _tidy(boxes: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(..., 4) boxes ordered (x0 < x1, y0 < y1), at least MIN_SIDE wide and high, clipped to
    the image when its (width, height) is given; NaN rows stay NaN."""
    b = np.array(boxes, dtype=np.float64, copy=True)
    lo = np.minimum(b[..., :2], b[..., 2:])
    hi = np.maximum(b[..., :2], b[..., 2:])
    if size is not None:
        lim = np.asarray(size, np.float64)
        lo, hi = np.clip(lo, 0, lim - MIN_SIDE), np.clip(hi, MIN_SIDE, lim)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, MIN_SIDE / 2)
    lo, hi = centre - half, centre + half
    if size is not None:  # widened past the image edge: slide back inside
        lim = np.asarray(size, np.float64)
        shift = np.maximum(0.0, -lo) - np.maximum(0.0, hi - lim)
        lo, hi = lo + shift, hi + shift
    return np.concatenate([lo, hi], axis=-1)


def propagate_in_time(row: np.ndarray, keyed: np.ndarray, frame: int, box: np.ndarray,
                      spread: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """One camera's boxes (T, 4) after setting `box` at `frame`, the offset blended into the
    neighbours (see the module docstring); keyed: (T,) the frames corrected before."""
    out = np.array(row, dtype=np.float64, copy=True)
    new = _tidy(np.asarray(box, np.float64), size)
    old = out[frame].copy()
    out[frame] = new
    if not (np.all(np.isfinite(old)) and np.all(np.isfinite(new))):
        return out  # a box drawn where there was none (or removed): no offset to blend
    w = blend_weights(frame, keyed, spread)
    w[frame] = 0.0
    near = w > 0  # NaN rows (no box) stay NaN
    out[near] = _tidy(out[near] + w[near, None] * (new - old), size)
    return out


# -- propagation across views ------------------------------------------------------------------
def _centre_ray(cal: Calibration, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World origin and unit direction of the ray through a box's centre."""
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    xy = undistort_points(centre, cal)
    d = cal.R.T @ np.array([xy[0], xy[1], 1.0])
    return cal.center, d / np.linalg.norm(d)


def _closest_along(o1: np.ndarray, d1: np.ndarray, o2: np.ndarray, d2: np.ndarray) -> float:
    """Parameter s of the point o1 + s d1 closest to the line o2 + u d2 (NaN when parallel)."""
    b = float(d1 @ d2)
    w0 = o1 - o2
    den = 1.0 - b * b
    if den < 1e-12:
        return float("nan")
    return (b * float(d2 @ w0) - float(d1 @ w0)) / den


CYLINDER_SAMPLES = 128  # points around the person cylinder (its outline to within 0.03 %)


def person_volume(cal: Calibration, box: np.ndarray, depth: float) -> np.ndarray:
    """(2 * CYLINDER_SAMPLES, 3) world points outlining the person volume of a box seen at
    `depth` (mm along the camera's axis): a cylinder whose axis runs along the image's vertical
    through the box centre at that depth, as wide as the box and as tall, so that any other
    view sees it as wide as this one (a person turns; seen from the side, no wider)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    edges = undistort_points(np.array([[box[0], cy], [box[2], cy], [cx, box[1]], [cx, box[3]]]),
                             cal)
    x0, x1 = edges[0, 0] * depth, edges[1, 0] * depth
    y0, y1 = edges[2, 1] * depth, edges[3, 1] * depth
    radius, centre = (x1 - x0) / 2, (x1 + x0) / 2
    angle = np.linspace(0.0, 2 * np.pi, CYLINDER_SAMPLES, endpoint=False)
    ring = np.stack([centre + radius * np.cos(angle), np.zeros_like(angle),
                     depth + radius * np.sin(angle)], axis=1)
    cam = np.concatenate([ring + [0.0, y0, 0.0], ring + [0.0, y1, 0.0]])
    return (cam - cal.t) @ cal.R  # R^T (x - t), row by row


def transfer_to_views(cam: int, box: np.ndarray, boxes: np.ndarray,
                      calibrations: Sequence[Calibration],
                      sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """(C, 4): for every other view, the projection of the person volume that `box` in view
    `cam` and the other views' boxes (C, 4) at the same frame triangulate; NaN where no box
    can be given (no other view with a box, behind a camera, outside an image)."""
    out = np.full((len(calibrations), 4), np.nan)
    if not np.all(np.isfinite(box)):
        return out
    o, d = _centre_ray(calibrations[cam], box)
    depths = []
    for k, cal in enumerate(calibrations):
        if k != cam and np.all(np.isfinite(boxes[k])):
            s = _closest_along(o, d, *_centre_ray(cal, boxes[k]))
            if np.isfinite(s) and s > 0:
                depths.append(s)
    if not depths:
        return out
    point = o + float(np.median(depths)) * d
    depth = float(calibrations[cam].to_camera(point)[2])
    corners = person_volume(calibrations[cam], box, depth)
    for k, cal in enumerate(calibrations):
        if k == cam:
            continue
        if np.any(cal.to_camera(corners)[:, 2] <= 1e-6):
            continue  # the volume reaches behind this camera: no sensible box
        uv = cal.project(corners)
        projected = np.concatenate([uv.min(axis=0), uv.max(axis=0)])
        w, h = sizes[k]
        if projected[2] <= 0 or projected[3] <= 0 or projected[0] >= w or projected[1] >= h:
            continue
        out[k] = _tidy(projected, (w, h))
    return out


# -- edits ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxPatch:
    """Every (camera, frame) one edit changed, with exact values before and after."""

    cams: np.ndarray  # (K,) int
    frames: np.ndarray  # (K,) int
    before: np.ndarray  # (K, 4)
    after: np.ndarray  # (K, 4)
    keyed_before: np.ndarray  # (K,) bool
    keyed_after: np.ndarray  # (K,) bool

    def __len__(self) -> int:
        return len(self.cams)

    @property
    def keys(self) -> list[tuple[int, int]]:
        """The (camera, frame) pairs made keyframes by this edit."""
        new = self.keyed_after & ~self.keyed_before
        return [(int(c), int(t)) for c, t in zip(self.cams[new], self.frames[new])]


def diff_patch(boxes: np.ndarray, keyed: np.ndarray, new_boxes: np.ndarray,
               new_keyed: np.ndarray) -> BoxPatch:
    """The patch that turns (boxes, keyed) into (new_boxes, new_keyed); NaN equals NaN."""
    same = (boxes == new_boxes) | (np.isnan(boxes) & np.isnan(new_boxes))
    changed = ~same.all(axis=-1) | (keyed != new_keyed)
    cams, frames = np.nonzero(changed)
    return BoxPatch(cams, frames, boxes[cams, frames].copy(), new_boxes[cams, frames].copy(),
                    keyed[cams, frames].copy(), new_keyed[cams, frames].copy())


def box_file_of(folder: Path) -> Path:
    """The box file a recording folder has (boxes.npz before boxes.csv), else where a new one
    goes (boxes.npz)."""
    for name in BOX_FILES:
        if (folder / name).is_file():
            return folder / name
    return folder / BOX_FILES[0]


def load_keyframes(path: Path, camera_names: Sequence[str], num_frames: int) -> np.ndarray:
    """(C, T) bool keyframe flags stored in a boxes.npz (all False when it has none)."""
    keyed = np.zeros((len(camera_names), num_frames), bool)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return keyed
    try:
        with np.load(path, allow_pickle=False) as z:
            if "corrected" not in z:
                return keyed
            flags = np.asarray(z["corrected"]).astype(bool)
            names = [str(n) for n in np.asarray(z["cameras"]).ravel()]
    except Exception:  # noqa: BLE001 - the boxes themselves were read by the loader already
        raise UserInputError(path, "unreadable 'corrected' flags") from None
    if flags.ndim != 2 or flags.shape[0] != len(names):
        raise UserInputError(path, f"'corrected' has shape {flags.shape}; expected "
                             f"({len(names)}, T)")
    index = {n: i for i, n in enumerate(camera_names)}
    n = min(num_frames, flags.shape[1])
    for k, name in enumerate(names):
        if name in index:
            keyed[index[name], :n] = flags[k, :n]
    return keyed


def save_box_file(path: Path, boxes: np.ndarray, keyed: np.ndarray,
                  camera_names: Sequence[str]) -> None:
    """Write the box file transactionally: boxes.npz with the keyframe flags, or boxes.csv."""
    if path.suffix.lower() == ".csv":
        save_boxes_csv(path, boxes, camera_names)
        return
    with atomic_open(path, "wb", fsync=True) as f:
        np.savez(f, boxes=np.asarray(boxes, np.float64),
                 cameras=np.asarray([str(n) for n in camera_names]),
                 corrected=np.asarray(keyed, np.uint8))


def open_box_track(seq: MultiviewSequence, automatic: np.ndarray | None) -> BoxTrack:
    """The boxes of a recording folder to correct: its box file's (with the keyframes saved
    there), else `automatic` ones (detected, from ground truth). UserInputError for a sequence
    that is no recording folder (nowhere to save them) or whose boxes are not known yet."""
    folder = Path(seq.path)
    if not folder.is_dir():
        raise UserInputError(folder, "box corrections are saved in a recording folder; "
                             "this sequence has none")
    path = box_file_of(folder)
    names, T = seq.camera_names, seq.num_frames
    if seq.boxes is not None:
        boxes = np.asarray(seq.boxes, np.float64)[:, :T]
    elif automatic is not None:
        boxes = np.asarray(automatic, np.float64)
    else:  # saving a correction now would write "no person" into every other frame
        raise UserInputError(folder, "the person boxes are still being detected; correct them "
                             "once the crop cache is built")
    keyed = load_keyframes(path, names, T) if seq.boxes is not None else None
    return BoxTrack(path, boxes, names, [(c.width, c.height) for c in seq.cameras],
                    [c.calibration for c in seq.cameras], keyed, sequence=seq.name)


class BoxTrack:
    """The person boxes of one sequence being corrected, and the file they are saved to."""

    def __init__(self, path: str | os.PathLike[str], boxes: np.ndarray, camera_names:
                 Sequence[str], sizes: Sequence[tuple[int, int]],
                 calibrations: Sequence[Calibration | None] | None = None,
                 keyed: np.ndarray | None = None, sequence: str = "") -> None:
        self.path = Path(path)
        self.sequence = sequence  # the name of the sequence these boxes are of
        self.boxes = np.array(boxes, dtype=np.float64, copy=True)
        self.camera_names = list(camera_names)
        self.sizes = [tuple(int(v) for v in s) for s in sizes]
        C, T = self.boxes.shape[:2]
        if self.boxes.shape != (C, T, 4) or C != len(self.camera_names) or C != len(self.sizes):
            raise ValueError(f"boxes {self.boxes.shape} do not match {len(self.camera_names)} "
                             "cameras")
        self.keyed = np.zeros((C, T), bool) if keyed is None else np.array(keyed, bool)
        cals = list(calibrations) if calibrations is not None else []
        self.calibrations = cals if len(cals) == C and all(c is not None for c in cals) else None

    @property
    def calibrated(self) -> bool:
        return self.calibrations is not None

    # -- edits --------------------------------------------------------------------------------
    def correct(self, cam: int, frame: int, box: Sequence[float], spread: int = DEFAULT_SPREAD,
                other_views: bool = False) -> BoxPatch:
        """The patch of setting `box` in view `cam` at `frame` (see the module docstring);
        nothing is changed until it is applied."""
        boxes, keyed = self.boxes.copy(), self.keyed.copy()
        new = _tidy(np.asarray(box, np.float64), self.sizes[cam])
        keys = [(cam, new)]
        if other_views and self.calibrations is not None:
            moved = boxes[:, frame].copy()
            moved[cam] = new
            derived = transfer_to_views(cam, new, moved, self.calibrations, self.sizes)
            keys += [(k, derived[k]) for k in range(len(derived))
                     if k != cam and np.all(np.isfinite(derived[k]))]
        for c, b in keys:
            boxes[c] = propagate_in_time(boxes[c], keyed[c], frame, b, spread, self.sizes[c])
            keyed[c, frame] = True
        return diff_patch(self.boxes, self.keyed, boxes, keyed)

    def remove(self, cam: int, frame: int) -> BoxPatch:
        """The patch of removing one box (no person in that view then), a keyframe too."""
        boxes, keyed = self.boxes.copy(), self.keyed.copy()
        boxes[cam, frame] = np.nan
        keyed[cam, frame] = True
        return diff_patch(self.boxes, self.keyed, boxes, keyed)

    def apply(self, patch: BoxPatch, forward: bool = True) -> None:
        """Apply (or with forward False, take back) a patch: the file is written first, the
        arrays change only when it is (UserInputError otherwise, nothing changed)."""
        boxes, keyed = self.boxes.copy(), self.keyed.copy()
        boxes[patch.cams, patch.frames] = patch.after if forward else patch.before
        keyed[patch.cams, patch.frames] = patch.keyed_after if forward else patch.keyed_before
        save_box_file(self.path, boxes, keyed, self.camera_names)
        self.boxes, self.keyed = boxes, keyed
