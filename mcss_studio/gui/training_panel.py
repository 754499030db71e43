"""The training panel: start, watch, stop, resume and compare training runs, and use them.

It observes the shared state (project, dataset, the selected run `state.run`, the live run
`state.training_run`, the loaded checkpoint) and sends commands to the Session's trainer
(`session.training`: start, stop, kill, resume) and to live inference
(`session.open_checkpoint`); it never calls another panel. The runs' files are read by a
background thread (gui/run_follow.py) that hands over only what is new; the UI thread appends
each batch to the run's RunHistory and redraws one plot per tick (so no single paint event draws
all five), and nothing while the panel is hidden.

Shows: the form (gui/training_form.py), curves of the runs selected in the history table
(two or more are overlaid), progress with ETA and images/s, the log tail (trainer output and
events), the history table (config, labels, status, duration, final metrics; sortable), the
copyable torchrun line for the selected run's config, and buttons to load any checkpoint of a
run into live inference (automatically when a run finishes, and at each new checkpoint while
"follow" is on, so the current model's prediction on the shown frame is in the views).

Label provenance: a run on the label store is tied to the revision its trainer read (its start
event, else the launch record); the table shows "label store rev N", and the panel says when
the store has moved on since. The store's revision and usable count follow
`state.labelsChanged` through a worker thread (gui/label_summary.py), never a query on the UI
thread.
"""

from __future__ import annotations

import itertools
from collections import deque
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import UserInputError
from ..core.labels import StoreSummary
from ..core.runs import (
    CONFIG_FILE,
    RunHistory,
    is_run_folder,
    labels_text,
    list_runs,
    run_checkpoints,
    run_label_store,
    run_status,
    store_edits_since,
    torchrun_command,
)
from .label_summary import StoreSummaryWorker
from .pass_budget import PassDeferrer
from .run_follow import RunFollowWorker
from .run_summaries import RunRow, RunSummaryWorker
from .state import StudioState
from .training_curves import PLOT_CURVES, TrainingCurves
from .training_form import TrainingForm

REDRAW_MS = 80  # one plot (of five) and the progress bar are redrawn per tick
LOG_LINES = 1000
CHANGED_SINCE = " · changed since"  # appended to the labels cell of a run on older labels
COLUMNS = ("run", "status", "labels", "lambda", "mining", "model", "steps", "duration",
           "N-MPJPE", "Hit@1 (chance)", "why")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def event_line(r: dict) -> str | None:
    """One log line for an event (None for those the log does not show)."""
    kind = r.get("event")
    if kind == "step":
        parts = [f"{k} {r[k]:.4g}" for k in ("loss", "pose_loss", "metric_loss", "lr",
                                              "active_triplets") if isinstance(r.get(k), float)]
        return f"step {r.get('step')}: " + ", ".join(parts)
    if kind == "eval":
        m = r.get("metrics") or {}
        shown = [f"{k} {m[k]:.4g}" for k in ("n_mpjpe", "mpjpe", "p_mpjpe", "hit@1",
                                             "chance_hit@1") if isinstance(m.get(k), float)]
        return f"eval at step {r.get('step')}: " + ", ".join(shown)
    if kind == "checkpoint":
        return f"checkpoint at step {r.get('step')}: {r.get('path')}"
    if kind == "start":
        return (f"start at step {r.get('start_step', 0)} of {r.get('steps')} on "
                f"{r.get('device')} ({r.get('labelled_frames')} labelled frames, "
                f"{r.get('sequences')} sequences)")
    if kind == "status":
        why = f": {r['message']}" if r.get("message") else ""
        return f"{r.get('status')} at step {r.get('step')}{why}"
    return None


def failure_text(why: str, log_tail: list[str]) -> str:
    """Why a run failed, with the last line the trainer printed (its one-line error)."""
    last = next((line for line in reversed(log_tail) if line.strip()), "")
    return f"{why}: {last}" if last and last not in why else why


