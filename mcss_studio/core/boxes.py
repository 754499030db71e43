"""Person boxes per (camera, synchronised frame): where the crop cache cuts the person out.

Boxes are float arrays (C, T, 4) of x0, y0, x1, y1 in each camera's native pixels, NaN where
there is no person. `compute_boxes` picks the best source available ("auto"):

1. "gt": 3D joints projected through each camera's calibration. Joints are skeleton centres
   (the head joint is inside the head, the feet joints at the ankles), so the joint bbox is
   padded on every side by GT_PAD_FRACTION of its larger side to cover the body volume, then
   clipped to the image.
2. "file": boxes loaded with the sequence (boxes.npz / boxes.csv, see docs/FORMATS.md).
3. "background": a weight-free detector for static rigs: temporal median background per camera,
   per-frame difference + threshold + morphology, largest connected component; boxes are then
   median-smoothed over time and gaps are filled by linear interpolation. Costs at most two
   decodes per camera: ~50 sampled frames read in ascending order (bounded by one pass), then
   one sequential detection pass.
4. "full": the whole frame.

Subject methods for real recordings (core/subject_boxes.py, measured in benchmarks/bench_boxes.py):
"rig" carves the foreground through every calibrated view and follows the 3D blob of the subject
("auto" uses it instead of "background" when every camera is calibrated); "tracked" follows the
most consistent 2D foreground blob per camera (no calibration needed; "auto" uses it otherwise);
"detector" takes MediaPipe's person per (camera, frame) (optional extra, never chosen by "auto").
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_open
from .errors import UserInputError
from .imageops import fast_area_resize
from .sequence import MultiviewSequence

BOX_METHODS = ("auto", "gt", "file", "rig", "tracked", "detector", "background", "full")
SUBJECT_METHODS = ("rig", "tracked", "detector")  # core/subject_boxes.py
GT_PAD_FRACTION = 0.18  # per side, of the larger side of the projected-joint bbox
MIN_BACKGROUND_FRAMES = 10  # fewer frames than this cannot model a background: "auto" -> "full"
ProgressFn = Callable[[int, int], None]


# -- geometry helpers --------------------------------------------------------------------------
def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip (..., 4) boxes to the image; boxes left with no area become NaN."""
    out = np.array(boxes, dtype=np.float64, copy=True)
    out[..., 0::2] = np.clip(out[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, height)
    empty = (out[..., 2] <= out[..., 0]) | (out[..., 3] <= out[..., 1])
    out[empty] = np.nan
    return out


def square_crop_box(
    box: np.ndarray | Sequence[float],
    margin: float = 0.2,
    width: int | None = None,
    height: int | None = None,
) -> np.ndarray:
    """Square crop region (..., 4) around box(es): same centre, side = max(w, h) * (1 + margin).

    NaN boxes (no person) become the largest centred square of the image when width and height
    are given (so every frame still yields a crop), else stay NaN. The square may extend past
    the image; the cache pads outside pixels.
    """
    b = np.asarray(box, dtype=np.float64)
    cx = (b[..., 0] + b[..., 2]) / 2
    cy = (b[..., 1] + b[..., 3]) / 2
    side = np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]) * (1.0 + margin)
    side = np.maximum(side, 1.0)
    if width is not None and height is not None:
        missing = ~np.isfinite(side) | ~np.isfinite(cx) | ~np.isfinite(cy)
        cx = np.where(missing, width / 2, cx)
        cy = np.where(missing, height / 2, cy)
        side = np.where(missing, float(min(width, height)), side)
    half = side / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=-1)


# -- sources -----------------------------------------------------------------------------------
def gt_boxes(seq: MultiviewSequence, pad_fraction: float = GT_PAD_FRACTION) -> np.ndarray:
    """Boxes from 3D joints projected into every camera, padded for body volume, clipped."""
    if seq.joints3d is None or not seq.is_calibrated:
        raise UserInputError(seq.path, "GT boxes need 3D joints and a calibration for every camera")
    joints = np.asarray(seq.joints3d, dtype=np.float64)[: seq.num_frames]
    out = np.full((len(seq.cameras), seq.num_frames, 4), np.nan)
    for c, cam in enumerate(seq.cameras):
        cal = cam.calibration
        assert cal is not None
        in_front = cal.to_camera(joints)[..., 2] > 1e-6  # (T, J)
        uv = cal.project(joints)  # (T, J, 2)
        uv = np.where(in_front[..., None], uv, np.nan)
        valid = in_front.any(axis=1)
        with np.errstate(all="ignore"):
            lo = np.nanmin(np.where(valid[:, None, None], uv, 0.0), axis=1)
            hi = np.nanmax(np.where(valid[:, None, None], uv, 0.0), axis=1)
        pad = pad_fraction * np.maximum(hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1])
        box = np.stack([lo[:, 0] - pad, lo[:, 1] - pad, hi[:, 0] + pad, hi[:, 1] + pad], axis=-1)
        box[~valid] = np.nan
        out[c, : len(box)] = clip_boxes(box, cam.width, cam.height)
    return out


