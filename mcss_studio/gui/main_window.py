"""The Studio's main window: camera grid and 3D view side by side, transport below.

The window wires panels to the shared state and owns the workers; panels never call each other.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import UserInputError
from ..core.project import create_project, is_project, read_project
from .dialogs import ShortcutsDialog, progress_dialog, show_error
from .empty_hint import EmptyHint
from .media import MediaAccess, default_cache_root
from .player.grid import CameraGrid
from .player.transport import PlaybackClock, TransportBar
from .posing import RateMeter
from .state import SPEEDS, Prediction, StudioState
from .workers import FrameDecodeWorker, InferenceWorker, TaskWorker, run_off_ui_thread

MAX_RECENT = 10
ORG, APP = "mcss-studio", "MCSS Studio"


def find_demo_checkpoint() -> Path | None:
    """The small checkpoint shipped in assets/ for the demo, if present."""
    assets = Path(__file__).resolve().parents[2] / "assets"
    for pattern in ("demo*.safetensors", "demo*.pt", "*.safetensors", "*.pt"):
        found = sorted(assets.glob(pattern)) if assets.is_dir() else []
        if found:
            return found[0]
    return None


class MainWindow(QMainWindow):
    """Multi-view player + 3D view + live inference for one sequence at a time."""

    errorShown = Signal(str)

    def __init__(
        self, interactive: bool = True, with_3d: bool = True, device: str = "auto",
        remember_recent: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle(APP)
        self.interactive = interactive  # False: never ask questions (tests, --screenshot)
        self.remember_recent = remember_recent  # False: leave the recent list alone (--screenshot)
        self.state = StudioState(self)
        self.dataset = None
        self.project = None
        self.cache_dir: Path | None = None
        self.cache_worker: TaskWorker | None = None
        self.error_boxes: list = []
        self.last_error: str | None = None
        self.inference_rate = RateMeter()
        self.device_name = "-"
        self._pending_checkpoint: Path | None = None  # last checkpoint asked for

        self.decoder = FrameDecodeWorker(self)
        self.decoder.failed.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.decoder.start()
        self.inference = InferenceWorker(self, device=device)
        self.inference.done.connect(self._prediction_arrived)
        self.inference.loaded.connect(self._checkpoint_loaded)
        self.inference.loadFailed.connect(self._checkpoint_failed)
        self.inference.failed.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.inference.start()

        self.grid = CameraGrid(self.state, self.decoder)
        self.empty_hint = EmptyHint(self.state, self.grid)
        self.view3d = None
        if with_3d:
            from .view3d import View3D

            self.view3d = View3D(self.state)
        self.transport = TransportBar(self.state)
        self.clock = PlaybackClock(self.state, parent=self)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.grid)
        if self.view3d is not None:
            self.splitter.addWidget(self.view3d)
            self.splitter.setStretchFactor(0, 3)
            self.splitter.setStretchFactor(1, 2)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.splitter, 1)
        lay.addWidget(self.transport)
        self.setCentralWidget(central)

        self._build_toolbar()
        self._build_menus()
        self.empty_hint.openRequested.connect(self.open_dialog)
        self.empty_hint.demoRequested.connect(self.open_demo)
        self._build_status()
        self.setAcceptDrops(True)
        self.state.frameChanged.connect(self._frame_changed)
        self.resize(1400, 800)

    # -- chrome -------------------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = QToolBar("Sequence", self)
        bar.setObjectName("sequence-toolbar")
        bar.addWidget(QLabel(" Sequence: "))
        self.sequence_box = QComboBox(bar)
        self.sequence_box.setMinimumContentsLength(24)
        self.sequence_box.activated.connect(self._sequence_chosen)
        bar.addWidget(self.sequence_box)
        self.addToolBar(bar)

    def _action(self, menu, text: str, slot, shortcut=None, checkable=False, checked=False):
        act = QAction(text, self)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if checkable:
            act.setCheckable(True)
            act.setChecked(checked)
            act.toggled.connect(slot)
        else:
            act.triggered.connect(lambda _=False: slot())
        menu.addAction(act)
        self.addAction(act)
        return act

    def _build_menus(self) -> None:
        s = self.state
        file = self.menuBar().addMenu("&File")
        self._action(file, "&Open folder...", self.open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = file.addMenu("Open &recent")
        self._action(file, "Open &demo", self.open_demo)
        self._action(file, "Open &checkpoint...", self.checkpoint_dialog, "Ctrl+K")
        file.addSeparator()
        self._action(file, "Save &screenshot...", self.screenshot_dialog, "Ctrl+Shift+S")
        self._action(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self._refresh_recent()

        play = self.menuBar().addMenu("&Playback")
        self._action(play, "Play / pause", s.toggle_playing, "Space")
        self._action(play, "Next frame", lambda: s.step(1), "Right")
        self._action(play, "Previous frame", lambda: s.step(-1), "Left")
        self._action(play, "Forward 10 frames", lambda: s.step(10), "Shift+Right")
        self._action(play, "Back 10 frames", lambda: s.step(-10), "Shift+Left")
        self._action(play, "First frame", lambda: s.set_frame(0), "Home")
        self._action(play, "Last frame", lambda: s.set_frame(s.num_frames - 1), "End")
        self._action(play, "Jump to frame...", self.jump_dialog, "Ctrl+G")
        self._action(play, "Slower", lambda: self._change_speed(-1), "[")
        self._action(play, "Faster", lambda: self._change_speed(1), "]")

        view = self.menuBar().addMenu("&View")
        self.overlay_actions = {}
        for name, label, key in (
            ("box", "Person &box", "B"),
            ("skeleton", "Predicted &skeleton", "S"),
            ("gt", "&Ground truth", "G"),
            ("names", "Joint &names", "N"),
        ):
            self.overlay_actions[name] = self._action(
                view, label, lambda on, n=name: s.set_overlay(n, on), key, True, s.overlays[name]
            )
        view.addSeparator()
        self._action(view, "Back to the grid", lambda: s.set_maximised(-1), "Escape")
        self._action(view, "&Reset views", self.reset_views, "R")
        self._action(view, "3D view: &frame rig / person", self.toggle_framing, "F")

        helpm = self.menuBar().addMenu("&Help")
        self._action(helpm, "Keyboard &shortcuts", self.show_shortcuts, ["F1", "?"])

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.status_labels: dict[str, QLabel] = {}
        for key, text in (
            ("cache", ""),
            ("device", "device: -"),
            ("checkpoint", "checkpoint: none"),
            ("inference", "inference: - fps"),
            ("display", "display: - fps"),
        ):
            label = QLabel(text)
            sb.addPermanentWidget(label)
            self.status_labels[key] = label
        self.state.statusChanged.connect(lambda k, t: self.status_labels[k].setText(t))
        self._status_timer = QTimer(self)
        self._status_timer.timeout.connect(self._update_rates)
        self._status_timer.start(500)

    def _update_rates(self) -> None:
        self.status_labels["display"].setText(f"display: {self.grid.display_rate.rate():.1f} fps")
        rate = self.inference_rate.rate()
        self.status_labels["inference"].setText(f"inference: {rate:.1f} fps")

    # -- errors -------------------------------------------------------------------------------
    def report_error(self, message: str) -> None:
        """Show a user error in a dialog (non-blocking); the window stays usable."""
        self.last_error = message
        self.statusBar().showMessage(message, 10000)
        self.error_boxes.append(show_error(self, message))
        self.errorShown.emit(message)

    # -- opening ------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a project, recording or dataset folder")
        if path:
            self.open_path(Path(path))

    def open_path(self, path: Path, sequence: str | None = None) -> bool:
        """Open a project, dataset or recording folder; errors become a dialog. True on success."""
        from ..core import open_dataset

        path = Path(path).expanduser()
        try:
            project = None
            if is_project(path):
                project = read_project(path)
                source = project.sources[0]
            else:
                source = path
            dataset = run_off_ui_thread(lambda: open_dataset(source))
            if project is None and dataset.kind == "recording" and self.interactive:
                answer = QMessageBox.question(
                    self,
                    "Create a project?",
                    f"{path} is a recording. Create a project in it (mcss-project.toml and a "
                    "cache/ folder for proxies and crops)?",
                )
                if answer == QMessageBox.StandardButton.Yes:
                    project = create_project(path, path)
            self.project, self.dataset = project, dataset
            self.cache_dir = project.cache_dir if project else default_cache_root() / "cache"
            self.sequence_box.blockSignals(True)
            self.sequence_box.clear()
            self.sequence_box.addItems(dataset.names)
            self.sequence_box.blockSignals(False)
            name = sequence if sequence is not None else dataset.names[0]
            self.sequence_box.setCurrentIndex(
                dataset.names.index(name) if name in dataset.names else 0
            )
            self.open_sequence_named(dataset.names[self.sequence_box.currentIndex()])
        except UserInputError as exc:
            self.report_error(str(exc))
            return False
        self.state.set_project(project.root if project else None)
        self._add_recent(project.root if project else path)
        self.setWindowTitle(f"{APP} - {path}")
        if self.state.checkpoint is None and self._pending_checkpoint is None:
            ckpt = project.checkpoint if project and project.checkpoint else find_demo_checkpoint()
            if ckpt is not None:
                self.open_checkpoint(ckpt)
        return True

    def _sequence_chosen(self, index: int) -> None:
        if self.dataset is not None and 0 <= index < len(self.dataset.names):
            try:
                self.open_sequence_named(self.dataset.names[index])
            except UserInputError as exc:
                self.report_error(str(exc))

    def open_sequence_named(self, name: str) -> None:
        dataset = self.dataset
        seq = run_off_ui_thread(lambda: dataset.open(name))  # demuxes every video
        self.show_sequence(seq, self.cache_dir)

    def show_sequence(self, seq, cache_dir: Path | None) -> None:
        """Show an opened MultiviewSequence; proxies and crops are built in the background."""
        media = MediaAccess(seq, cache_dir)
        ready = media.attach_caches()
        self.state.set_sequence(seq, media)
        for w in seq.warnings:
            self.statusBar().showMessage(w, 10000)
        self.status_labels["cache"].setText("proxies: ready" if ready else "proxies: none")
        if not ready and cache_dir is not None:
            self._build_caches(media)

    def _build_caches(self, media: MediaAccess) -> None:
        if self.cache_worker is not None and self.cache_worker.isRunning():
            self.cache_worker.cancelled = True
            self.cache_worker.wait()
        worker = TaskWorker(media.build_caches, self)
        worker.progress.connect(
            lambda d, t: self.status_labels["cache"].setText(f"building proxies {d}/{t}")
        )
        worker.succeeded.connect(lambda _r, m=media: self._caches_built(m))
        worker.failed.connect(lambda msg: self.status_labels["cache"].setText("proxies: failed"))
        worker.failed.connect(lambda msg: self.statusBar().showMessage(f"cache: {msg}", 10000))
        self.cache_worker = worker
        self.status_labels["cache"].setText("building proxies...")
        worker.start()

    def _caches_built(self, media: MediaAccess) -> None:
        ready = media.attach_caches()
        self.status_labels["cache"].setText("proxies: ready" if ready else "proxies: none")
        if media is self.state.media:
            self.state.notify_media()
            self._frame_changed(self.state.frame)

    @property
    def cache_busy(self) -> bool:
        return self.cache_worker is not None and self.cache_worker.isRunning()

    def open_demo(self, on_ready=None) -> None:
        """Open the demo project, generating its dataset on first use with a progress dialog."""
        demo = default_cache_root() / "demo"
        if (demo / "manifest.json").is_file():
            self._open_demo_project(demo, on_ready)
            return

        def generate(progress):
            from ..core.synth import generate as synth_generate

            return synth_generate(demo, preset="demo", progress=progress)

        dlg = progress_dialog(
            self, "Generating the demo", "Rendering the synthetic demo dataset..."
        )
        worker = TaskWorker(generate, self)
        worker.progress.connect(lambda d, t: (dlg.setMaximum(t), dlg.setValue(d)))
        dlg.canceled.connect(lambda: setattr(worker, "cancelled", True))

        def finished(path) -> None:
            dlg.close()
            self._open_demo_project(Path(path), on_ready)

        def failed(msg: str) -> None:
            dlg.close()
            if worker.cancelled:  # the user's choice, not an error
                self.statusBar().showMessage("Demo generation cancelled", 5000)
            else:
                self.report_error(msg)

        worker.succeeded.connect(finished)
        worker.failed.connect(failed)
        self._demo_worker = worker
        dlg.show()
        worker.start()

    def _open_demo_project(self, demo: Path, on_ready=None) -> None:
        try:
            if not is_project(demo):
                create_project(demo, demo)  # the demo is a project: its cache lives beside it
        except UserInputError as exc:
            self.report_error(str(exc))
            return
        if self.open_path(demo) and on_ready is not None:
            on_ready()

    # -- recent projects ----------------------------------------------------------------------
    def _settings(self) -> QSettings:
        """User settings; MCSS_STUDIO_SETTINGS names an INI file instead (tests, portable use)."""
        path = os.environ.get("MCSS_STUDIO_SETTINGS")
        if path:
            return QSettings(path, QSettings.Format.IniFormat)
        return QSettings(ORG, APP)

    def recent_paths(self) -> list[str]:
        value = self._settings().value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: Path) -> None:
        if not self.remember_recent:
            return
        p = str(Path(path).resolve())
        recent = [r for r in self.recent_paths() if r != p]
        self._settings().setValue("recent", [p, *recent][:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_paths()
        for p in recent:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _=False, p=p: self.open_path(Path(p)))
        self.recent_menu.setEnabled(bool(recent))

    # -- drag and drop ------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        urls = event.mimeData().urls()
        if not urls:
            return
        path = Path(urls[0].toLocalFile())
        if path.suffix in (".safetensors", ".pt", ".pth", ".ckpt"):
            self.open_checkpoint(path)
        else:
            self.open_path(path if path.is_dir() else path.parent)
        event.acceptProposedAction()

    # -- checkpoint and inference -------------------------------------------------------------
    def checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a checkpoint", "", "Checkpoints (*.safetensors *.pt *.pth);;All files (*)"
        )
        if path:
            self.open_checkpoint(Path(path))

    def open_checkpoint(self, path: Path) -> None:
        """Load a checkpoint in the inference worker; a bad file becomes a dialog."""
        self.status_labels["checkpoint"].setText(f"checkpoint: loading {Path(path).name}")
        self._pending_checkpoint = Path(path)
        if self.state.num_cameras:
            self.inference.warmup_batch = self.state.num_cameras
        self.inference.load(Path(path))

    def _checkpoint_loaded(self, path, device: str) -> None:
        self.device_name = device
        self.status_labels["device"].setText(f"device: {device}")
        self.status_labels["checkpoint"].setText(f"checkpoint: {Path(path).name}")
        self.state.set_checkpoint(Path(path))
        self._frame_changed(self.state.frame)

    def _checkpoint_failed(self, message: str) -> None:
        name = self.state.checkpoint.name if self.state.checkpoint else "none"
        self.status_labels["checkpoint"].setText(f"checkpoint: {name}")
        self.report_error(message)

    def _frame_changed(self, t: int) -> None:
        if self.state.media is not None:
            self.inference.request_frame(self.state.media, t)

    def _prediction_arrived(self, pred: Prediction) -> None:
        self.inference_rate.tick()
        if pred.extra.get("media") is self.state.media:  # not an answer about a closed sequence
            self.state.set_prediction(pred)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not getattr(self, "_sized", False) and self.view3d is not None:
            self._sized = True
            w = max(self.splitter.width(), 400)
            self.splitter.setSizes([int(w * 0.56), w - int(w * 0.56)])

    # -- misc ---------------------------------------------------------------------------------
    def _change_speed(self, direction: int) -> None:
        i = SPEEDS.index(self.state.speed) if self.state.speed in SPEEDS else SPEEDS.index(1.0)
        self.state.set_speed(SPEEDS[int(np.clip(i + direction, 0, len(SPEEDS) - 1))])

    def jump_dialog(self) -> None:
        if self.state.sequence is None:
            return
        t, ok = QInputDialog.getInt(
            self, "Jump to frame", "Frame:", self.state.frame, 0, self.state.num_frames - 1
        )
        if ok:
            self.state.set_frame(t)

    def reset_views(self) -> None:
        for v in self.grid.views:
            v.reset_view()
        if self.view3d is not None:
            self.view3d.reset_camera()

    def toggle_framing(self) -> None:
        if self.view3d is not None:
            self.view3d.toggle_framing()

    def show_shortcuts(self) -> ShortcutsDialog:
        dlg = ShortcutsDialog(self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dlg.open()
        self.shortcuts_dialog = dlg
        return dlg

    def screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "studio.png", "PNG (*.png)")
        if path:
            from .screenshot import render_panel

            render_panel(self, "window").save(path)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.state.set_playing(False)
        if self.cache_worker is not None and self.cache_worker.isRunning():
            self.cache_worker.cancelled = True
            self.cache_worker.wait(30000)
        self.decoder.stop()
        self.inference.stop()
        if self.state.media is not None:
            self.state.media.close()
        super().closeEvent(event)
