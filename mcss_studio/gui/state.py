"""The one shared state model of the Studio.

Panels observe it through signals and change it through its setters; they never call each other.
The Session (gui/session.py) writes what it opens and loads here; the main window only shows it.
That keeps every panel testable alone and makes the order of updates irrelevant. Every setter
emits the signal of each value it changes.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ..core.box_edits import DEFAULT_SPREAD
from ..core.media import MediaAccess
from ..core.pipeline import Prediction
from ..core.sources.dataset import Dataset

OVERLAY_NAMES: tuple[str, ...] = ("box", "skeleton", "gt", "names")
DEFAULT_OFF = ("names",)
SPEEDS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
FRAMINGS: tuple[str, ...] = ("rig", "person")  # what the 3D view frames; the default first


class StudioState(QObject):
    """Project, dataset, sequence, current frame, selection, checkpoint (requested and loaded),
    overlays, 3D framing, prediction, playback, status texts and the last error; requests to
    reset the views' zoom and camera; the embedding index, its retrieval figures and the frame
    set the gallery and the map share."""

    projectChanged = Signal(object)  # Path | None
    datasetChanged = Signal(object)  # Dataset | None
    sequenceChanged = Signal(object)  # MultiviewSequence | None
    mediaChanged = Signal()  # proxies / crop cache became available
    frameChanged = Signal(int)
    selectionChanged = Signal(int)  # camera index, -1 = none
    maximisedChanged = Signal(int)  # camera index shown alone, -1 = grid
    checkpointRequested = Signal(object)  # Path | None: asked for, not loaded yet
    checkpointChanged = Signal(object)  # Path | None: loaded and answering
    overlaysChanged = Signal()
    framingChanged = Signal(str)  # "rig" (every camera and the person) or "person" alone
    viewsResetRequested = Signal()  # views go back to their fitted zoom and 3D camera
    predictionChanged = Signal(object)  # Prediction | None
    playingChanged = Signal(bool)
    speedChanged = Signal(float)
    frameDisplayed = Signal()  # the camera grid put a new frame on screen (display rate)
    runChanged = Signal(object)  # Path | None: the training run folder the run panels show
    trainingChanged = Signal(object)  # Path | None: the run whose trainer process is alive
    gotoRequested = Signal(str, int, int)  # sequence name, camera index (-1: keep), frame
    labelsChanged = Signal()  # the label store was opened or closed, or a label was stored
    boxEditingChanged = Signal(bool)  # the player's views edit person boxes
    boxOptionsChanged = Signal()  # spread or "other views" of the next box correction
    boxesChanged = Signal(object)  # BoxTrack: a box correction was applied or taken back
    boxRemovalRequested = Signal()  # "no person in the selected view at this frame"
    embeddingIndexChanged = Signal(object)  # EmbeddingIndex | None: the loaded checkpoint's
    retrievalChanged = Signal(object)  # dict | None: retrieval figures of that index
    frameSetChanged = Signal(object, str)  # tuple of (sequence, camera, frame), who set it
    statusChanged = Signal(str, str)  # key, text (device, checkpoint, inference fps, ...)
    errorRaised = Signal(str)  # one-line message for a dialog

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project: Path | None = None
        self.dataset: Dataset | None = None
        self.opened_path: Path | None = None  # the folder the user opened (title bar)
        self.sequence = None
        self.media: MediaAccess | None = None  # pixels of the current sequence
        self.frame = 0
        self.selected_camera = -1
        self.maximised_camera = -1
        self.checkpoint_requested: Path | None = None
        self.checkpoint: Path | None = None
        self.device = "-"  # where the loaded checkpoint runs
        self.overlays: dict[str, bool] = {n: n not in DEFAULT_OFF for n in OVERLAY_NAMES}
        self.framing = FRAMINGS[0]
        self.prediction: Prediction | None = None
        self.run: Path | None = None  # a folder of runs/<id>/ (events, triplets, checkpoints)
        self.label_store = None  # core.labels.LabelStore of the open project, None without one
        self.box_editing = False
        self.box_spread = DEFAULT_SPREAD  # frames each side a box correction blends into
        self.box_other_views = False  # a correction also moves the other views (calibrated)
        self.box_track = None  # core.box_edits.BoxTrack of the shown sequence once edited
        self.training_run: Path | None = None  # the Session's trainer is running it
        self.embedding_index = None  # core.embeddings.EmbeddingIndex of the loaded checkpoint
        # {"figures", "pairs", "instants"} of that index; {} when there are none (no ground
        # truth); None while they are computed
        self.retrieval: dict | None = None
        # crops picked in the gallery or the map, shown by both (two-way selection)
        self.frame_set: tuple[tuple[str, int, int], ...] = ()
        self.frame_set_source = ""  # "gallery" (its neighbours) or "map" (a box or lasso selection)
        self.playing = False
        self.speed = 1.0
        self.status: dict[str, str] = {}
        self.last_error: str | None = None

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

    def set_dataset(self, dataset: Dataset | None, opened_path: Path | None) -> None:
        self.dataset = dataset
        self.opened_path = opened_path
        self.datasetChanged.emit(dataset)

    def set_sequence(self, sequence, media: MediaAccess | None = None) -> None:
        """Replace the shown sequence; frame, selection and prediction start afresh."""
        self.set_playing(False)
        old = self.media
        self.sequence = sequence
        self.media = media
        self.frame = 0
        self.prediction = None
        self.sequenceChanged.emit(sequence)
        self.select_camera(-1)
        self.set_maximised(-1)
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

    def report_frame_displayed(self) -> None:
        """A new frame reached the screen (the Session turns these into the display rate)."""
        self.frameDisplayed.emit()

    def step_speed(self, direction: int) -> None:
        """The next faster (+1) or slower (-1) of SPEEDS, staying at the ends; from a speed not
        in SPEEDS, the step starts at 1x."""
        i = SPEEDS.index(self.speed) if self.speed in SPEEDS else SPEEDS.index(1.0)
        self.set_speed(SPEEDS[min(max(i + direction, 0), len(SPEEDS) - 1)])

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

    def set_framing(self, name: str) -> None:
        """Frame "rig" (every camera and the person) or "person" (the person alone) in 3D."""
        if name not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, not {name!r}")
        if name != self.framing:
            self.framing = name
            self.framingChanged.emit(name)

    def toggle_framing(self) -> None:
        self.set_framing(FRAMINGS[(FRAMINGS.index(self.framing) + 1) % len(FRAMINGS)])

    def request_views_reset(self) -> None:
        """Ask every view to go back to its fitted zoom (camera views) and camera (3D view)."""
        self.viewsResetRequested.emit()

    # -- model --------------------------------------------------------------------------------
    def request_checkpoint(self, path: Path | None) -> None:
        """A checkpoint is being loaded (None: no load pending any more)."""
        if path != self.checkpoint_requested:
            self.checkpoint_requested = path
            self.checkpointRequested.emit(path)

    def set_checkpoint(self, path: Path | None, device: str = "-") -> None:
        """The checkpoint now answering (None: none); a pending request for it is fulfilled."""
        if path is not None and path == self.checkpoint_requested:
            self.request_checkpoint(None)
        self.checkpoint = path
        self.device = device
        self.prediction = None
        self.checkpointChanged.emit(path)
        self.predictionChanged.emit(None)

    def set_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.predictionChanged.emit(prediction)

    # -- training runs ------------------------------------------------------------------------
    def set_run(self, path: Path | None) -> None:
        """The training run the run panels (inspector, training) show; None: none."""
        if path != self.run:
            self.run = path
            self.runChanged.emit(path)

    def set_training_run(self, path: Path | None) -> None:
        """The run folder the Session's trainer process is training (None: no trainer)."""
        if path != self.training_run:
            self.training_run = path
            self.trainingChanged.emit(path)

    def request_goto(self, sequence: str, camera: int, frame: int) -> None:
        """Ask to show `frame` of sequence `sequence` (of the open dataset), selecting `camera`
        (-1: keep the selection). The Session opens the sequence when it is not the shown one;
        panels that list frames of any sequence (gallery, inspector) use this, never the
        player."""
        self.gotoRequested.emit(sequence, int(camera), int(frame))

    def show_edited_frame(self, sequence: str, frame: int) -> None:
        """Show the frame an undo or redo changes: set here when its sequence is shown, else
        asked for with `request_goto` (the Session opens the sequence)."""
        if self.sequence is None or self.sequence.name != sequence:
            self.request_goto(sequence, -1, frame)
        else:
            self.set_frame(frame)

    # -- labels -------------------------------------------------------------------------------
    def set_label_store(self, store) -> None:
        """The open project's LabelStore (None: no project, no labels)."""
        if store is not self.label_store:
            self.label_store = store
            self.labelsChanged.emit()

    def notify_labels(self) -> None:
        """A label was stored or removed (label commands call this after each write)."""
        self.labelsChanged.emit()

    # -- person boxes -------------------------------------------------------------------------
    def set_box_editing(self, on: bool) -> None:
        """The views edit person boxes (drag, draw); the box overlay is shown meanwhile."""
        if bool(on) != self.box_editing:
            self.box_editing = bool(on)
            if on:
                self.set_overlay("box", True)
            self.boxEditingChanged.emit(self.box_editing)

    def set_box_spread(self, frames: int) -> None:
        if int(frames) < 0:
            raise ValueError("the spread is a number of frames >= 0")
        if int(frames) != self.box_spread:
            self.box_spread = int(frames)
            self.boxOptionsChanged.emit()

    def set_box_other_views(self, on: bool) -> None:
        if bool(on) != self.box_other_views:
            self.box_other_views = bool(on)
            self.boxOptionsChanged.emit()

    def notify_boxes(self, track) -> None:
        """A box correction was applied or taken back on `track` (box commands call this)."""
        self.box_track = track
        self.boxesChanged.emit(track)

    def box_keyed(self, cam: int, frame: int) -> bool:
        """Whether the user corrected camera `cam`'s box at `frame` (of the shown sequence)."""
        track, seq = self.box_track, self.sequence
        return bool(track is not None and seq is not None and track.sequence == seq.name
                    and cam < track.keyed.shape[0] and frame < track.keyed.shape[1]
                    and track.keyed[cam, frame])

    def request_box_removal(self) -> None:
        """Ask to remove the selected view's box at the current frame (the Session does)."""
        self.boxRemovalRequested.emit()

    # -- embeddings ---------------------------------------------------------------------------
    def set_embedding_index(self, index) -> None:
        """The embedding index of the loaded checkpoint over the open dataset (None: none yet);
        its retrieval figures and the frame set start afresh."""
        if index is not self.embedding_index:
            self.embedding_index = index
            self.embeddingIndexChanged.emit(index)
            self.set_retrieval(None)
            self.set_frame_set((), "")

    def set_retrieval(self, figures: dict | None) -> None:
        if figures is not self.retrieval:
            self.retrieval = figures
            self.retrievalChanged.emit(figures)

    def set_frame_set(self, items, source: str) -> None:
        """Crops picked as (sequence, camera, frame): the gallery's neighbours (source "gallery")
        or a box or lasso selection on the map (source "map"), which the gallery then shows."""
        items = tuple((str(s), int(c), int(f)) for s, c, f in items)
        if items != self.frame_set or source != self.frame_set_source:
            self.frame_set = items
            self.frame_set_source = source
            self.frameSetChanged.emit(items, source)

    # -- reports ------------------------------------------------------------------------------
    def set_status(self, key: str, text: str) -> None:
        if self.status.get(key) != text:
            self.status[key] = text
            self.statusChanged.emit(key, text)

    def report_error(self, message: str) -> None:
        """A user error (one line naming the file and the problem) for the window to show."""
        self.last_error = message
        self.errorRaised.emit(message)
