"""The one shared state model of the Studio.

Panels observe it through signals and change it through its setters; they never call each other.
That keeps every panel testable alone and makes the order of updates irrelevant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

OVERLAY_NAMES: tuple[str, ...] = ("box", "skeleton", "gt", "names")
DEFAULT_OFF = ("names",)
SPEEDS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class Prediction:
    """The model's answer for one synchronised frame, all views of it in one batch.

    pose_cam: (C, 17, 3) mm root-relative, each camera's frame; pose_world: (17, 3) mm in the
    world frame when calibration allows it (else None); points2d: (C, 17, 2) native pixels of each
    view (projected when calibrated, else the camera-frame pose fitted into the person box).
    """

    frame: int
    pose_cam: np.ndarray
    pose_world: np.ndarray | None
    points2d: np.ndarray
    embedding: np.ndarray | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class StudioState(QObject):
    """Project, sequence, current frame, selection, checkpoint, overlays, prediction, playback."""

    projectChanged = Signal(object)  # Path | None
    sequenceChanged = Signal(object)  # MultiviewSequence | None
    mediaChanged = Signal()  # proxies / crop cache became available
    frameChanged = Signal(int)
    selectionChanged = Signal(int)  # camera index, -1 = none
    maximisedChanged = Signal(int)  # camera index shown alone, -1 = grid
    checkpointChanged = Signal(object)  # Path | None
    overlaysChanged = Signal()
    predictionChanged = Signal(object)  # Prediction | None
    playingChanged = Signal(bool)
    speedChanged = Signal(float)
    statusChanged = Signal(str, str)  # key, text (device, checkpoint, inference fps, ...)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project: Path | None = None
        self.sequence = None
        self.media = None  # gui.media.MediaAccess for the current sequence
        self.frame = 0
        self.selected_camera = -1
        self.maximised_camera = -1
        self.checkpoint: Path | None = None
        self.overlays: dict[str, bool] = {n: n not in DEFAULT_OFF for n in OVERLAY_NAMES}
        self.prediction: Prediction | None = None
        self.playing = False
        self.speed = 1.0

    # -- data ---------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return 0 if self.sequence is None else int(self.sequence.num_frames)

    @property
    def num_cameras(self) -> int:
        return 0 if self.sequence is None else len(self.sequence.cameras)

    def set_project(self, path: Path | None) -> None:
        self.project = path
        self.projectChanged.emit(path)

    def set_sequence(self, sequence, media=None) -> None:
        """Replace the shown sequence; frame, selection and prediction start afresh."""
        self.set_playing(False)
        old = self.media
        self.sequence = sequence
        self.media = media
        self.frame = 0
        self.selected_camera = -1
        self.maximised_camera = -1
        self.prediction = None
        self.sequenceChanged.emit(sequence)
        self.predictionChanged.emit(None)
        self.frameChanged.emit(0)
        if old is not None and old is not media:
            old.close()

    def notify_media(self) -> None:
        self.mediaChanged.emit()

    # -- time ---------------------------------------------------------------------------------
    def set_frame(self, frame: int) -> None:
        """Go to a synchronised frame, clamped to the sequence."""
        if self.sequence is None:
            return
        frame = int(min(max(frame, 0), self.num_frames - 1))
        if frame != self.frame:
            self.frame = frame
            self.frameChanged.emit(frame)

    def step(self, delta: int) -> None:
        self.set_frame(self.frame + delta)

    def set_playing(self, playing: bool) -> None:
        playing = bool(playing) and self.sequence is not None
        if playing != self.playing:
            self.playing = playing
            self.playingChanged.emit(playing)

    def toggle_playing(self) -> None:
        self.set_playing(not self.playing)

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if speed != self.speed:
            self.speed = float(speed)
            self.speedChanged.emit(self.speed)

    # -- views --------------------------------------------------------------------------------
    def select_camera(self, index: int) -> None:
        if index != self.selected_camera:
            self.selected_camera = index
            self.selectionChanged.emit(index)

    def set_maximised(self, index: int) -> None:
        if index != self.maximised_camera:
            self.maximised_camera = index
            self.maximisedChanged.emit(index)

    def toggle_maximised(self, index: int) -> None:
        self.set_maximised(-1 if self.maximised_camera == index else index)

    def set_overlay(self, name: str, on: bool) -> None:
        if name not in self.overlays:
            raise KeyError(name)
        if self.overlays[name] != bool(on):
            self.overlays[name] = bool(on)
            self.overlaysChanged.emit()

    # -- model --------------------------------------------------------------------------------
    def set_checkpoint(self, path: Path | None) -> None:
        self.checkpoint = path
        self.prediction = None
        self.checkpointChanged.emit(path)
        self.predictionChanged.emit(None)

    def set_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.predictionChanged.emit(prediction)

    def set_status(self, key: str, text: str) -> None:
        self.statusChanged.emit(key, text)
