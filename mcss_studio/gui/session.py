"""The Session: everything the Studio does, without a single widget.

It owns the background workers (full-resolution decode, live inference, cache builds, demo
generation, the embedding index and neighbour queries (gui/embedding_jobs.py), the trainer
subprocess), opens projects, recordings and datasets, loads checkpoints, keeps the recent-folder
list, holds the one undo stack and the open project's label store (`state.label_store`, closed
with the project). It writes only to the
shared state (gui/state.py); panels and the main window observe the state. Questions to the user
come in as arguments (a callback that asks), so the Session can be driven by tests and scripts
without a window.

A user edit is a command (gui/commands.py) pushed with `execute`: the window asks the user what
to do, the command does and undoes it on the state, the stack gives undo and redo. Box
corrections (gui/box_editor.py) edit one BoxTrack per sequence of the open dataset, kept while
it is open so undo can come back to a sequence left meanwhile; each one re-cuts the crops it
moved.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from ..core import open_dataset
from ..core.box_edits import BoxTrack, open_box_track
from ..core.contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE
from ..core.errors import UserInputError
from ..core.labels import LabelStore
from ..core.media import MediaAccess, default_cache_root
from ..core.pipeline import Prediction
from ..core.project import Project, create_project, is_project, read_project
from ..core.sequence import MultiviewSequence
from ..core.sources.dataset import Dataset
from . import memory
from .box_editor import BoxEditCommand
from .embedding_jobs import EmbeddingJobs
from .player.prefetch import ProxyPrefetcher
from .rates import RateMeter
from .recent import RecentFolders
from .state import StudioState
from .training_runner import TrainingRunner
from .workers import (
    DetectorWorker,
    FrameDecodeWorker,
    InferenceWorker,
    TaskWorker,
    prefer_ui_thread,
    run_off_ui_thread,
)

AskCreateProject = Callable[[Path], bool]  # "make a project in this recording folder?"


def cache_write_error(folder: Path | None, exc: OSError) -> UserInputError:
    """One line naming where a cache could not be written, why, and what to change (the user
    cache can move with MCSS_STUDIO_CACHE; a project's cache lives in the project)."""
    where = Path(exc.filename) if exc.filename else folder
    movable = folder == default_cache_root() / "cache"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space there"
        fix += " or set MCSS_STUDIO_CACHE to a folder on another disk" if movable else ""
    else:
        fix = "make it writable"
        fix += " or set MCSS_STUDIO_CACHE to a writable folder" if movable else ""
    return UserInputError(
        where, f"cannot write the cache ({exc.strerror or exc}); {fix}; playing without proxies"
    )


def find_demo_checkpoint() -> Path | None:
    """The small checkpoint shipped in assets/ for the demo, if present."""
    assets = Path(__file__).resolve().parents[2] / "assets"
    for pattern in ("demo*.safetensors", "demo*.pt", "*.safetensors", "*.pt"):
        found = sorted(assets.glob(pattern)) if assets.is_dir() else []
        if found:
            return found[0]
    return None


class Session(QObject):
    """Opens things, runs the workers and writes the results to `state`."""

    demoStarted = Signal()
    demoProgress = Signal(int, int)  # done, total
    demoFinished = Signal()  # generated or failed (the failure is reported through the state)
    recentChanged = Signal()
    message = Signal(str)  # transient note for the status bar (worker hiccups, a cancelled demo)

    def __init__(
        self,
        state: StudioState | None = None,
        device: str = "auto",
        remember_recent: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = state if state is not None else StudioState(self)
        self.undo_stack = QUndoStack(self)
        self.recent = RecentFolders(remember=remember_recent)
        self.cache_dir: Path | None = None
        self.cache_worker: TaskWorker | None = None
        self._refused_caches: set[Path] = set()  # unwritable cache folders, already reported
        self.demo_worker: TaskWorker | None = None
        self.inference_rate = RateMeter()
        self.display_rate = RateMeter()  # frames the camera grid put on screen

        prefer_ui_thread()  # before the workers start: they compete for the GIL from now on
        self.decoder = FrameDecodeWorker(self)
        self.decoder.failed.connect(self.message)
        self.decoder.start()
        self.prefetcher = ProxyPrefetcher(self)  # playback's next proxies, fitted to the views
        self.prefetcher.failed.connect(self.message)
        self.prefetcher.start()
        self.inference = InferenceWorker(self, device=device)
        self.inference.done.connect(self._prediction_arrived)
        self.inference.loaded.connect(self._checkpoint_loaded)
        self.inference.loadFailed.connect(self._checkpoint_failed)
        self.inference.failed.connect(self.message)
        self.inference.start()
        self.detector = DetectorWorker(self)  # labelling assist: keypoints of one frame
        self.detector.failed.connect(self.state.report_error)
        self.detector.start()
        self.state.frameChanged.connect(self._request_prediction)
        self.state.frameDisplayed.connect(lambda: self.display_rate.tick())
        self.state.gotoRequested.connect(self.goto)
        self.state.boxesChanged.connect(self._boxes_changed)
        self.state.boxRemovalRequested.connect(self.remove_box)
        self._box_tracks: dict[str, BoxTrack] = {}  # corrected boxes by sequence, this dataset
        self.training = TrainingRunner(self.state, self)  # the trainer subprocess
        self.embeddings = EmbeddingJobs(self.state, self)  # index, retrieval, neighbour queries
        self.embeddings.wantedChanged.connect(lambda wanted: wanted and self._refresh_index())

        # what the user must keep in view about the open data (warnings, where its cache went):
        # one status line that stays, never a message that scrolls away after seconds
        self._notes: dict[str, str] = {}
        self.state.set_status("notice", "")
        self.state.set_status("cache", "")
        self.state.set_status("device", "device: -")
        self.state.set_status("checkpoint", "checkpoint: none")
        self.update_rates()
        self._rate_timer = QTimer(self)  # the one timer behind both rates in the status bar
        self._rate_timer.timeout.connect(self.update_rates)
        self._rate_timer.start(500)

    # -- edits ----------------------------------------------------------------------------------
    def execute(self, command: QUndoCommand) -> None:
        """Do a user edit and make it undoable."""
        self.undo_stack.push(command)

    # -- opening ------------------------------------------------------------------------------
    def open_path(
        self, path: Path, sequence: str | None = None, ask: AskCreateProject | None = None
    ) -> bool:
        """Open a project, dataset or recording folder; errors go to the state. True on success.

        Open first, ask second: the sequence is opened (every video demuxed, the calibration
        checked) before `ask` is called for a recording that is no project yet, so nothing is
        ever written into a folder that fails to open. True from `ask` makes a project in it; a
        read-only recording is opened with its cache in the user cache folder instead.
        """
        path = Path(path).expanduser()
        try:
            project = read_project(path) if is_project(path) else None
            source = project.sources[0] if project else path
            dataset = run_off_ui_thread(lambda: open_dataset(source))
            name = sequence if sequence in dataset.names else dataset.names[0]
            seq = run_off_ui_thread(lambda: dataset.open(name))  # demuxes every video
        except UserInputError as exc:
            self.state.report_error(str(exc))
            return False
        self._notes.clear()
        self.embeddings.clear()  # of the dataset that was open
        self._box_tracks.clear()  # their commands go with the undo stack (_open_labels)
        if project is None and dataset.kind == "recording":
            project = self._offer_project(path, ask)
        self.cache_dir = project.cache_dir if project else default_cache_root() / "cache"
        self.state.set_dataset(dataset, path)
        self.show_sequence(seq, self.cache_dir)
        root = project.root if project else None
        self._open_labels(root)
        self.state.set_project(root)
        self.recent.add(root or path)
        self.recentChanged.emit()
        if self.state.checkpoint is None and self.state.checkpoint_requested is None:
            ckpt = project.checkpoint if project and project.checkpoint else find_demo_checkpoint()
            if ckpt is not None:
                self.open_checkpoint(ckpt)
        self._refresh_index()
        return True

    def _open_labels(self, root: Path | None) -> None:
        """The project's label store into the state (None without a project). The undo stack
        is about the old store's labels, so it starts afresh. A store another Studio holds is
        opened read-only and the status line says so; a damaged one is reported, never
        touched, and labelling stays off."""
        self.close_labels()
        self._note("labels", "")
        if root is None:
            return
        try:
            store = LabelStore.open(root)
        except UserInputError as exc:
            self.state.report_error(str(exc))
            self._note("labels", "labels: not opened")
            return
        if store.read_only:
            self._note("labels", f"labels read-only: {store.read_only_reason}")
        self.state.set_label_store(store)

    def close_labels(self) -> None:
        store = self.state.label_store
        self.undo_stack.clear()
        self.state.set_label_store(None)
        if store is not None:
            store.close()

    def _offer_project(self, folder: Path, ask: AskCreateProject | None) -> Project | None:
        """A project in a recording folder that opened fine, if the user wants one and the folder
        takes it; otherwise None, and a read-only folder's cache goes to the user cache folder."""
        if not os.access(folder, os.W_OK):  # EROFS even for root; nothing to ask then
            self._note_cache_elsewhere("read-only recording")
            return None
        if ask is None or not ask(folder):
            return None
        try:
            return create_project(folder, folder)
        except UserInputError as exc:
            self._note_cache_elsewhere(f"no project made ({exc.problem})")
        except OSError as exc:
            self._note_cache_elsewhere(f"no project made ({exc.strerror or exc})")
        return None

    def _note_cache_elsewhere(self, why: str) -> None:
        """Say, in a status line that stays (no dialog), that the cache is in the user cache."""
        self._note("cache", f"{why}: cache in {default_cache_root() / 'cache'}")

    def _note(self, kind: str, text: str) -> None:
        """Set one part of the notice status line (empty text removes it)."""
        self._notes[kind] = text
        self.state.set_status("notice", " | ".join(t for t in self._notes.values() if t))

    def open_sequence(self, name: str) -> None:
        """Show sequence `name` of the open dataset (UserInputError if it cannot be opened)."""
        dataset: Dataset | None = self.state.dataset
        if dataset is None:
            raise UserInputError(None, "no dataset is open")
        seq = run_off_ui_thread(lambda: dataset.open(name))  # demuxes every video
        self.show_sequence(seq, self.cache_dir)

    def choose_sequence(self, name: str) -> bool:
        """The user picked another sequence of the open dataset; errors go to the state.
        Whether it is shown now."""
        try:
            self.open_sequence(name)
        except UserInputError as exc:
            self.state.report_error(str(exc))
            return False
        return True

    def show_sequence(self, seq: MultiviewSequence, cache_dir: Path | None) -> None:
        """Show an opened MultiviewSequence; proxies and crops are built in the background."""
        self.cancel_cache_build()  # a build on the old sequence's readers ends before they close
        media = MediaAccess(seq, cache_dir)
        ready = media.attach_caches()
        self.state.set_sequence(seq, media)
        # corrected earlier in this session: its keyframes (the boxes are in its file)
        self.state.notify_boxes(self._box_tracks.get(seq.name))
        self._note("sequence", "; ".join(seq.warnings))  # stays while the sequence is shown
        self.state.set_status("cache", "proxies: ready" if ready else "proxies: none")
        self._build_missing_caches(media)
        memory.settle()  # no full garbage collection during the playback that follows

    def goto(self, sequence: str, camera: int, frame: int) -> None:
        """Show `frame` of `sequence` (opened first when another one is shown), selecting
        `camera` unless it is -1; errors go to the state."""
        shown = self.state.sequence
        if (shown is None or shown.name != sequence) and not self.choose_sequence(sequence):
            return
        if camera >= 0:
            self.state.select_camera(camera)
        self.state.set_frame(frame)

    # -- caches -------------------------------------------------------------------------------
    @property
    def crop_contract(self) -> tuple[int, float]:
        """(crop size, margin) of the loaded checkpoint, the defaults without one: crops are
        cached that way, so live inference reads them instead of decoding every view."""
        pipeline = self.inference.pipeline
        if pipeline is None:
            return DEFAULT_CROP_SIZE, DEFAULT_CROP_MARGIN
        return pipeline.contract.crop_size, pipeline.contract.crop_margin

    def _build_missing_caches(self, media: MediaAccess | None) -> None:
        """Build what the shown sequence lacks (proxies, or crops the checkpoint's way) unless a
        build is under way (it rebuilds for a changed checkpoint when it ends)."""
        if media is None or media.cache_dir is None or self.cache_busy:
            return
        if media.has_proxies and media.crops_current(*self.crop_contract):
            return
        if self._cache_writable(media.cache_dir):
            self._build_caches(media)

    def _cache_writable(self, cache_dir: Path) -> bool:
        """Whether caches can be written into cache_dir. A refusal is shown once per folder in a
        dialog naming it; playback goes on without proxies."""
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=cache_dir):
                pass
        except OSError as exc:
            self.state.set_status("cache", "proxies: none (cache folder not writable)")
            if cache_dir not in self._refused_caches:
                self._refused_caches.add(cache_dir)
                unnamed = OSError(exc.errno, exc.strerror)  # the folder, not the probe's name
                self.state.report_error(str(cache_write_error(cache_dir, unnamed)))
            return False
        return True

    def _build_caches(self, media: MediaAccess) -> None:
        self.cancel_cache_build()
        self.embeddings.cancel()  # it may need the same crop folder; it resumes afterwards
        size, margin = contract = self.crop_contract
        doing = "caching crops" if media.has_proxies else "building proxies"

        def build(progress) -> None:
            try:
                media.build_caches(progress, size, margin)
            except OSError as exc:  # core may raise it raw: one line naming the folder
                raise cache_write_error(media.cache_dir, exc) from None

        worker = TaskWorker(build, self)

        def current() -> bool:  # signals of a replaced build or a closed sequence are stale
            return worker is self.cache_worker and media is self.state.media

        worker.progress.connect(
            lambda d, t: current() and self.state.set_status("cache", f"{doing} {d}/{t}")
        )
        worker.succeeded.connect(lambda _r: current() and self._caches_built(media, contract))
        worker.failed.connect(lambda message: current() and self._cache_failed(worker, message))
        self.cache_worker = worker
        self.state.set_status("cache", f"{doing}...")
        worker.start()

    def _cache_failed(self, worker: TaskWorker, message: str) -> None:
        if worker.cancelled:
            return  # stopped for another sequence or the end: nothing went wrong
        if isinstance(worker.error, UserInputError):  # full disk, read-only folder, bad video
            self.state.set_status("cache", "proxies: none (not written)")
            self.state.report_error(message)
            return
        self.state.set_status("cache", "proxies: failed")
        self.message.emit(f"cache: {message}")

    def _caches_built(self, media: MediaAccess, contract: tuple[int, float]) -> None:
        ready = media.attach_caches()
        self.state.set_status("cache", "proxies: ready" if ready else "proxies: none")
        self.state.notify_media()
        self._request_prediction(self.state.frame)
        if contract != self.crop_contract or not media.crops_current(*contract):
            self._build_caches(media)  # another checkpoint's crops, or boxes corrected meanwhile
        else:
            self._refresh_index(cache_done=True)

    def _refresh_index(self, cache_done: bool = False) -> None:
        """Build (or reopen) the embedding index of the loaded checkpoint over the open dataset
        once the shown sequence's cache build no longer needs the crop folders (`cache_done`:
        called as that build reports success, while its thread may still be winding down)."""
        if cache_done or not self.cache_busy:
            self.embeddings.start(self.state.dataset, self.cache_dir, self.state.checkpoint)

    def cancel_cache_build(self, timeout_ms: int = -1) -> None:
        worker = self.cache_worker
        if worker is not None and worker.isRunning():
            worker.cancelled = True
            if timeout_ms < 0:
                worker.wait()
            else:
                worker.wait(timeout_ms)

    @property
    def cache_busy(self) -> bool:
        return self.cache_worker is not None and self.cache_worker.isRunning()

    # -- person boxes -------------------------------------------------------------------------
    def _box_track(self) -> BoxTrack | None:
        """The shown sequence's boxes to correct, opened on the first correction (from its box
        file, or the boxes shown: detected or ground truth); errors go to the state."""
        seq, media = self.state.sequence, self.state.media
        if seq is None or media is None:
            return None
        track = self._box_tracks.get(seq.name)
        if track is None:
            try:
                track = open_box_track(seq, media.all_person_boxes())
            except UserInputError as exc:
                self.state.report_error(str(exc))
                return None
            self._box_tracks[seq.name] = track
        return track

    def correct_box(self, cam: int, box) -> None:
        """The user dragged or drew `box` (native px) in view `cam` at the shown frame: one
        undoable correction, spread as the state says (frames, other views)."""
        track = self._box_track()
        if track is None:
            return
        s, frame = self.state, self.state.frame
        patch = track.correct(cam, frame, box, s.box_spread, s.box_other_views)
        views = " and the other views" if len(patch.keys) > 1 else ""
        self._execute_box_edit(track, patch, f"Correct the box of {track.camera_names[cam]}"
                               f"{views} at frame {frame}")

    def remove_box(self) -> None:
        """No person in the selected view at the shown frame."""
        cam = self.state.selected_camera
        track = self._box_track() if cam >= 0 else None
        if track is not None:
            patch = track.remove(cam, self.state.frame)
            self._execute_box_edit(track, patch, f"Remove the box of {track.camera_names[cam]} "
                                   f"at frame {self.state.frame}")

    def _execute_box_edit(self, track: BoxTrack, patch, text: str) -> None:
        if len(patch) == 0:  # nothing changed: the views show the boxes as they are
            self.state.notify_boxes(track)
            return
        self.execute(BoxEditCommand(text, self.state, track, patch, track.sequence,
                                    self.state.frame))

    def _boxes_changed(self, track: BoxTrack | None) -> None:
        """Corrected boxes are shown, cut with, and re-cut into the crop cache (only the
        crops they moved)."""
        media, seq = self.state.media, self.state.sequence
        if track is None or media is None or seq is None or track.sequence != seq.name:
            return
        media.set_person_boxes(track.boxes)
        self._build_missing_caches(media)

    # -- the demo -----------------------------------------------------------------------------
    def open_demo(self, on_ready: Callable[[], None] | None = None) -> None:
        """Open the demo project, generating its dataset on first use (demo* signals report
        the progress)."""
        demo = default_cache_root() / "demo"
        if (demo / "manifest.json").is_file():
            self._open_demo_project(demo, on_ready)
            return

        def generate(progress):
            from ..core.synth import generate as synth_generate

            return synth_generate(demo, preset="demo", progress=progress)

        worker = TaskWorker(generate, self)
        worker.progress.connect(self.demoProgress)

        def finished(path) -> None:
            self.demoFinished.emit()
            self._open_demo_project(Path(path), on_ready)

        def failed(message: str) -> None:
            cancelled = worker.cancelled  # before demoFinished: closing a progress dialog cancels
            self.demoFinished.emit()
            if cancelled:  # the user's choice, not an error
                self.message.emit("Demo generation cancelled")
            else:
                self.state.report_error(message)

        worker.succeeded.connect(finished)
        worker.failed.connect(failed)
        self.demo_worker = worker
        self.demoStarted.emit()
        worker.start()

    def cancel_demo(self) -> None:
        if self.demo_worker is not None:
            self.demo_worker.cancelled = True

    def _open_demo_project(self, demo: Path, on_ready: Callable[[], None] | None) -> None:
        try:
            if not is_project(demo):
                create_project(demo, demo)  # the demo is a project: its cache lives beside it
        except UserInputError as exc:
            self.state.report_error(str(exc))
            return
        if self.open_path(demo) and on_ready is not None:
            on_ready()

    # -- checkpoint and inference -------------------------------------------------------------
    def open_checkpoint(self, path: Path) -> None:
        """Load a checkpoint in the inference worker; a bad file is reported through the state."""
        path = Path(path)
        self.state.request_checkpoint(path)
        self.state.set_status("checkpoint", f"checkpoint: loading {path.name}")
        if self.state.num_cameras:
            self.inference.warmup_batch = self.state.num_cameras
        self.inference.load(path)

    def unload_checkpoint(self) -> None:
        """Stop live inference, also a load still under way (benchmarks compare playback with
        and without it)."""
        self.inference.unload()
        self.embeddings.clear()
        self.state.request_checkpoint(None)
        self.state.set_checkpoint(None)
        self.state.set_status("device", "device: -")
        self.state.set_status("checkpoint", "checkpoint: none")

    def _checkpoint_loaded(self, path: Path, device: str) -> None:
        self.state.set_checkpoint(Path(path), device)
        self.state.set_status("device", f"device: {device}")
        self.state.set_status("checkpoint", f"checkpoint: {Path(path).name}")
        self._request_prediction(self.state.frame)
        self._build_missing_caches(self.state.media)  # crops the way this checkpoint wants
        self._refresh_index()

    def _checkpoint_failed(self, path: Path, message: str) -> None:
        if self.state.checkpoint_requested == Path(path):
            self.state.request_checkpoint(None)  # nothing pending: a project may load its own
        name = self.state.checkpoint.name if self.state.checkpoint else "none"
        self.state.set_status("checkpoint", f"checkpoint: {name}")
        self.state.report_error(message)

    def _request_prediction(self, t: int) -> None:
        if self.state.media is not None:
            self.inference.request_frame(self.state.media, t)

    def _prediction_arrived(self, prediction: Prediction) -> None:
        self.inference_rate.tick()
        if prediction.extra.get("media") is self.state.media:  # not about a closed sequence
            self.state.set_prediction(prediction)

    def update_rates(self) -> None:
        """Inference answers and displayed frames per second, into the state's status."""
        self.state.set_status("inference", f"inference: {self.inference_rate.rate():.1f} fps")
        self.state.set_status("display", f"display: {self.display_rate.rate():.1f} fps")

    # -- the end ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every worker and release the open sequence."""
        self._rate_timer.stop()
        self.state.set_playing(False)
        self.training.shutdown()  # graceful: its checkpoint is written before the Studio goes
        self.cancel_cache_build(30000)
        if self.demo_worker is not None and self.demo_worker.isRunning():
            self.cancel_demo()  # stops at its next progress report; the temp folder is removed
            self.demo_worker.wait(30000)
        self.embeddings.close()
        self.decoder.stop()
        self.prefetcher.stop()
        self.inference.stop()
        self.detector.stop()
        self.close_labels()
        if self.state.media is not None:
            self.state.media.close()
