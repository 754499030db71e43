"""The prediction pipeline: frames of a sequence + checkpoint -> poses and embeddings.

One path for everything that runs a model on a sequence (the Studio's inference worker,
`mcss-train embed`, the coming embedding index): crops made by the checkpoint's input contract
-> viewing rays where the model reads them and the cameras are calibrated -> the model ->
per-view camera-frame poses and embeddings -> the world pose when at least two calibrated views
agree on where the person is -> the skeleton drawn in every view. No Qt; thread-confined (one
pipeline per worker thread).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .camera import Calibration
from .contract import InputContract
from .errors import UserInputError
from .inference import Predictor
from .joints import JOINT_NAMES
from .media import MediaAccess
from .model import RAY_DIM, crop_rays
from .posing import place_in_world, project_views


@dataclass
class Prediction:
    """The model's answer for one synchronised frame, all views of it in one batch.

    pose_cam: (C, J, 3) mm root-relative, each camera's frame; pose_world: (J, 3) mm in the
    world frame when calibration allows it (else None); points2d: (C, J, 2) native pixels of each
    view (projected when calibrated, else the camera-frame pose fitted into the crop region);
    embedding: (C, D); regions: (C, 4) the crop squares the model saw (x0, y0, x1, y1).
    """

    frame: int
    pose_cam: np.ndarray
    pose_world: np.ndarray | None
    points2d: np.ndarray
    embedding: np.ndarray | None = None
    regions: np.ndarray | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def viewing_rays(regions: np.ndarray, calibrations: Sequence[Calibration | None]) -> np.ndarray:
    """(N, 3) viewing ray of each crop region (N, 4) seen by calibrations[i]; needs every view
    calibrated. The regions of one calibration go through crop_rays at once."""
    regions = np.asarray(regions, np.float64).reshape(-1, 4)
    out = np.empty((len(regions), RAY_DIM), np.float32)
    rows_of: dict[int, list[int]] = {}
    for i, c in enumerate(calibrations):
        rows_of.setdefault(id(c), []).append(i)
    for rows in rows_of.values():
        c = calibrations[rows[0]]
        out[rows] = crop_rays(regions[rows], c.K, c.dist)
    return out


def _place(
    pose_cam: np.ndarray, regions: np.ndarray, calibrations: Sequence[Calibration | None]
) -> tuple[np.ndarray | None, np.ndarray]:
    """World pose (when >= 2 views, all calibrated) and each view's 2D skeleton."""
    calibrated = all(c is not None for c in calibrations)
    pose_world = None
    if len(calibrations) >= 2 and calibrated:
        pose_world = place_in_world(pose_cam, list(calibrations), regions)
    return pose_world, project_views(pose_cam, pose_world, list(calibrations), regions)


def _check_joints(path: Path, names: Sequence[str]) -> None:
    """UserInputError unless the checkpoint's joint names are core.joints.JOINT_NAMES in order."""
    if tuple(names) == JOINT_NAMES:
        return
    if len(names) != len(JOINT_NAMES):
        problem = f"{len(names)} joints, the Studio draws {len(JOINT_NAMES)}"
    elif set(names) == set(JOINT_NAMES):
        moved = [f"{i}: {n} (Studio: {s})" for i, (n, s) in enumerate(zip(names, JOINT_NAMES))
                 if n != s]
        problem = "joints in another order, at " + ", ".join(moved)
    else:
        problem = (f"joints {', '.join(n for n in names if n not in JOINT_NAMES)} "
                   f"instead of {', '.join(n for n in JOINT_NAMES if n not in names)}")
    raise UserInputError(path, f"the model predicts {problem}; the Studio needs the "
                               "Human3.6M 17-joint order of core/joints.py")


@dataclass
class CutFrames:
    """The model's inputs for some synchronised frames (PosePipeline.cut_frames): crops (F*C,
    S, S, 3) uint8 frame by frame, view by view, their regions (F*C, 4), viewing rays (F*C, 3)
    or None, and the seconds the cutting took."""

    frames: list[int]
    calibrations: list[Calibration | None]
    crops: np.ndarray
    regions: np.ndarray
    rays: np.ndarray | None
    seconds: float = 0.0