class SortItem(QTableWidgetItem):
    """A cell that sorts by a number (or text) of its own, not by what it shows."""

    def __init__(self, text: str, key: float | str) -> None:
        super().__init__(text)
        self.key = key

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.key, getattr(other, "key", other.text())
        if type(mine) is type(theirs):
            return mine < theirs
        return str(mine) < str(theirs)


class TrainingPanel(QWidget):
    """Form, live curves, progress, log, run history, commands for the Session's trainer."""

    historyChanged = Signal()  # the table was rebuilt (tests, screenshots)

    def __init__(self, state: StudioState, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.session = session
        self.runner = session.training
        self.histories: dict[Path, RunHistory] = {}
        self.logs: dict[Path, deque[str]] = {}  # the last LOG_LINES lines of each followed run
        self._generations: dict[Path, int] = {}
        self._dirty: set[Path] = set()  # runs with news the plots have not drawn
        self._pending_plots: dict[str, set[Path]] = {}  # plot -> runs it has yet to redraw
        self._plot_cycle = itertools.cycle(PLOT_CURVES)
        self._external: list[Path] = []  # run folders opened from outside the project
        self._log_run: Path | None = None
        self._finished_seen: set[Path] = set()
        self._run_stores: dict[Path, dict] = {}  # run -> the label store record it trained on
        self.follower = RunFollowWorker(self)
        self.follower.batch.connect(self._batch)
        self.follower.failed.connect(lambda _run, message: self.state.report_error(message))
        self.follower.start()
        self.store_reader = StoreSummaryWorker(self)
        self.store_reader.done.connect(self._store_read)
        self.store_reader.failed.connect(self._store_failed)
        self.store_reader.start()
        self.summary_reader = RunSummaryWorker(self)
        self.summary_reader.done.connect(self._show_history)
        self.summary_reader.failed.connect(self.state.report_error)
        self.summary_reader.start()
        self._history_asked = self._history_shown = 0  # serials of the table's requests
        self._ended_lines: dict[Path, int] = {}  # ended run -> the request that says how
        self._rows_shown: dict[Path, tuple[RunRow, bool]] = {}  # the table's (row, running)
        self._build()
        # a plot's paint (pyqtgraph, 5-15 ms) waits for a pass without camera view paints
        self.redraw_deferrer = PassDeferrer(self, self._redraw, lambda: self.state.playing)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.timeout.connect(self.redraw_deferrer.run)
        self._redraw_timer.start(REDRAW_MS)
        state.projectChanged.connect(self._project_changed)
        state.datasetChanged.connect(self.form.set_dataset)
        state.datasetChanged.connect(lambda _d: self._update_buttons())
        state.runChanged.connect(self._run_selected)
        state.trainingChanged.connect(self._training_changed)
        self.runner.ended.connect(self._run_ended)
        state.labelsChanged.connect(self._labels_changed)
        self.form.set_dataset(state.dataset)
        self._labels_changed()
        self.refresh_history()
        self._update_buttons()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.form = TrainingForm()
        self.form.changed.connect(self._update_buttons)
        scroll = QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(450)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Train")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("finish the current step, save a checkpoint, stop")
        self.stop_button.clicked.connect(self.runner.stop)
        self.kill_button = QPushButton("Kill")
        self.kill_button.setToolTip("end the trainer at once, without a checkpoint")
        self.kill_button.clicked.connect(self.runner.kill)
        self.checkpoints = QComboBox()
        self.checkpoints.setMinimumContentsLength(18)
        self.resume_button = QPushButton("Resume from")
        self.resume_button.clicked.connect(self.resume)
        self.use_button = QPushButton("Use for inference")
        self.use_button.clicked.connect(self.use_checkpoint)
        self.open_button = QPushButton("Open run folder...")
        self.open_button.clicked.connect(self.open_run_dialog)
        for w in (self.start_button, self.stop_button, self.kill_button, self.resume_button,
                  self.checkpoints, self.use_button, self.open_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        self.load_when_done = QCheckBox("load when done")
        self.load_when_done.setChecked(True)
        self.follow_checkpoints = QCheckBox("follow checkpoints")
        self.follow_checkpoints.setToolTip("load each new checkpoint of the live run into "
                                           "live inference: the views show the current model")
        buttons.addWidget(self.load_when_done)
        buttons.addWidget(self.follow_checkpoints)

        self.curves = TrainingCurves()
        self.progress = QProgressBar()
        self.progress.setFormat("no run")
        self.progress.setTextVisible(True)
        self.reason = QLabel("")  # why Train is disabled, or why the last run failed
        self.reason.setWordWrap(True)
        self.labels_note = QLabel("")  # the selected run's labels against the store's now
        self.labels_note.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._table_selection)
        self.command = QPlainTextEdit()
        self.command.setReadOnly(True)
        self.gpus = QSpinBox()
        self.gpus.setRange(1, 64)
        self.gpus.setValue(4)
        self.gpus.valueChanged.connect(lambda _v: self._show_command())
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(
            self.command.toPlainText()))
        command_tab = QWidget()
        lay = QVBoxLayout(command_tab)
        row = QHBoxLayout()
        row.addWidget(QLabel("GPUs per node"))
        row.addWidget(self.gpus)
        row.addWidget(copy)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(self.command)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Runs")
        self.tabs.addTab(self.log, "Log")
        self.tabs.addTab(command_tab, "torchrun")

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.curves)
        bottom = QWidget()
        blay = QVBoxLayout(bottom)
        blay.setContentsMargins(0, 0, 0, 0)
        blay.addWidget(self.progress)
        blay.addWidget(self.reason)
        blay.addWidget(self.labels_note)
        blay.addWidget(self.tabs, 1)
        right.addWidget(bottom)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([470, 1000])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addLayout(buttons)
        outer.addWidget(split, 1)

    # -- commands -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start a run with the form's settings (errors become the state's error dialog)."""
        project = self.state.project
        if project is None:
            return
        try:
            self.runner.start(project, self.form.settings(), self.form.run_name(),
                              self.form.labels())
        except UserInputError as exc:
            self.state.report_error(str(exc))
            return
        self.form.remember_values()

    def resume(self) -> None:
        run, checkpoint = self.state.run, self.checkpoints.currentData()
        if run is None or checkpoint is None:
            return
        try:
            self.runner.resume(run, Path(checkpoint))
        except UserInputError as exc:
            self.state.report_error(str(exc))

    def use_checkpoint(self) -> None:
        checkpoint = self.checkpoints.currentData()
        if checkpoint is not None:
            self.session.open_checkpoint(Path(checkpoint))

    def open_run_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a training run folder")
        if path:
            self.open_run(Path(path))

    def open_run(self, path: Path) -> None:
        """Show a run folder from elsewhere (a torchrun run on a cluster, copied back)."""
        path = Path(path)
        if not is_run_folder(path):
            self.state.report_error(str(UserInputError(
                path, "not a training run folder (no events.jsonl, config.toml or "
                "launch.json)")))
            return
        if path not in self._external:
            self._external.append(path)
        self.refresh_history()
        self.state.set_run(path)

    # -- the runs ------------------------------------------------------------------------------
    def _project_changed(self, project: Path | None) -> None:
        """List the project's runs; the newest is shown unless a run of it already is."""
        self.refresh_history()
        runs = self.run_folders()
        if runs and (self.state.run is None or self.state.run.parent != runs[-1].parent):
            self.state.set_run(runs[-1])
        self._update_buttons()

    def run_folders(self) -> list[Path]:
        runs = list_runs(self.state.project / "runs") if self.state.project else []
        return runs + [p for p in self._external if p not in runs]

    def refresh_history(self) -> None:
        """Ask for the run folders' summaries; the table changes when they arrive (read on
        the summary thread: gui/run_summaries.py)."""
        self._history_asked += 1
        self.summary_reader.submit((self._history_asked, self.run_folders()))

    def _show_history(self, result: tuple[int, list[RunRow]]) -> None:
        """The table from the summary thread's answer, changed only where it differs: rows of
        runs that are gone are removed, new runs' rows added, and only the rows whose summary
        or running state changed are rewritten (the thread hands back the same RunRow for a
        run whose files did not change). A project with a hundred runs costs one row when one
        run starts or ends, not a hundred, and an answer that changes nothing costs nothing."""
        serial, rows = result
        self._history_shown = serial
        running = self.state.training_run
        shown = {row.run: (row, row.run == running) for row in rows}
        changed = [row for row in rows if self._rows_shown.get(row.run) != shown[row.run]]
        gone = set(self._rows_shown) - set(shown)
        self._rows_shown = shown
        if changed or gone:
            self._update_table(changed, gone)
        for row in rows:
            if self._ended_lines.get(row.run, serial + 1) <= serial:
                self._log_run_end(row)
        self._ended_lines = {r: n for r, n in self._ended_lines.items() if n > serial}

    def _update_table(self, changed: list[RunRow], gone: set[Path]) -> None:
        selected = self._selected_runs()
        header = self.table.horizontalHeader()
        # fitted to their contents, the columns are measured again over every row each time a
        # cell is replaced (2 ms a cell with 60 runs); measured once, after all the changes
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.blockSignals(True)  # removing rows is no selection by the user
        self.table.setSortingEnabled(False)  # rows stay where they are while they are set
        try:
            for i in reversed(range(self.table.rowCount())):
                if self._table_run(i) in gone:
                    self.table.removeRow(i)
            at = {self._table_run(i): i for i in range(self.table.rowCount())}
            for row in changed:
                i = at.get(row.run)
                if i is None:
                    i = self.table.rowCount()
                    self.table.insertRow(i)
                self._set_row(i, row.run, row.summary, row.error)
        finally:
            self.table.setSortingEnabled(True)
            self.table.blockSignals(False)
            header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._select_rows(selected or ([self.state.run] if self.state.run else []))
        self._show_labels_note()
        self.historyChanged.emit()

    def _table_run(self, row: int) -> Path:
        return Path(self.table.item(row, 0).data(Qt.ItemDataRole.UserRole))

    def _set_row(self, row: int, run: Path, summary, error: str) -> None:
        cells: list[tuple[str, float | str]] = [(run.name, run.name)]
        if summary is None:
            cells += [("damaged", "damaged")] + [("", "")] * (len(COLUMNS) - 3) + [(error, "")]
        else:
            h, launch = summary.history, summary.launch
            status, why = run_status(h, launch, running=run == self.state.training_run)
            c = h.config
            metrics = h.final_metrics
            hit, chance = metrics.get("hit@1"), metrics.get("chance_hit@1")
            store = run_label_store(h, launch)
            if store is not None:
                self._run_stores[run] = store
            cells += [
                (status, status),
                (self._labels_cell(run, launch.labels if launch else {}, c), ""),
                (f"{c.get('lambda_metric', '')}", float(c.get("lambda_metric", -1))),
                (str(c.get("mining", "")), str(c.get("mining", ""))),
                (f"{c.get('arch', '')} w{c.get('width', '')}", str(c.get("arch", ""))),
                (f"{h.step}/{h.steps_total}", float(h.step)),
                (format_seconds(h.duration), h.duration),
                (f"{metrics['n_mpjpe']:.1f}" if "n_mpjpe" in metrics else "-",
                 float(metrics.get("n_mpjpe", 1e18))),
                (f"{hit:.3f} ({chance:.3f})" if hit is not None and chance is not None
                 else f"{hit:.3f}" if hit is not None else "-", float(hit or -1)),
                (failure_text(why, summary.log_tail) if status == "failed" else why, why),
            ]
        for col, (text, key) in enumerate(cells):
            item = SortItem(text, key)
            item.setData(Qt.ItemDataRole.UserRole, str(run))
            if col == len(COLUMNS) - 1:
                item.setToolTip(text)
            self.table.setItem(row, col, item)

    def _labels_cell(self, run: Path, labels: dict, config: dict) -> str:
        store = self._run_stores.get(run)
        edits = self._edits_since(run)
        return labels_text(labels, config, store) + (CHANGED_SINCE if edits else "")

    def _selected_runs(self) -> list[Path]:
        rows = sorted({i.row() for i in self.table.selectedItems()})
        return [self._table_run(r) for r in rows]

    def _select_rows(self, runs: list[Path]) -> None:
        self.table.blockSignals(True)
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for r in range(self.table.rowCount()):
            if self._table_run(r) in runs:
                self.table.selectRow(r)
        self.table.setSelectionMode(mode)
        self.table.blockSignals(False)
        self._follow(self._selected_runs())

    def select_runs(self, runs: list[Path]) -> None:
        """Show these runs' curves overlaid (the first becomes the selected run)."""
        self._select_rows([Path(r) for r in runs])
        if runs:
            self.state.set_run(Path(runs[0]))

    def _table_selection(self) -> None:
        runs = self._selected_runs()
        self._follow(runs)
        if runs and self.state.run not in runs:
            self.state.set_run(runs[0])

    def _follow(self, runs: list[Path]) -> None:
        """Follow the shown runs and the live one; the curves show the shown runs."""
        live = self.state.training_run
        wanted = list(dict.fromkeys(runs + ([live] if live else [])
                                    + ([self.state.run] if self.state.run else [])))
        generations = self.follower.follow(wanted)
        for run, gen in generations.items():
            if self._generations.get(run) != gen:
                self._generations[run] = gen
                self.histories[run] = RunHistory()
                self.logs[run] = deque(maxlen=LOG_LINES)
                self._dirty.add(run)
                if run == self._log_run:
                    self.log.clear()
        for run in list(self.histories):
            if run not in generations:
                del self.histories[run], self.logs[run]
                self._generations.pop(run, None)
        shown = runs or ([self.state.run] if self.state.run else [])
        if self.curves.show_runs([(r, r.name) for r in shown]):
            self._dirty.update(shown)  # their curves were taken down: draw them again

    def _run_selected(self, run: Path | None) -> None:
        if run is not None and run not in self._selected_runs():
            if run not in self.run_folders():
                self.refresh_history()
            self._select_rows([run])
        self._log_run = run
        if run is not None:
            self._follow(self._selected_runs() or [run])
        self.log.setPlainText("\n".join(self.logs.get(run, ())) if run is not None else "")
        self._show_checkpoints()
        self._show_command()
        self._show_label_state()
        self._update_buttons()

    def _training_changed(self, run: Path | None) -> None:
        self.refresh_history()
        if run is not None:
            self._finished_seen.discard(run)
        self._follow(self._selected_runs() or ([run] if run else []))
        self._update_buttons()

    def _run_ended(self, run: Path) -> None:
        """The trainer process is gone: say how in the run's log (a kill writes no event)."""
        run = Path(run)
        self._dirty.add(run)
        self.refresh_history()  # its row then says how it ended: _log_run_end
        self._ended_lines[run] = self._history_asked
        self._update_buttons()
        self._show_checkpoints()

    def _log_run_end(self, row: RunRow) -> None:
        if row.summary is None:
            status, why = "failed", row.error
        else:
            status, why = run_status(row.summary.history, row.summary.launch)
        line = f"trainer ended: {status}" + (f" ({why})" if why else "")
        self.logs.setdefault(row.run, deque(maxlen=LOG_LINES)).append(line)
        if row.run == self._log_run:
            self.log.appendPlainText(line)

    # -- incoming data ------------------------------------------------------------------------
    def _batch(self, run: Path, generation: int, records: list, lines: list) -> None:
        if self._generations.get(run) != generation:
            return  # a follower that was replaced
        history = self.histories[run]
        was_open = history.status is None
        history.add(records)
        self._dirty.add(run)
        shown = ([line for r in records if (line := event_line(r)) is not None] + lines)
        self.logs[run].extend(shown[-LOG_LINES:])
        if run == self._log_run:
            for line in shown[-LOG_LINES:]:
                self.log.appendPlainText(line)
        if history.label_store and history.label_store != self._run_stores.get(run):
            self._run_stores[run] = history.label_store  # what the trainer read, exactly
            self._show_label_state()
        if any(r.get("event") == "checkpoint" for r in records):
            self._new_checkpoint(run, records)
        if was_open and history.status is not None:
            self._status_written(run, history)

    def _new_checkpoint(self, run: Path, records: list) -> None:
        if run == self.state.run:
            self._show_checkpoints()
        if run == self.state.training_run and self.follow_checkpoints.isChecked():
            path = [r for r in records if r.get("event") == "checkpoint"][-1].get("path")
            if path and Path(path).is_file():
                self.session.open_checkpoint(Path(path))

    def _status_written(self, run: Path, history: RunHistory) -> None:
        """A run reported its end: a finished run of this Studio goes into live inference."""
        self.refresh_history()
        if (history.status == "done" and self.load_when_done.isChecked()
                and run not in self._finished_seen and run == self.state.training_run):
            self._finished_seen.add(run)
            checkpoints = run_checkpoints(run)
            if checkpoints:
                self.session.open_checkpoint(checkpoints[-1])

    # -- the label store ----------------------------------------------------------------------
    def _labels_changed(self) -> None:
        """A label was stored, or the store was opened or closed: read it again, off the UI
        thread."""
        store = self.state.label_store
        if store is None:
            self.store_reader.submit(None)  # its connection to the closed store goes
            self.form.set_store(None)
            self._show_label_state()
        else:
            self.store_reader.submit(store.path)

    def _store_read(self, summary: StoreSummary) -> None:
        store = self.state.label_store
        if store is None or store.path != summary.path:
            return  # about a store closed meanwhile
        self.form.set_store(summary)
        self._show_label_state()

    def _store_failed(self, message: str) -> None:
        self.form.set_store(None)
        self._show_label_state()
        self.labels_note.setText(f"label store not readable: {message}")

    def _edits_since(self, run: Path) -> int | None:
        """Revisions the open store moved on since `run` read it (None: not comparable)."""
        s = self.form.store
        return store_edits_since(self._run_stores.get(run), s.path if s else None,
                                 s.revision if s else None)

    def _show_label_state(self) -> None:
        """The labels cells of the table and the selected run's note, against the store now."""
        column = COLUMNS.index("labels")
        for r in range(self.table.rowCount()):
            item = self.table.item(r, column)
            run = self._table_run(r)
            if run in self._run_stores and item is not None:
                text = item.text().removesuffix(CHANGED_SINCE)
                item.setText(text + (CHANGED_SINCE if self._edits_since(run) else ""))
        self._show_labels_note()
        self._update_buttons()

    def _show_labels_note(self) -> None:
        run = self.state.run
        record = self._run_stores.get(run) if run is not None else None
        if record is None:
            self.labels_note.setText("")
            self.labels_note.setStyleSheet("")
            return
        trained = record.get("revision", "?")
        edits, now = self._edits_since(run), self.form.store
        if edits is None:
            text = f"{run.name} trained on label store revision {trained} ({record.get('path')})."
        elif edits == 0:
            text = f"{run.name} trained on the current labels (label store revision {trained})."
        elif edits > 0:
            text = (f"{run.name} trained on label store revision {trained}; the labels have "
                    f"changed since (now revision {now.revision}, {edits} edit"
                    f"{'s' if edits != 1 else ''} later): train again to use them.")
        else:
            text = (f"{run.name} trained on label store revision {trained}, newer than the "
                    f"store's {now.revision}: the store was replaced or restored since.")
        self.labels_note.setText(text)
        self.labels_note.setStyleSheet("color: #b85c00;" if edits else "")  # stale: orange

    # -- showing ------------------------------------------------------------------------------
    def _redraw(self) -> None:
        """Redraw the next plot with changes (a round over the five plots takes five ticks),
        only while the panel is on screen; changes wait meanwhile."""
        if not self.isVisible():
            return
        self._show_progress()
        if self._dirty:
            self._pending_plots = {p: set(self._dirty) | self._pending_plots.get(p, set())
                                   for p in PLOT_CURVES}
            self._dirty = set()
        for _ in range(len(PLOT_CURVES)):
            plot = next(self._plot_cycle)
            runs = self._pending_plots.pop(plot, set())
            if runs:
                for run in runs:
                    history = self.histories.get(run)
                    if history is not None:
                        self.curves.update_plot(plot, run, history)
                return

    def _show_progress(self) -> None:
        run = self.state.training_run or self.state.run
        history = self.histories.get(run) if run is not None else None
        if history is None or not history.steps_total:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("no run" if run is None else f"{run.name}: no events yet")
            return
        self.progress.setRange(0, history.steps_total)
        self.progress.setValue(min(history.step, history.steps_total))
        live = run == self.state.training_run
        status = "running" if live else (history.status or "ended")
        rate = history.series("images_per_s")[1]
        parts = [f"{run.name}: {status}", f"step {history.step}/{history.steps_total}"]
        if live:
            if len(rate):
                parts.append(f"{rate[-1]:.0f} images/s")
            eta = history.eta()
            parts.append(f"ETA {format_seconds(eta)}" if eta is not None else "ETA -")
        parts.append(f"{format_seconds(history.duration)} trained")
        self.progress.setFormat("  ·  ".join(parts))

    def _show_checkpoints(self) -> None:
        current = self.checkpoints.currentData()
        self.checkpoints.clear()
        run = self.state.run
        for path in run_checkpoints(run) if run is not None else []:
            self.checkpoints.addItem(path.stem, str(path))
        index = self.checkpoints.findData(current)
        self.checkpoints.setCurrentIndex(index if index >= 0 else self.checkpoints.count() - 1)
        self._update_buttons()

    def _show_command(self) -> None:
        run = self.state.run
        if run is None or not (run / CONFIG_FILE).is_file():
            self.command.setPlainText("Select a run started by the Studio (its config.toml is "
                                      "the config the command trains).")
            return
        resume = self.checkpoints.currentData()
        lines = [
            "# the same config with DistributedDataParallel, one process per GPU:",
            torchrun_command(run / CONFIG_FILE, self.gpus.value()),
            "# continue it from the chosen checkpoint:",
            torchrun_command(run / CONFIG_FILE, self.gpus.value(),
                             resume=Path(resume) if resume else None),
            "# afterwards: Open run folder... shows its events here",
        ]
        self.command.setPlainText("\n".join(lines))

    def _update_buttons(self) -> None:
        busy = self.runner.busy
        reason = ""
        if self.state.project is None:
            reason = "Open a project to train: runs are kept in its runs/ folder."
        elif self.form.dataset is None or not self.form.dataset.subjects:
            reason = ("This data has no subjects; the trainer needs a dataset with subjects "
                      "(a manifest), e.g. mcss-data synth or an imported Human3.6M.")
        elif not self.form.train_subjects.checked():
            reason = "Choose the unlabelled video."
        elif self.form.store_selected:
            store = self.form.store
            if store is None:
                reason = "Reading the label store..."
            elif not store.usable:
                reason = ("The label store has no frame with all 17 joints in 3D: label some "
                          "in the Labelling panel, or import them (mcss-data labels import-gt).")
        elif not self.form.labelled_subjects.checked():
            reason = "Choose the labelled subjects."
        self.start_button.setEnabled(not busy and not reason)
        self.stop_button.setEnabled(busy)
        self.kill_button.setEnabled(busy)
        has_checkpoint = self.checkpoints.currentData() is not None
        run = self.state.run
        self.resume_button.setEnabled(not busy and has_checkpoint and run is not None
                                      and (run / CONFIG_FILE).is_file())
        self.use_button.setEnabled(has_checkpoint)
        self.reason.setText(reason)

    def settled(self) -> bool:
        """Everything followed was read, handed over and drawn (screenshots, tests)."""
        return (self.follower.caught_up() and self.store_reader.idle() and not self._dirty
                and self._history_shown == self._history_asked
                and not any(self._pending_plots.values()))

    def close_followers(self) -> None:
        self._redraw_timer.stop()
        self.redraw_deferrer.cancel()
        self.follower.stop()
        self.store_reader.stop()
        self.summary_reader.stop()