def full_frame_boxes(seq: MultiviewSequence) -> np.ndarray:
    """The whole image of every camera and frame."""
    out = np.empty((len(seq.cameras), seq.num_frames, 4))
    for c, cam in enumerate(seq.cameras):
        out[c] = (0.0, 0.0, float(cam.width), float(cam.height))
    return out


def background_boxes(
    seq: MultiviewSequence,
    progress: ProgressFn | None = None,
    samples: int = 50,
    work_side: int = 320,
    threshold: int = 30,
    min_area_fraction: float = 0.002,
    smooth_window: int = 5,
) -> np.ndarray:
    """Static-rig detector: difference to a temporal-median background, largest blob's bbox.

    Works at a reduced resolution (longest side `work_side`) for speed; boxes are scaled back to
    native pixels. One sampled pass (random access) builds the background, one sequential pass
    detects. Frames with no blob larger than `min_area_fraction` of the image are filled by
    interpolation from neighbours (NaN when no frame of the camera has a detection).
    """
    C, T = len(seq.cameras), seq.num_frames
    out = np.full((C, T, 4), np.nan)
    total = C * T
    done = 0
    for c, cam in enumerate(seq.cameras):
        scale = min(1.0, work_side / max(cam.width, cam.height))
        size = (max(1, round(cam.width * scale)), max(1, round(cam.height * scale)))

        def small(rgb: np.ndarray, size: tuple[int, int] = size) -> np.ndarray:
            return fast_area_resize(rgb, size)

        picks = np.unique(np.linspace(0, T - 1, min(samples, T)).round().astype(int))
        background = np.median(np.stack([small(seq.frame(c, int(t))) for t in picks]), axis=0)
        background = background.astype(np.int16)
        min_area = min_area_fraction * size[0] * size[1]
        k_open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        k_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
        raw = np.full((T, 4), np.nan)
        for t, rgb in enumerate(seq.iter_frames(c)):
            diff = np.abs(small(rgb).astype(np.int16) - background).max(axis=2)
            mask = (diff > threshold).astype(np.uint8)
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k_open)
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k_close)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            if n > 1:
                best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
                x, y, w, h, area = stats[best]
                if area >= min_area:
                    raw[t] = (x, y, x + w, y + h)
            done += 1
            if progress is not None:
                progress(done, total)
        box = smooth_and_fill(raw, smooth_window) / scale
        out[c] = clip_boxes(box, cam.width, cam.height)
    return out


def smooth_and_fill(boxes: np.ndarray, window: int = 5) -> np.ndarray:
    """(T, 4) boxes: running median over `window` valid frames, gaps filled by interpolation."""
    boxes = np.asarray(boxes, dtype=np.float64)
    valid = np.isfinite(boxes).all(axis=1)
    if not valid.any():
        return np.full_like(boxes, np.nan)
    idx = np.flatnonzero(valid)
    vals = boxes[idx]
    if window > 1 and len(idx) >= window:
        half = window // 2
        padded = np.concatenate([vals[:1].repeat(half, 0), vals, vals[-1:].repeat(half, 0)])
        windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
        vals = np.median(windows, axis=-1)
    t = np.arange(len(boxes))
    return np.stack([np.interp(t, idx, vals[:, k]) for k in range(4)], axis=1)


def choose_box_method(seq: MultiviewSequence) -> str:
    """What "auto" resolves to for this sequence: gt > file > rig (calibrated) > tracked.

    The foreground methods need a few frames to model the background; with fewer than
    MIN_BACKGROUND_FRAMES frames "full" is used instead.
    """
    if seq.joints3d is not None and seq.is_calibrated:
        return "gt"
    if seq.boxes is not None:
        return "file"
    if seq.num_frames >= MIN_BACKGROUND_FRAMES:
        return "rig" if seq.is_calibrated and len(seq.cameras) >= 2 else "tracked"
    return "full"