class PosePipeline:
    """A loaded checkpoint applied to synchronised frames of a sequence."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.contract: InputContract = predictor.contract

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: str = "auto", warmup_batch: int = 4
    ) -> PosePipeline:
        """Load a checkpoint, refuse it unless its joints are the Studio's (core.joints, in that
        order: every pose is drawn and placed by those indices), and check with one probe batch
        that it answers (J, 3) poses for the joint count its contract names; the probe, at the
        batch size of the views, also warms the model up (a first call at a new batch size holds
        the interpreter for a few hundred ms)."""
        path = Path(path)
        if not path.is_file():
            raise UserInputError(path, "checkpoint file does not exist")
        try:
            pipeline = cls(Predictor(path, device=device))
            _check_joints(path, pipeline.contract.joint_names)
            pipeline._probe(path, max(1, warmup_batch))
        except UserInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - incompatible files fail in many ways
            raise UserInputError(
                path, f"cannot load checkpoint ({type(exc).__name__}: {exc})"
            ) from None
        return pipeline

    def _probe(self, path: Path, batch: int) -> None:
        size = self.contract.crop_size
        probe = self.predictor.predict(np.zeros((batch, size, size, 3), dtype=np.uint8))
        shape = tuple(np.shape(probe["pose_cam"]))
        joints = len(self.contract.joint_names)
        if shape != (batch, joints, 3):
            raise UserInputError(
                path,
                f"model predicts poses of shape {shape[1:]}, its joint names say ({joints}, 3)",
            )

    @property
    def device_name(self) -> str:
        return self.predictor.device_name

    def crops(self, media: MediaAccess, t: int) -> tuple[np.ndarray, np.ndarray]:
        """All views' crops of frame t as the model expects them, and their regions."""
        return media.crops(t, self.contract.crop_size, self.contract.crop_margin)

    def cut_frames(self, media: MediaAccess, frames: Sequence[int]) -> CutFrames:
        """The model's inputs for synchronised frames of `media`'s sequence: every view's crop
        and, where the model reads them and the cameras are calibrated, viewing rays. Touches
        only `media`, not the model: a second thread may cut the next batch while the model
        runs this one (the embedding index does)."""
        start = time.perf_counter()
        cals = [c.calibration for c in media.sequence.cameras]
        views = len(cals)
        size = self.contract.crop_size
        crops = np.empty((len(frames) * views, size, size, 3), np.uint8)
        regions = np.empty((len(frames) * views, 4), np.float64)
        for i, t in enumerate(frames):  # written in place: no per-frame arrays to join
            crops[i * views:(i + 1) * views], regions[i * views:(i + 1) * views] = \
                self.crops(media, int(t))
        rays = None  # where each crop sits in its image: the camera-frame orientation needs it
        if self.contract.uses_rays and frames and all(c is not None for c in cals):
            rays = viewing_rays(regions, cals * len(frames))
        return CutFrames([int(t) for t in frames], cals, crops, regions, rays,
                         time.perf_counter() - start)

    def predict_cut(self, cut: CutFrames, place: bool = True) -> list[Prediction]:
        """Predictions for frames cut by `cut_frames`, all in one batch (see predict_frames)."""
        if not cut.frames:
            return []
        start = time.perf_counter()
        out = self.predictor.predict(cut.crops, rays=cut.rays)
        seconds = (cut.seconds + time.perf_counter() - start) / len(cut.frames)
        views = len(cut.calibrations)
        predictions = []
        for i, t in enumerate(cut.frames):
            part = slice(i * views, (i + 1) * views)
            pose_cam = np.asarray(out["pose_cam"][part], dtype=np.float64)
            if place:
                pose_world, points2d = _place(pose_cam, cut.regions[part], cut.calibrations)
            else:
                pose_world, points2d = None, np.full(pose_cam.shape[:2] + (2,), np.nan)
            predictions.append(Prediction(
                frame=t, pose_cam=pose_cam, pose_world=pose_world, points2d=points2d,
                embedding=np.asarray(out["embedding"][part]), regions=cut.regions[part],
                seconds=seconds,
            ))
        return predictions

    def predict_frames(
        self, media: MediaAccess, frames: Sequence[int], place: bool = True
    ) -> list[Prediction]:
        """Predictions for synchronised frames of `media`'s sequence, all views of all frames
        through the model in one batch. place=False skips the world pose and the 2D skeletons
        (pose_world None, points2d NaN): the embedding index needs neither."""
        return self.predict_cut(self.cut_frames(media, frames), place)

    def predict_frame(self, media: MediaAccess, t: int) -> Prediction:
        """The prediction for synchronised frame t, all views in one batch."""
        return self.predict_frames(media, [t])[0]
