"""A tiny calibrated 4-camera scene for subject-box tests: a cylinder person walking a circle
round the rig's centre on a textured static background, plus optional distractors (a second person,
an object moving in one view only, a global lighting change, a static occluder in one view, or a
second person passing within a metre of the subject, a second person standing still beside the
subject's path who moves only an arm and sways a little, or the subject's legs the colour of
what is behind them).
In memory (write_recording puts it in a folder), ~0.1 s to build; GT is the projected bbox of
the subject cylinder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mcss_studio.core.camera import Calibration
from mcss_studio.core.sequence import CameraView, MultiviewSequence
from tests.conftest import look_at
from tests.test_boxes import ArraySource

W, H, T = 160, 120, 30
HIDDEN_LEGS = 500.0  # mm: with hidden_legs, the subject's body below this is not drawn (late)
STILL_AT = np.array([0.0, -1850.0])  # mm: where the still person stands, 0.95 m from the path
ARM_REACH, ARM_RADIUS = 500.0, 100.0  # mm: how far the still person's arm swings out; its width
SUBJECT_RED, OTHER_BLUE = (230, 40, 40), (40, 40, 230)


def ring(n: int = 4, radius: float = 5000.0) -> list[Calibration]:
    """n cameras 1.5 m high on a circle, aimed at 0.9 m above its centre: a whole person fits."""
    K = np.array([[W * 1.0, 0, W / 2], [0, W * 1.0, H / 2], [0, 0, 1]])
    cams = []
    for i in range(n):
        a = 2 * np.pi * i / n + 0.3
        centre = np.array([radius * np.cos(a), radius * np.sin(a), 1500.0])
        R = look_at(centre, np.array([0.0, 0.0, 900.0]))
        cams.append(Calibration(K=K, R=R, t=-R @ centre, width=W, height=H))
    return cams


def cylinder(x: float, y: float, height: float = 1700.0, radius: float = 250.0,
             bottom: float = 0.0) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = np.stack([x + radius * np.cos(a), y + radius * np.sin(a)], 1)
    return np.concatenate([np.c_[ring, np.full(16, z)] for z in (bottom, height)])


def _draw(image: np.ndarray, cal, points: np.ndarray, colour) -> np.ndarray:
    uv = cal.project(points)
    hull = cv2.convexHull(np.round(uv * 16).astype(np.int32))
    cv2.fillConvexPoly(image, hull, colour, lineType=cv2.LINE_AA, shift=4)
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])


def scene(second_person: bool = False, moving_object: bool = False, lighting: bool = False,
          occluder: bool = False, close_person: bool = False, hidden_legs: bool = False,
          still_person: bool = False, seed: int = 0
          ) -> tuple[MultiviewSequence, np.ndarray]:
    """The sequence and the subject's GT boxes (4, T, 4), clipped to the image. With
    `hidden_legs`, from frame T // 2 on only the subject's body above HIDDEN_LEGS mm is drawn
    (legs the colour of the floor behind them: no view sees them), its GT box still the whole
    cylinder's. With `still_person`, someone stands at STILL_AT (a blue top, see _still_person)
    swinging an arm the subject's colour towards the subject's path."""
    rng = np.random.default_rng(seed)
    cals = ring()
    angle = np.linspace(0, 2 * np.pi, T, endpoint=False)
    subject = np.stack([900 * np.cos(angle), 900 * np.sin(angle)], 1)
    other = np.stack([np.linspace(-1800, 1800, T), np.full(T, -2000.0)], 1)
    if close_person:  # walks past the subject, 0.9 m from them at the closest (frame 7)
        other = np.stack([np.linspace(-1200, 3600, T), np.full(T, 1800.0)], 1)
    views, gt = [], np.zeros((4, T, 4))
    for c, cal in enumerate(cals):
        noise = cv2.resize(rng.uniform(60, 200, (12, 16, 3)), (W, H))
        background = noise.astype(np.uint8)
        if occluder and c == 0:  # a static screen in front of the subject's lower body
            cv2.rectangle(background, (0, 70), (W, H), (90, 90, 90), -1)
        frames = np.empty((T, H, W, 3), np.uint8)
        for t in range(T):
            image = background.copy()
            people = [(subject[t], SUBJECT_RED, True)]
            if second_person or close_person:
                people.append((other[t], OTHER_BLUE, False))
            if still_person:
                people.append((STILL_AT, None, False))
            depth = [np.linalg.norm(cal.to_camera(np.r_[p, 900.0])) for p, _, _ in people]
            for k in np.argsort(depth)[::-1]:  # far first: the near one occludes
                where, colour, is_subject = people[k]
                if is_subject and hidden_legs and t >= T // 2:
                    _draw(image, cal, cylinder(*where, bottom=HIDDEN_LEGS), colour)
                    gt[c, t] = _draw(image.copy(), cal, cylinder(*where), colour)
                    continue
                if colour is None:
                    _still_person(image, cal, t)
                    continue
                box = _draw(image, cal, cylinder(*where), colour)
                if is_subject:
                    gt[c, t] = box
            if occluder and c == 0:
                cv2.rectangle(image, (0, 70), (W, H), (90, 90, 90), -1)
            if moving_object and c == 1:  # equipment moving in one view only
                x = int(10 + 4 * t)
                cv2.rectangle(image, (x, 5), (x + 25, 30), (250, 250, 60), -1)
            if lighting and t >= 2 * T // 3:  # the lights go up and stay up
                image = np.clip(image.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
            frames[t] = image
        views.append(CameraView(name=f"cam{c}", source=ArraySource(frames, Path(f"cam{c}")),
                                calibration=cal))
    gt[..., 0::2] = gt[..., 0::2].clip(0, W)
    gt[..., 1::2] = gt[..., 1::2].clip(0, H)
    seq = MultiviewSequence(path=Path("scene"), name="scene", cameras=views, num_frames=T,
                            fps=25.0)
    return seq, gt


def _still_person(image: np.ndarray, cal: Calibration, t: int) -> None:
    """Someone standing at STILL_AT: grey legs and a blue top that sway 60 mm (so they are in
    the median background, only the top's edges carve) and an arm the subject's red swinging
    up to ARM_REACH out towards the subject's path (it carves, in the subject's colour, within
    the subject's reach when the subject passes): like the second person of Pose2Sim's
    Demo_MultiPerson."""
    sway = 60.0 * np.sin(2 * np.pi * t / 6)
    x, y = STILL_AT + [sway, 0.0]
    _draw(image, cal, cylinder(x, y, 900.0, 200.0), (120, 120, 120))
    _draw(image, cal, cylinder(x, y, 1650.0, 220.0, bottom=900.0), OTHER_BLUE)
    reach = ARM_REACH / 2 * (1 - np.cos(2 * np.pi * t / 10))  # a swing every 10 frames
    _draw(image, cal, cylinder(x, y + 280.0 + reach, 1500.0, ARM_RADIUS, bottom=1000.0),
          SUBJECT_RED)


def write_recording(folder: Path, calibrated: bool = True, **distractors: bool) -> np.ndarray:
    """The scene as a recording folder (cam<i>.mp4, mp4v; calibration.json); returns GT."""
    import json

    seq, gt = scene(**distractors)
    folder.mkdir(parents=True)
    for view in seq.cameras:
        writer = cv2.VideoWriter(str(folder / f"{view.name}.mp4"),
                                 cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (W, H))
        for rgb in view.source.frames:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        writer.release()
    if calibrated:
        doc = {"cameras": {v.name: {**v.calibration.to_dict(), "size": [W, H]}
                           for v in seq.cameras}}
        (folder / "calibration.json").write_text(json.dumps(doc))
    return gt
