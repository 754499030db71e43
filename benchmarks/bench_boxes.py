"""Subject boxes on the real Pose2Sim demo recordings: how often each method boxes the subject.

For every camera of Demo_SinglePerson, Demo_MultiPerson and Demo_Batch's trials (fetch them
with scripts/get_pose2sim_demo.sh), prints per box method the share of frames whose box has
IoU > 0.5 with a reference box, and the median IoU, over the frames that have a reference.

The reference is MediaPipe Pose 0.10.14 (core/pose_detector.py, needs the detector extra): its
person box (all 33 landmarks, widened by 10% a side) per (camera, frame). MediaPipe sees one
person per image and in Demo_MultiPerson often picks the second person, so every reference is
checked: the subject is bare-chested and the second person wears a white top, so a detection
whose torso (shoulders to hips) is unsaturated (median HSV saturation < 50) is on the second
person; that person's box is then painted grey and MediaPipe asked again; the new detection is
kept if its torso passes, else the frame has no reference. A reference shorter than 0.75 times
the camera's median reference height is a partial person (the re-detection sometimes boxes only
the head and shoulders) and excluded too. Counts of references kept, corrected and excluded
(second person, partial) are printed; --sheets writes contact sheets (every 10th frame:
reference red, corrected reference orange, each method's box in its colour) to look at them.

"detector" is MediaPipe itself, so its figures are not independent of the reference; the
geometric methods ("rig", "tracked", "background") never see it.

    python benchmarks/bench_boxes.py [ROOT] [--methods rig,tracked,background]
        [--cache DIR] [--sheets DIR] [--only TEXT]

ROOT defaults to data/pose2sim. References are cached in --cache (default
/tmp/mcss_bench_boxes) by recording path.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mcss_studio.core import open_dataset
from mcss_studio.core.boxes import compute_boxes_with_method
from mcss_studio.core.joints import JOINT_NAMES
from mcss_studio.core.sequence import MultiviewSequence
from mcss_studio.core.subject_boxes import box_iou, subject_boxes

RECORDINGS = [("Demo_SinglePerson", None), ("Demo_MultiPerson", None),
              ("Demo_Batch", "Trial_1"), ("Demo_Batch", "Trial_2")]
TORSO = [JOINT_NAMES.index(n) for n in ("l_shoulder", "r_shoulder", "r_hip", "l_hip")]
WHITE_TOP_SATURATION = 50  # the second person's top; the subject's bare skin is 65..130
SHORT_BOX = 0.75  # a reference shorter than this times the camera's median is a partial person
COLOURS = {"rig": (0, 220, 0), "tracked": (0, 160, 255), "background": (255, 0, 255),
           "detector": (255, 255, 0)}


def torso_saturation(rgb: np.ndarray, joints: np.ndarray) -> float:
    """Median HSV saturation inside the shoulders-hips quadrilateral (NaN when degenerate)."""
    quad = joints[TORSO]
    if not np.isfinite(quad).all():
        return float("nan")
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 1)
    if mask.sum() < 50:
        return float("nan")
    return float(np.median(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[mask > 0][:, 1]))


def reference(seq: MultiviewSequence, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reference boxes (C, T, 4) (NaN: none) and status (C, T): 0 kept, 1 corrected, 2 excluded
    (the second person, not re-found), 3 no detection, 4 excluded (a partial person)."""
    boxes, status = _detections(seq, cache)
    partial = _partial(boxes) & (status <= 1)
    return np.where(partial[..., None], np.nan, boxes), np.where(partial, 4, status)


