"""How well detector-assisted labels triangulate on a real calibrated recording.

    python scripts/assist_reprojection.py RECORDING [--every 10] [--json] [--label 30,60]

RECORDING is a recording folder with a calibration (e.g. the Pose2Sim demo's videos and its
Qualisys Calib.qca.txt copied flat into one folder). For every --every-th frame the frame is
started from the detector's keypoints exactly as the Studio's "From detector" does
(core.label_edits.from_detector on an empty label: points of confidence >= 0.5, triangulated per
joint with the outlier view left out), and the reprojection error of every placed point is
collected. Printed: the median (and 90th percentile) error per camera and overall, of all
placed points and without the view each joint's triangulation left out as its outlier (with
three or more views; at most one per joint), and the share of joints triangulated.

Keypoints come from the recording's keypoint store (RECORDING/cache/keypoints, as
`mcss-data keypoints RECORDING` makes it), computed first when missing (needs the detector
extra).

--label FRAMES also stores those frames' assisted labels in the recording's project (made if
the folder is none yet), as the Studio's "From detector" would, for screenshots of the labelling
mode; frames that already have labels are left alone.

--shift cam03:4 pairs cam03's frame t+4 with the others' frame t (a synchronisation test).

--fit compares ways of fitting a calibration made at another image size to the videos (the
Pose2Sim demo is calibrated at 1088x1920, two of its videos are 1080x1920): "scale" (what the
data layer does: K scaled by the size ratio), "as-is" (K unchanged: the video lost columns at
the right edge) or "centre" (K unchanged but the principal point moved by half the lost columns:
a centred crop).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FITS = ("scale", "as-is", "centre")


def calibrations(folder: Path, seq, fit: str) -> list:
    """The sequence's calibrations, refitted to the videos the way `fit` says."""
    from mcss_studio.core.calibration import load_calibration, match_calibration
    from mcss_studio.core.sources.folder import find_calibration_file

    if fit == "scale":
        return [c.calibration for c in seq.cameras]
    path = find_calibration_file(folder)
    raw = match_calibration(load_calibration(path), seq.camera_names, path)
    out = []
    for cal, cam in zip(raw, seq.cameras):
        K = cal.K.copy()
        if fit == "centre" and cal.width:
            K[0, 2] -= (cal.width - cam.width) / 2
            K[1, 2] -= (cal.height - cam.height) / 2
        out.append(replace(cal, K=K, width=cam.width, height=cam.height))
    return out


def keypoint_store(folder: Path, seq):
    from mcss_studio.core.keypoint_store import compute_keypoints, keypoints_path, load_keypoints
    from mcss_studio.core.pose_detector import DETECTOR_ID, MediaPipeDetector

    path = keypoints_path(folder / "cache", seq)
    store = load_keypoints(path, seq, DETECTOR_ID)
    if store is None or not store.complete:
        with MediaPipeDetector() as detector:
            store = compute_keypoints(seq, path, detector)
    return store


def measure(seq, store, cals, every: int, shift: dict[int, int] | None = None) -> dict:
    from mcss_studio.core import label_edits as edits
    from mcss_studio.core.labels import VISIBLE, FrameLabel
    from mcss_studio.core.triangulate import CameraStack

    stack = CameraStack(cals)
    shift = shift or {}
    lo, hi = -min([0, *shift.values()]), seq.num_frames - max([0, *shift.values()])
    frames = list(range(lo, hi, every))
    errors, inlier = [], []
    fitted = 0
    for t in frames:
        joints, conf = store.frame(t)
        for c, k in shift.items():  # camera c's keypoints of frame t + k: a sync test
            joints[c], conf[c] = store.joints[c, t + k], store.confidence[c, t + k]
        empty = FrameLabel.empty(seq.name, t, seq.camera_names, "S")
        label = edits.from_detector(empty, joints, conf, stack)
        placed = label.visibility == VISIBLE
        errors.append(np.where(placed, label.error2d, np.nan))
        left_out = np.zeros_like(placed)  # the one view per joint the triangulation left out
        for j, view in label.extra.get("outliers", {}).items():
            left_out[view, j] = True
        inlier.append(np.where(placed & ~left_out, label.error2d, np.nan))
        fitted += int(np.isfinite(label.joints3d).all(axis=-1).sum())
    err, inl = np.stack(errors), np.stack(inlier)  # (F, C, J)

    def stats(a: np.ndarray) -> dict:
        a = a[np.isfinite(a)]
        return {"median": round(float(np.median(a)), 2), "p90": round(float(np.percentile(a, 90)),
                2), "points": int(a.size)}

    return {"frames": frames,
            "triangulated_share": round(fitted / (len(frames) * err.shape[2]), 3),
            "all": {"overall": stats(err), **{n: stats(err[:, c])
                                              for c, n in enumerate(seq.camera_names)}},
            "inliers": {"overall": stats(inl), **{n: stats(inl[:, c])
                                                  for c, n in enumerate(seq.camera_names)}}}


def store_labels(folder: Path, seq, store, frames: list[int]) -> None:
    from mcss_studio.core import label_edits as edits
    from mcss_studio.core.labels import FrameLabel, LabelStore
    from mcss_studio.core.project import create_project, is_project
    from mcss_studio.core.triangulate import CameraStack

    if not is_project(folder):
        create_project(folder, folder)
    stack = CameraStack([c.calibration for c in seq.cameras])
    with LabelStore.open(folder) as labels:
        for t in frames:
            if labels.get(seq.name, t) is None:
                joints, conf = store.frame(t)
                empty = FrameLabel.empty(seq.name, t, seq.camera_names, str(seq.subject or ""))
                labels.put(edits.from_detector(empty, joints, conf, stack))
        print(f"labels of frames {frames} in {labels.path} (revision {labels.revision})")


def main() -> int:
    from mcss_studio.core.sources.folder import open_recording

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recording")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--fit", default=",".join(FITS), help="comma-separated of " + ", ".join(FITS))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--shift", default="", help="CAMERA:K,... use camera's frame t+K with "
                    "frame t of the others (is a camera out of sync?)")
    ap.add_argument("--label", default="", help="comma-separated frames to store labels of")
    args = ap.parse_args()
    folder = Path(args.recording)
    with open_recording(folder) as seq:
        if not seq.is_calibrated:
            sys.exit(f"{folder}: not calibrated")
        store = keypoint_store(folder, seq)
        shift = {seq.camera_index(c): int(k) for c, k in
                 (item.split(":") for item in args.shift.split(",") if item)}
        results = {fit: measure(seq, store, calibrations(folder, seq, fit), args.every, shift)
                   for fit in args.fit.split(",")}
        if args.label:
            store_labels(folder, seq, store, [int(f) for f in args.label.split(",")])
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for fit, res in results.items():
        print(f"calibration fit '{fit}': {len(res['frames'])} frames (every {args.every}), "
              f"{res['triangulated_share']:.0%} of joints triangulated")
        for which in ("all", "inliers"):
            cells = ", ".join(f"{n} {s['median']:.1f} (p90 {s['p90']:.1f})"
                              for n, s in res[which].items())
            print(f"  median reprojection error px, {which} points: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
