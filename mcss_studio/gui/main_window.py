"""The Studio's main window: layout, menus and dialogs, nothing else.

Camera grid (or, in labelling mode, the labelling panel) and 3D view side by side, transport
below. The Session (gui/session.py) does the
work and writes the shared state; the window asks the user (file dialogs, questions), hands the
answer to the Session and shows what the state says (status bar, error dialogs). Panels observe
the state and never call each other.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import UserInputError
from ..core.triplets import find_run
from .box_editor import BoxEditBar
from .dialogs import ShortcutsDialog, progress_dialog, show_error
from .embedding_map import EmbeddingMapPanel
from .empty_hint import EmptyHint
from .gallery import GalleryPanel
from .inspector import InspectorPanel
from .labelling import LabellingPanel
from .player.grid import CameraGrid
from .player.transport import PlaybackClock, TransportBar
from .recent import APP
from .session import Session
from .training_panel import TrainingPanel

NOTICE_MAX_WIDTH = 520  # px of the status bar for notices; the rest is in the tooltip
STATUS_KEYS = ("notice", "cache", "embeddings", "device", "checkpoint", "inference", "display")


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
        self.session = Session(device=device, remember_recent=remember_recent, parent=self)
        self.state = self.session.state
        self.error_boxes: list = []  # the error dialogs shown (the message: state.last_error)
        self._demo_dialog: QProgressDialog | None = None

        self.grid = CameraGrid(self.state, self.session.decoder, self.session.prefetcher)
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
        self.labelling = LabellingPanel(self.session)  # the labelling mode, in the grid's place
        self.labelling.hide()
        self.splitter.insertWidget(0, self.labelling)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.splitter, 1)
        lay.addWidget(self.transport)
        self.setCentralWidget(central)

        self.training_panel = TrainingPanel(self.state, self.session)
        self.training_dock = QDockWidget("Training", self)
        self.training_dock.setObjectName("training-dock")
        self.training_dock.setWidget(self.training_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.training_dock)
        self.training_dock.hide()  # View > Training (Ctrl+T) shows it

        self._build_inspector()
        self.gallery = GalleryPanel(self.state, self.session.embeddings.neighbours)
        self.embedding_map = EmbeddingMapPanel(self.state)
        self.docks = {name: self._dock(title, widget) for name, title, widget in (
            ("gallery", "Neighbour gallery", self.gallery),
            ("map", "Embedding map", self.embedding_map))}
        self.tabifyDockWidget(self.docks["gallery"], self.docks["map"])
        for dock in self.docks.values():  # closed until asked for (View menu): the player
            dock.hide()  # keeps the window, and no index is computed for nobody
            dock.toggleViewAction().toggled.connect(lambda _on: self._embedding_docks_toggled())
        self.session.embeddings.set_wanted(False)

        self._build_toolbar()
        self._build_menus()
        self.empty_hint.openRequested.connect(self.open_dialog)
        self.empty_hint.demoRequested.connect(self.open_demo)
        self._build_status()
        self.setAcceptDrops(True)
        self._observe_state()
        self.resize(1400, 800)

    # -- chrome -------------------------------------------------------------------------------
    def _build_inspector(self) -> None:
        """The hard-negative inspector, docked below and closed until asked for (View menu, or
        File > Open run...); it follows `state.run` also while closed."""
        self.inspector = InspectorPanel(self.state)
        self.inspector_dock = QDockWidget("Hard negatives", self)
        self.inspector_dock.setObjectName("inspector-dock")
        self.inspector_dock.setWidget(self.inspector)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.inspector_dock)
        self.inspector_dock.hide()

    def _embedding_docks_toggled(self) -> None:
        wanted = any(d.toggleViewAction().isChecked() for d in self.docks.values())
        self.session.embeddings.set_wanted(wanted)

    def _dock(self, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.lower().replace(" ", "-"))
        dock.setWidget(widget)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        return dock

    def _build_toolbar(self) -> None:
        bar = QToolBar("Sequence", self)
        bar.setObjectName("sequence-toolbar")
        bar.addWidget(QLabel(" Sequence: "))
        self.sequence_box = QComboBox(bar)
        self.sequence_box.setMinimumContentsLength(24)
        self.sequence_box.activated.connect(
            lambda i: self.session.choose_sequence(self.sequence_box.itemText(i))
        )
        bar.addWidget(self.sequence_box)
        self.addToolBar(bar)
        self.box_bar = BoxEditBar(self.state, self)  # shown while boxes are edited
        self.addToolBar(self.box_bar)
        self.grid.boxEdited.connect(self.session.correct_box)

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

    def _build_edit_menu(self) -> None:
        """Undo / redo of the Session's one stack: every user edit is a command on it."""
        edit = self.menuBar().addMenu("&Edit")
        stack = self.session.undo_stack
        for act, keys in (
            (stack.createUndoAction(self, "&Undo"), [QKeySequence.StandardKey.Undo]),
            (stack.createRedoAction(self, "&Redo"), [QKeySequence.StandardKey.Redo, "Ctrl+Y"]),
        ):
            act.setShortcuts([QKeySequence(k) for k in keys])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            edit.addAction(act)
            self.addAction(act)
        self.undo_action, self.redo_action = edit.actions()

    def _build_menus(self) -> None:
        s = self.state
        file = self.menuBar().addMenu("&File")
        self._action(file, "&Open folder...", self.open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = file.addMenu("Open &recent")
        self._action(file, "Open &demo", self.open_demo)
        self._action(file, "Open &checkpoint...", self.checkpoint_dialog, "Ctrl+K")
        self._action(file, "Open r&un...", self.run_dialog)
        file.addSeparator()
        self._action(file, "Save &screenshot...", self.screenshot_dialog, "Ctrl+Shift+S")
        self._action(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self._refresh_recent()
        self._build_edit_menu()

        play = self.menuBar().addMenu("&Playback")
        self._action(play, "Play / pause", s.toggle_playing, "Space")
        self._action(play, "Next frame", lambda: s.step(1), "Right")
        self._action(play, "Previous frame", lambda: s.step(-1), "Left")
        self._action(play, "Forward 10 frames", lambda: s.step(10), "Shift+Right")
        self._action(play, "Back 10 frames", lambda: s.step(-10), "Shift+Left")
        self._action(play, "First frame", lambda: s.set_frame(0), "Home")
        self._action(play, "Last frame", lambda: s.set_frame(s.num_frames - 1), "End")
        self._action(play, "Jump to frame...", self.jump_dialog, "Ctrl+G")
        self._action(play, "Slower", lambda: s.step_speed(-1), "[")
        self._action(play, "Faster", lambda: s.step_speed(1), "]")

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
        self.box_edit_action = self._action(view, "&Edit person boxes", s.set_box_editing, "E",
                                            checkable=True)
        s.boxEditingChanged.connect(self.box_edit_action.setChecked)
        s.overlaysChanged.connect(lambda: self.overlay_actions["box"].setChecked(
            s.overlays["box"]))
        self.remove_box_action = self._action(view, "Remove the selected view's box",
                                               s.request_box_removal, "Delete")
        self.remove_box_action.setEnabled(False)  # only while editing (Del labels otherwise)
        s.boxEditingChanged.connect(self.remove_box_action.setEnabled)
        view.addSeparator()
        self._action(view, "Back to the grid", lambda: s.set_maximised(-1), "Escape")
        self._action(view, "&Reset views", s.request_views_reset, "R")
        self._action(view, "3D view: &frame rig / person", s.toggle_framing, "F")
        view.addSeparator()
        self.labelling_action = self._action(view, "&Labelling mode", self.set_labelling,
                                             "Ctrl+L", checkable=True)
        view.addAction(self.training_dock.toggleViewAction())
        self.training_dock.toggleViewAction().setShortcut(QKeySequence("Ctrl+T"))
        view.addAction(self.inspector_dock.toggleViewAction())
        for dock in self.docks.values():  # panels of the embedding index
            view.addAction(dock.toggleViewAction())

        helpm = self.menuBar().addMenu("&Help")
        self._action(helpm, "Keyboard &shortcuts", self.show_shortcuts, ["F1", "?"])

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.status_labels: dict[str, QLabel] = {}
        for key in STATUS_KEYS:
            label = QLabel(self.state.status.get(key, ""))
            sb.addPermanentWidget(label)
            self.status_labels[key] = label

    def _show_status(self, key: str, text: str) -> None:
        label = self.status_labels[key]
        if key == "notice":  # may be long (several warnings): elided, whole in the tooltip
            label.setToolTip(text)
            text = label.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight,
                                                  NOTICE_MAX_WIDTH)
        label.setText(text)

    def _observe_state(self) -> None:
        s = self.state
        s.statusChanged.connect(self._show_status)
        s.errorRaised.connect(self.report_error)
        s.datasetChanged.connect(self._dataset_changed)
        s.sequenceChanged.connect(self._sequence_changed)
        s.projectChanged.connect(lambda _root: self.setWindowTitle(f"{APP} - {s.opened_path}"))
        self.session.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.session.recentChanged.connect(self._refresh_recent)
        self.session.demoStarted.connect(self._demo_started)
        self.session.demoProgress.connect(self._demo_progress)
        self.session.demoFinished.connect(self._demo_finished)

    def _dataset_changed(self, dataset) -> None:
        self.sequence_box.blockSignals(True)
        self.sequence_box.clear()
        if dataset is not None:
            self.sequence_box.addItems(dataset.names)
        self.sequence_box.blockSignals(False)

    def _sequence_changed(self, seq) -> None:
        names = self.state.dataset.names if self.state.dataset is not None else []
        if seq is not None and seq.name in names:
            self.sequence_box.setCurrentIndex(names.index(seq.name))

    # -- errors -------------------------------------------------------------------------------
    def report_error(self, message: str) -> None:
        """Show a user error in a dialog (non-blocking); the window stays usable."""
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
        ask = self._ask_create_project if self.interactive else None
        return self.session.open_path(Path(path), sequence, ask)

    def _ask_create_project(self, path: Path) -> bool:
        answer = QMessageBox.question(
            self,
            "Create a project?",
            f"{path} is a recording. Create a project in it (mcss-project.toml and a "
            "cache/ folder for proxies and crops)?",
        )
        return answer == QMessageBox.StandardButton.Yes

    def open_demo(self, on_ready=None) -> None:
        """Open the demo project, generating its dataset on first use with a progress dialog."""
        self.session.open_demo(on_ready)

    def _demo_started(self) -> None:
        dlg = progress_dialog(
            self, "Generating the demo", "Rendering the synthetic demo dataset..."
        )
        dlg.canceled.connect(self.session.cancel_demo)
        self._demo_dialog = dlg
        dlg.show()

    def _demo_progress(self, done: int, total: int) -> None:
        if self._demo_dialog is not None:
            self._demo_dialog.setMaximum(total)
            self._demo_dialog.setValue(done)

    def _demo_finished(self) -> None:
        if self._demo_dialog is not None:
            self._demo_dialog.close()
            self._demo_dialog = None

    # -- recent projects ----------------------------------------------------------------------
    def recent_paths(self) -> list[str]:
        return self.session.recent.paths()

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
        """Load a checkpoint for live inference; a bad file becomes a dialog."""
        self.session.open_checkpoint(Path(path))

    def run_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a training run (runs/<id>)")
        if path:
            self.open_run(Path(path))

    def open_run(self, path: Path) -> bool:
        """Show a training run (a run folder, or a project's newest) in the run panels."""
        try:
            self.state.set_run(find_run(path))
        except UserInputError as exc:
            self.state.report_error(str(exc))
            return False
        # shown only for this explicit choice: the training panel also sets state.run (the
        # newest run of a project as it opens, the run a Train starts), and that must not
        # cover the player with an inspector nobody asked for
        self.inspector_dock.show()
        return True

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not getattr(self, "_sized", False) and self.view3d is not None:
            self._sized = True
            w = max(self.splitter.width(), 400)
            self._split({self.grid: int(w * 0.56), self.view3d: w - int(w * 0.56)})
        if not getattr(self, "_docks_sized", False):  # a strip under the player, which keeps
            self._docks_sized = True  # the room
            self.resizeDocks([self.docks["gallery"]], [max(200, int(self.height() * 0.38))],
                             Qt.Orientation.Vertical)

    def _split(self, sizes: dict) -> None:
        """Splitter sizes by widget (absent and hidden ones get none)."""
        widgets = [self.splitter.widget(i) for i in range(self.splitter.count())]
        self.splitter.setSizes([sizes.get(w, 0) for w in widgets])

    def set_labelling(self, on: bool) -> None:
        """The labelling mode (all views large, the joint list, the history) in place of the
        camera grid, the 3D view beside it showing the stored 3D label."""
        if self.labelling_action.isChecked() != on:
            self.labelling_action.setChecked(on)  # calls back here
            return
        if on:
            self.state.set_box_editing(False)  # the labelling views take the mouse
        self.grid.setVisible(not on)
        self.labelling.setVisible(on)
        w = max(self.splitter.width(), 400)
        main = self.labelling if on else self.grid
        share = 0.72 if on else 0.56
        self._split({main: int(w * share), self.view3d: w - int(w * share)})

    # -- misc ---------------------------------------------------------------------------------
    def jump_dialog(self) -> None:
        if self.state.sequence is None:
            return
        t, ok = QInputDialog.getInt(
            self, "Jump to frame", "Frame:", self.state.frame, 0, self.state.num_frames - 1
        )
        if ok:
            self.state.set_frame(t)

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
        self.training_panel.close_followers()
        self.inspector.close_workers()
        self.session.close()
        if self.view3d is not None:
            self.view3d.release()
        super().closeEvent(event)
