"""`mcss-data keypoints PATH`: the pose detector's 2D keypoints of every camera and frame.

PATH is a project (its first source, its cache), or a recording or dataset folder (cache in
PATH/cache, where a project made there keeps it); --cache DIR puts the store elsewhere. The
store (core/keypoint_store.py) is saved as it goes, so a killed or interrupted run resumes, and
it is recomputed when the recording changed. Meant to run in the background: a progress bar on
a terminal, one summary line per sequence (or one JSON object with --json), a one-line error
and exit 2 when the detector is not installed or an input is bad.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..core.keypoint_store import KeypointStore, compute_keypoints, keypoints_path
from ..core.pose_detector import MediaPipeDetector, PoseDetector
from .common import progress_bar

PROG = "mcss-data"


def make_detector() -> PoseDetector:
    """The detector the command runs (a seam for tests, which have no mediapipe)."""
    return MediaPipeDetector()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keypoints", help="2D keypoints of every camera and frame from the pose "
                                         "detector (the 'detector' extra), for labelling assist")
    p.add_argument("path", help="project, recording or dataset folder")
    p.add_argument("--sequence", help="only this sequence of a dataset")
    p.add_argument("--cache", help="cache folder (default: the project's, else PATH/cache)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_keypoints)


def summary(store: KeypointStore, name: str) -> dict:
    """Per camera: frames done, frames with a person, median joint confidence there."""
    cams = []
    for c, cam in enumerate(store.cameras):
        found = store.done[c] & np.isfinite(store.boxes[c]).all(axis=-1)
        conf = store.confidence[c][found]
        cams.append({"name": cam, "done": int(store.done[c].sum()),
                     "person": int(found.sum()),
                     "median_confidence": round(float(np.median(conf)), 3) if conf.size else None})
    return {"sequence": name, "file": str(store.path), "frames": store.num_frames,
            "complete": store.complete, "detector": store.key["detector"], "cameras": cams}


def cmd_keypoints(args: argparse.Namespace) -> int:
    from ..core import open_dataset
    from ..core.project import is_project, read_project

    path = Path(args.path)
    project = read_project(path) if is_project(path) else None
    source = project.sources[0] if project else path
    cache_dir = Path(args.cache) if args.cache else (project.cache_dir if project
                                                     else path / "cache")
    ds = open_dataset(source)
    entries = [ds.entry(args.sequence)] if args.sequence else ds.sequences
    detector = make_detector()
    docs = []
    try:
        for entry in entries:
            with entry.open() as seq:
                for w in seq.warnings:
                    print(f"{PROG}: warning: {seq.path}: {w}", file=sys.stderr)
                with progress_bar(f"keypoints {seq.name}", unit="image") as progress:
                    store = compute_keypoints(seq, keypoints_path(cache_dir, seq), detector,
                                              progress=progress)
                doc = summary(store, seq.name)
                docs.append(doc)
                if not args.json:
                    people = ", ".join(f"{c['name']} {c['person']}/{c['done']}"
                                       for c in doc["cameras"])
                    print(f"{seq.name}: {doc['frames']} frames, person found in {people}; "
                          f"{doc['file']}")
    finally:
        close = getattr(detector, "close", None)
        if close is not None:
            close()
    if args.json:
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    return 0