def _partial(boxes: np.ndarray) -> np.ndarray:
    """(C, T) detections of part of the person only: a box shorter than SHORT_BOX times the
    camera's median reference height (MediaPipe re-asked with the second person greyed out
    sometimes boxes only the head and shoulders, or the body down to the hips). Uses nothing
    but the detections. MediaPipe's own visibility of the knees and ankles does not tell these
    apart: it is as low in whole-body detections of crossed or lifted legs."""
    height = boxes[..., 3] - boxes[..., 1]
    typical = np.nanmedian(height, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return height < SHORT_BOX * typical


def _detections(seq: MultiviewSequence, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's box per (camera, frame) checked for the second person (module doc): boxes
    (C, T, 4) and status (C, T) as `reference` without 4."""
    from mcss_studio.core.pose_detector import MediaPipeDetector

    key = hashlib.sha1(f"{seq.path}:{seq.name}".encode()).hexdigest()[:12]
    path = cache / f"reference_{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["boxes"], z["status"]
    C, T = len(seq.cameras), seq.num_frames
    boxes, status = np.full((C, T, 4), np.nan), np.full((C, T), 3)
    with MediaPipeDetector() as detector:
        for c in range(C):
            for t, rgb in enumerate(seq.iter_frames(c)):
                found = detector.detect(rgb)
                if not found.found:
                    continue
                if not torso_saturation(rgb, found.joints) < WHITE_TOP_SATURATION:
                    boxes[c, t], status[c, t] = found.box, 0
                    continue
                x0, y0, x1, y1 = np.round(found.box).astype(int)
                masked = rgb.copy()
                masked[max(y0, 0):y1, max(x0, 0):x1] = 128
                again = detector.detect(masked)
                if again.found and torso_saturation(rgb, again.joints) >= WHITE_TOP_SATURATION:
                    boxes[c, t], status[c, t] = again.box, 1
                else:
                    status[c, t] = 2
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, boxes=boxes, status=status)
    return boxes, status


def contact_sheet(seq: MultiviewSequence, ref: np.ndarray, status: np.ndarray,
                  found: dict[str, np.ndarray], out: Path) -> None:
    """Every 10th frame of every camera at 1/8 size, reference and method boxes drawn."""
    rows = []
    for c in range(len(seq.cameras)):
        tiles = []
        for t in range(0, seq.num_frames, 10):
            tile = cv2.resize(seq.frame(c, t), None, fx=0.125, fy=0.125,
                              interpolation=cv2.INTER_AREA)
            drawn = [(ref[c, t], (255, 0, 0) if status[c, t] == 0 else (255, 140, 0), 2)]
            drawn += [(b[c, t], COLOURS.get(m, (255, 255, 255)), 1) for m, b in found.items()]
            for box, colour, width in drawn:
                if np.isfinite(box).all():
                    x0, y0, x1, y1 = np.round(box * 0.125).astype(int)
                    cv2.rectangle(tile, (x0, y0), (x1, y1), colour, width)
            tiles.append(cv2.resize(tile, (136, 240)))
        rows.append(np.hstack(tiles))
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def run_method(seq: MultiviewSequence, method: str, cache: Path) -> np.ndarray:
    if method in ("rig", "tracked", "detector"):
        return subject_boxes(seq, method, cache_dir=cache).boxes
    return compute_boxes_with_method(seq, method)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", default="data/pose2sim")
    parser.add_argument("--methods", default="rig,tracked,background")
    parser.add_argument("--cache", default="/tmp/mcss_bench_boxes")
    parser.add_argument("--sheets", help="folder for contact sheets (PNG)")
    parser.add_argument("--only", help="only recordings whose name contains this text")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    root, cache = Path(args.root), Path(args.cache)
    print(f"{'recording':<22} {'camera':<6} {'refs':>4} {'fixed':>5} {'excl':>4} {'part':>4}  "
          + "  ".join(f"{m + ' >0.5':>12} {'med':>4}" for m in methods))
    for folder, name in RECORDINGS:
        if args.only and args.only not in f"{folder}/{name}":
            continue
        dataset = open_dataset(root / folder)
        with dataset.open(name or dataset.names[0]) as seq:
            ref, status = reference(seq, cache)
            found, seconds = {}, {}
            for m in methods:
                start = time.perf_counter()
                found[m] = run_method(seq, m, cache)
                seconds[m] = time.perf_counter() - start
            label = folder + (f"/{name}" if name else "")
            for c, cam in enumerate(seq.camera_names):
                has = np.isfinite(ref[c]).all(axis=1)
                cells = []
                for m in methods:
                    iou = np.nan_to_num(box_iou(found[m][c], ref[c]))[has]
                    cells.append(f"{100 * np.mean(iou > 0.5):11.0f}% {np.median(iou):4.2f}")
                counts = [np.sum(status[c] == s) for s in (1, 2, 4)]
                print(f"{label:<22} {cam:<6} {has.sum():4d} {counts[0]:5d} {counts[1]:4d} "
                      f"{counts[2]:4d}  " + "  ".join(cells))
            print(f"{'':<22} time: " + ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()))
            if args.sheets:
                Path(args.sheets).mkdir(parents=True, exist_ok=True)
                out = Path(args.sheets) / f"boxes_{label.replace('/', '_')}.png"
                contact_sheet(seq, ref, status, found, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
