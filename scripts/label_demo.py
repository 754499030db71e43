"""Label a few frames of a synthetic dataset the way a user clicks, for the README's screenshots.

Usage: python scripts/label_demo.py DATASET [--frame N] [--sequence NAME]

Makes DATASET a project (if it is none) and stores, through the same edit functions the
labelling mode's clicks call (core.label_edits), labels of the subject's frames 0, 20, 40, 60
and N: every joint clicked in two views at its ground-truth position plus 1.5 px of hand noise,
then accepted in all views. Frame N gets in addition a third view whose hip click is 25 px off
(the outlier the mode shows) and its left wrist marked occluded in one view. Prints the store's
revision. Nothing here is faster or cleaner than a user: the noise is a steady hand's.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mcss_studio.core import label_edits as edits
from mcss_studio.core import open_dataset
from mcss_studio.core.labels import FrameLabel, LabelStore
from mcss_studio.core.project import create_project, is_project
from mcss_studio.core.triangulate import CameraStack

HAND_NOISE_PX = 1.5


def label_frame(seq, t: int, cameras: CameraStack, rng: np.random.Generator) -> FrameLabel:
    truth = np.stack([c.calibration.project(seq.joints3d[t]) for c in seq.cameras])
    label = FrameLabel.empty(seq.name, t, seq.camera_names, str(seq.subject or ""))
    for j in range(truth.shape[1]):
        for v in (0, 1):
            label = edits.place(label, cameras, v, j, truth[v, j] + rng.normal(0, HAND_NOISE_PX, 2))
    return edits.accept_all(label, cameras)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--frame", type=int, default=30)
    p.add_argument("--sequence")
    args = p.parse_args(argv)
    if not is_project(args.dataset):
        create_project(args.dataset, args.dataset)
    dataset = open_dataset(args.dataset)
    rng = np.random.default_rng(0)
    with dataset.open(args.sequence or dataset.names[0]) as seq, \
            LabelStore.open(args.dataset) as store:
        cameras = CameraStack([c.calibration for c in seq.cameras])
        for t in (0, 20, 40, 60):
            store.put(label_frame(seq, t, cameras, rng))
        truth = np.stack([c.calibration.project(seq.joints3d[args.frame]) for c in seq.cameras])
        label = FrameLabel.empty(seq.name, args.frame, seq.camera_names, str(seq.subject or ""))
        for j in range(truth.shape[1]):
            for v in (0, 1):
                label = edits.place(label, cameras, v, j,
                                    truth[v, j] + rng.normal(0, HAND_NOISE_PX, 2))
        label = edits.place(label, cameras, 2, 0, truth[2, 0] + [20.0, -15.0])  # the outlier
        label = edits.set_occluded(label, cameras, 3, 13)
        store.put(label)
        print(f"{args.dataset}: {len(store)} labelled frames, revision {store.revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