def compute_boxes_with_method(
    seq: MultiviewSequence, method: str = "auto", progress: ProgressFn | None = None
) -> tuple[np.ndarray, str]:
    """(C, T, 4) person boxes and the method actually used (BOX_METHODS but "auto")."""
    if method not in BOX_METHODS:
        raise UserInputError(None, f"unknown box method {method!r}; use one of {BOX_METHODS}")
    if method == "auto":
        method = choose_box_method(seq)
    if method == "gt":
        return gt_boxes(seq), "gt"
    if method == "file":
        if seq.boxes is None:
            raise UserInputError(seq.path, "no boxes.npz or boxes.csv for this sequence")
        return np.asarray(seq.boxes, dtype=np.float64)[:, : seq.num_frames].copy(), "file"
    if method in SUBJECT_METHODS:
        from .subject_boxes import subject_boxes

        return subject_boxes(seq, method, progress=progress).boxes, method
    if method == "background":
        return background_boxes(seq, progress=progress), "background"
    return full_frame_boxes(seq), "full"


def compute_boxes(
    seq: MultiviewSequence, method: str = "auto", progress: ProgressFn | None = None
) -> np.ndarray:
    """(C, T, 4) person boxes; see the module docstring for the sources and their order."""
    return compute_boxes_with_method(seq, method, progress)[0]


def boxes_digest(boxes: np.ndarray) -> str:
    """Stable hash of a box array (for cache fingerprints)."""
    a = np.ascontiguousarray(np.asarray(boxes, dtype=np.float64))
    return hashlib.sha1(repr(a.shape).encode() + a.tobytes()).hexdigest()


# -- box files ---------------------------------------------------------------------------------
def _check_values(path: Path, boxes: np.ndarray, where: Callable[[int, int], str]) -> None:
    """Refuse infinities, half-missing boxes and inverted boxes."""
    if np.isinf(boxes).any():
        c, t = np.argwhere(np.isinf(boxes).any(axis=-1))[0]
        raise UserInputError(path, f"{where(c, t)}: infinite coordinate")
    nan = np.isnan(boxes)
    partial = nan.any(axis=-1) & ~nan.all(axis=-1)
    if partial.any():
        c, t = np.argwhere(partial)[0]
        raise UserInputError(path, f"{where(c, t)}: some coordinates missing (NaN)")
    with np.errstate(invalid="ignore"):
        inverted = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    if inverted.any():
        c, t = np.argwhere(inverted)[0]
        raise UserInputError(path, f"{where(c, t)}: x1 < x0 or y1 < y0")


