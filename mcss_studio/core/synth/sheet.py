"""Contact sheet: every view of a preset at a few instants, for judging the renders by eye."""

from __future__ import annotations

import cv2
import numpy as np

from .body import build_shapes
from .generate import build_views, make_subject, plan_dataset, sequence_joints
from .render import render_frame


def _telling_instant(joints: np.ndarray) -> int:
    """The frame (away from the ends) whose root-relative pose is furthest from the take's median:
    a squat shown mid-squat, a wave with the arm up."""
    rel = joints - joints[:, :1]
    spread = np.linalg.norm(rel - np.median(rel, axis=0), axis=-1).sum(-1)
    lo, hi = len(joints) // 10, len(joints) - len(joints) // 10
    return lo + int(np.argmax(spread[lo:hi]))


def contact_sheet(preset: str = "demo", seed: int = 0, instants: int = 4) -> np.ndarray:
    """RGB uint8 grid: one row per instant (spread over the preset's sequences), one column per
    camera, labelled with sequence, frame and camera. Pixels come from the same
    renderer as `generate` (its sensor-noise draw aside), before video compression."""
    plan = plan_dataset(preset, seed)
    views = build_views(plan)
    seqs = plan.sequences
    spread = max(instants - 1, 1)
    picks = [seqs[round(i * (len(seqs) - 1) / spread)] for i in range(instants)]
    rows = []
    for seq in picks:
        subject = make_subject(plan.seed, seq.subject)
        joints = sequence_joints(plan, seq, subject)
        shapes = build_shapes(joints, subject.skeleton, subject.look.girth)
        t = _telling_instant(joints)
        tiles = []
        for view in views:
            image = render_frame(view, shapes, t, subject.look, joints[t], t).image.copy()
            label = f"{seq.name} t={t} {view.name}"
            cv2.putText(
                image, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA
            )
            cv2.putText(
                image,
                label,
                (4, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
            tiles.append(np.pad(image, ((1, 1), (1, 1), (0, 0)), constant_values=255))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)