def _load_npz(path: Path, camera_names: Sequence[str], num_frames: int | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "boxes" not in z or "cameras" not in z:
                raise UserInputError(path, "needs arrays 'boxes' (C, T, 4) and 'cameras' (C,)")
            raw = z["boxes"]
            names = [str(n) for n in np.asarray(z["cameras"]).ravel()]
    except UserInputError:
        raise
    except Exception as e:  # zip / format errors from numpy
        raise UserInputError(path, f"not a readable npz file ({type(e).__name__})") from None
    if raw.dtype.kind not in "fiu":
        raise UserInputError(path, f"'boxes' must be numeric, got dtype {raw.dtype}")
    if raw.ndim != 3 or raw.shape[2] != 4 or raw.shape[0] != len(names):
        raise UserInputError(
            path, f"'boxes' has shape {raw.shape}; expected ({len(names)}, T, 4) for the cameras"
        )
    if num_frames is None:
        num_frames = raw.shape[1]
    elif raw.shape[1] > num_frames:
        raise UserInputError(
            path, f"'boxes' has {raw.shape[1]} frames but the sequence has {num_frames}"
        )
    if len(set(names)) != len(names):
        raise UserInputError(path, "duplicate camera names in 'cameras'")
    out = np.full((len(camera_names), num_frames, 4), np.nan)
    index = {n: i for i, n in enumerate(camera_names)}
    for k, name in enumerate(names):
        if name not in index:
            raise UserInputError(path, f"unknown camera {name!r}; cameras are {list(camera_names)}")
        out[index[name], : raw.shape[1]] = raw[k]
    _check_values(path, out, lambda c, t: f"camera {camera_names[c]} frame {t}")
    return out


def _load_csv(path: Path, camera_names: Sequence[str], num_frames: int | None) -> np.ndarray:
    index = {n: i for i, n in enumerate(camera_names)}
    rows: dict[tuple[int, int], int] = {}
    values: dict[tuple[int, int], list[float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            expected = ["camera", "frame", "x0", "y0", "x1", "y1"]
            if header is None or [h.strip().lower() for h in header] != expected:
                raise UserInputError(path, f"line 1: header must be {','.join(expected)}")
            for row in reader:
                line = reader.line_num
                if not row or all(not v.strip() for v in row):
                    continue
                if len(row) != 6:
                    raise UserInputError(path, f"line {line}: expected 6 columns, got {len(row)}")
                name = row[0].strip()
                if name not in index:
                    raise UserInputError(
                        path, f"line {line}: unknown camera {name!r}; cameras are "
                        f"{list(camera_names)}"
                    )
                try:
                    frame = int(row[1])
                    coords = [float(v) for v in row[2:]]
                except ValueError:
                    raise UserInputError(path, f"line {line}: non-numeric value") from None
                if frame < 0 or (num_frames is not None and frame >= num_frames):
                    top = "" if num_frames is None else f"..{num_frames - 1}"
                    raise UserInputError(path, f"line {line}: frame {frame} out of range 0{top}")
                key = (index[name], frame)
                if key in rows:
                    raise UserInputError(
                        path, f"line {line}: camera {name} frame {frame} repeats line {rows[key]}"
                    )
                rows[key] = line
                values[key] = coords
    except UnicodeDecodeError:
        raise UserInputError(path, "not a UTF-8 text file") from None
    if num_frames is None:
        num_frames = 1 + max((t for _, t in values), default=-1)
    out = np.full((len(camera_names), num_frames, 4), np.nan)
    for key, coords in values.items():
        out[key] = coords
    _check_values(path, out, lambda c, t: f"line {rows.get((c, t), '?')}")
    return out


def load_boxes_file(
    path: str | os.PathLike[str], camera_names: Sequence[str], num_frames: int | None
) -> np.ndarray:
    """Read boxes.npz or boxes.csv into (C, T, 4) in `camera_names` order (NaN = none).

    T is `num_frames` (a file covering more frames is refused), or with None the file's own
    length: an npz's T, a csv's last frame + 1.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(path, "box file not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, camera_names, num_frames)
    if suffix == ".csv":
        return _load_csv(path, camera_names, num_frames)
    raise UserInputError(path, "box files must be .npz or .csv")


def save_boxes_npz(
    path: str | os.PathLike[str], boxes: np.ndarray, camera_names: Sequence[str],
    uncertain: np.ndarray | None = None,
) -> None:
    """Write boxes.npz (arrays `boxes` (C, T, 4) float64 and `cameras`, optionally `uncertain`
    (C, T) bool: the frames the method that made them doubts) atomically."""
    path = Path(path)
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or boxes.shape[0] != len(camera_names):
        raise ValueError(f"boxes shape {boxes.shape} does not match {len(camera_names)} cameras")
    extra = {} if uncertain is None else {"uncertain": np.asarray(uncertain, dtype=bool)}
    if "uncertain" in extra and extra["uncertain"].shape != boxes.shape[:2]:
        raise ValueError(f"uncertain shape {extra['uncertain'].shape} is not {boxes.shape[:2]}")
    with atomic_open(path, "wb") as f:
        np.savez(f, boxes=boxes, cameras=np.asarray([str(n) for n in camera_names]), **extra)


def save_boxes_csv(
    path: str | os.PathLike[str], boxes: np.ndarray, camera_names: Sequence[str]
) -> None:
    """Write boxes.csv (one row per camera and frame with a box) atomically."""
    path = Path(path)
    boxes = np.asarray(boxes, dtype=np.float64)
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["camera", "frame", "x0", "y0", "x1", "y1"])
        for c, name in enumerate(camera_names):
            for t in np.flatnonzero(np.isfinite(boxes[c]).all(axis=1)):
                w.writerow([name, int(t), *(repr(float(v)) for v in boxes[c, t])])
