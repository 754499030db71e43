"""The hard-negative inspector: what a training run's triplet miner found, step by step.

Follows `state.run` (File > Open run...): per-step miner statistics plotted (triplets mined and
those violating the margin, the fraction violating it, mean positive and negative distances)
and a table of the logged triplets with anchor, positive and negative crops, distances and dt,
sortable by any column and filtered by a step range (spin boxes, or the region dragged on the
plots). A negative whose ground-truth pose is within KAPPA of its anchor's is flagged as a
likely false negative (what the time window gets wrong). Activating a row (double-click, Enter)
asks the state to show that frame: the clicked positive or negative, otherwise the anchor.

"Mine now" mines the current frame with the loaded checkpoint's embeddings (state's embedding
index) under the trainer's own rules and function (core/mine_now.py; the rules of the run shown,
else the checkpoint's training config, else the trainer's defaults) and shows the triplets in
the same table; "Show run" goes back.

Nothing is read on the UI thread: a worker polls the run's logs once a second and reads only
what was appended (core/triplets.py RunFollower), another cuts the thumbnails from the run's
dataset, a third mines. A run still being written grows in place; a damaged log is reported
once, in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..core.mine_now import IndexCrops, MiningRules, checkpoint_step, mine_now
from ..core.runcrops import RunCrops
from ..core.triplets import KAPPA, RunChunk, RunData, RunFollower, StepStats, parse_triplets
from .state import StudioState
from .triplet_model import (
    ROLE_COLUMNS,
    THUMB,
    VIOLATION_COLUMN,
    ThumbKey,
    ThumbnailWorker,
    TripletTableModel,
)
from .workers import LatestRequestWorker

POLL_MS = 1000  # how often a run's logs are checked for new lines
NO_BOUND = 0  # spin box value meaning "first" / "last" step
MAX_NOTES = 4  # problems listed under the table; more would hide it
POSE_JOB_ROWS = 20000  # triplets per true-pose job: a million at once would take gigabytes


class RunLogWorker(LatestRequestWorker):
    """Polls a RunFollower off the UI thread. Request: (generation, follower); result:
    (generation, RunChunk). A follower is only ever polled by this one thread."""

    def process(self, request):
        generation, follower = request
        return generation, follower.poll()


class MineWorker(LatestRequestWorker):
    """Runs "Mine now" off the UI thread. Request: (serial, index, row, rules, checkpoint);
    result: (serial, index, row, rules, checkpoint step or None, records)."""

    def process(self, request):
        serial, index, row, rules, checkpoint = request
        step = checkpoint_step(checkpoint) if checkpoint is not None else None
        return serial, index, row, rules, step, mine_now(index, row, rules, step or 0)


class MinerPlots(pg.GraphicsLayoutWidget):
    """Three plots over the training step, x linked, with one step region shared by all."""

    def __init__(self, on_region, parent=None) -> None:
        super().__init__(parent)
        self.on_region = on_region
        self.count = self._plot(0, "triplets per step", "mined", "violating the margin")
        self.fraction = self._plot(1, "fraction violating the margin", "violating",
                                   "anchors with an in-sequence negative")
        self.distance = self._plot(2, "mean embedding distance", "d(anchor, positive)",
                                   "d(anchor, negative)")
        self.regions = []
        for plot in (self.count, self.fraction, self.distance):
            if plot is not self.count:
                plot.setXLink(self.count)
            region = pg.LinearRegionItem(movable=True, brush=(80, 160, 255, 40))
            region.setZValue(-10)
            region.hide()
            region.sigRegionChangeFinished.connect(self._region_moved)
            plot.addItem(region)
            self.regions.append(region)
        self.note = pg.TextItem("", color=(200, 200, 200), anchor=(0, 0))
        self.distance.addItem(self.note)

    def _plot(self, column: int, title: str, first: str, second: str) -> pg.PlotItem:
        plot = self.addPlot(row=0, col=column, title=title)
        plot.addLegend(offset=(-4, -4), labelTextSize="8pt", brush=(0, 0, 0, 170))
        plot.showGrid(x=True, y=True, alpha=0.25)
        plot.setLabel("bottom", "step")
        plot.curves_ = (plot.plot([], [], pen=pg.mkPen((255, 140, 60), width=2), name=first),
                        plot.plot([], [], pen=pg.mkPen((90, 170, 255), width=2), name=second))
        return plot

    def show_stats(self, stats: StepStats) -> None:
        step = stats.col("step").astype(np.float64)
        mined = stats.col("triplets")
        series = {
            self.count: (mined, mined * stats.col("active_triplets")),
            self.fraction: (stats.col("active_triplets"), stats.col("anchors_with_negative")),
            self.distance: (stats.col("d_ap_mean"), stats.col("d_an_mean")),
        }
        for plot, values in series.items():
            top = 0.0
            for curve, y in zip(plot.curves_, values):
                known = ~np.isnan(y)
                curve.setData(step[known], y[known])
                top = max(top, float(y[known].max(initial=0.0)))
            plot.setYRange(0.0, 1.0 if plot is self.fraction else top * 1.1 or 1.0)
        missing = len(step) and np.isnan(stats.col("d_ap_mean")).all()
        self.note.setText("not logged by this run's trainer" if missing else "")

    def show_range(self, lo: float, hi: float, visible: bool) -> None:
        for region in self.regions:
            region.blockSignals(True)
            region.setRegion((lo, hi))
            region.setVisible(visible)
            region.blockSignals(False)

    def _region_moved(self, region) -> None:
        lo, hi = region.getRegion()
        self.show_range(lo, hi, True)
        self.on_region(int(round(lo)), int(round(hi)))


class InspectorPanel(QWidget):
    """Miner statistics and the triplet table of the run in `state.run`."""

    def __init__(self, state: StudioState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.generation = 0  # answers of workers about an older run are dropped
        self.run: RunData | None = None
        self.follower: RunFollower | None = None
        self._polling = self._more = self._read_once = False
        self._workers_closed = False
        self._source: tuple | None = None  # (data, cache, size, margin) the thumbnails use
        self._notes: list[str] = []  # one-line problems of this run, shown and reported once
        self._pose_epoch = 0  # true-pose answers about rows since dropped or re-read are stale
        self._pose_next = 0  # triplets sent to be measured
        self._crops_generation = 0  # thumbnails and poses of another table's source are stale
        self.mined: RunData | None = None  # "Mine now" triplets, shown instead of the run's
        self._mine_serial = 0
        self._mined_text = ""
        self._run_steps: tuple[int | None, int | None] = (None, None)

        self.log_worker = self._started(RunLogWorker(self), self._chunk_arrived,
                                        self._poll_failed)
        self.mine_worker = self._started(MineWorker(self), self._mined, self._mine_failed)
        self.thumb_worker = ThumbnailWorker(self)
        self.thumb_worker.ready.connect(self._thumbnail_arrived)
        self.thumb_worker.posesReady.connect(self._poses_arrived)
        self.thumb_worker.start()
        self.model = TripletTableModel(self)
        self.model.thumbnailWanted.connect(self._want_thumbnail)

        self.plots = MinerPlots(self._region_chosen)
        self.table = self._build_table()
        self.status = QLabel("No run: File > Open run...")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._build_layout()

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.poll)
        self.timer.start(POLL_MS)
        state.runChanged.connect(self.set_run)
        state.embeddingIndexChanged.connect(lambda _i: self._update_mine_button())
        self._update_mine_button()
        if state.run is not None:
            self.set_run(state.run)

    @staticmethod
    def _started(worker: LatestRequestWorker, done, failed) -> LatestRequestWorker:
        worker.done.connect(done)
        worker.failed.connect(failed)
        worker.start()
        return worker

    # -- layout ---------------------------------------------------------------------------------
    def _build_table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.model)
        table.setSortingEnabled(True)
        table.sortByColumn(VIOLATION_COLUMN, Qt.SortOrder.DescendingOrder)  # worst first
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setIconSize(QSize(THUMB, THUMB))
        table.setWordWrap(False)
        table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        table.verticalHeader().hide()
        header = table.horizontalHeader()
        for column in range(self.model.columnCount()):
            if column in ROLE_COLUMNS:
                header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
            else:
                header.resizeSection(column, 78)
        header.setMinimumSectionSize(60)
        table.activated.connect(self._activated)
        return table

    def _build_layout(self) -> None:
        self.step_from, self.step_to = QSpinBox(), QSpinBox()
        for box, bound in ((self.step_from, "first"), (self.step_to, "last")):
            box.setRange(NO_BOUND, 10**9)
            box.setSpecialValueText(bound)
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self._steps_typed)
        every = QPushButton("All steps")
        every.clicked.connect(lambda: self.set_step_range(None, None))
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Steps"))
        bar.addWidget(self.step_from)
        bar.addWidget(QLabel("to"))
        bar.addWidget(self.step_to)
        bar.addWidget(every)
        self.mine_button = QPushButton("Mine now")
        self.mine_button.clicked.connect(self.mine_now)
        self.show_run_button = QPushButton("Show run")
        self.show_run_button.setToolTip("Back to the run's logged triplets")
        self.show_run_button.clicked.connect(self.show_run)
        self.show_run_button.hide()
        bar.addWidget(self.mine_button)
        bar.addWidget(self.show_run_button)
        bar.addWidget(self.status, 1)
        below = QWidget()
        lay = QVBoxLayout(below)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.plots)
        split.addWidget(below)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 5)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(split)

    # -- the run --------------------------------------------------------------------------------
    def set_run(self, path: Path | None) -> None:
        """Show run folder `path` (None: none); reading starts at once, in the worker."""
        self.generation += 1
        self.run = RunData(Path(path)) if path is not None else None
        self.follower = RunFollower(path) if path is not None else None
        self._polling = self._more = self._read_once = False
        self._source, self._notes = None, []
        self.mined = None
        self.show_run_button.hide()
        self._set_crops(None)
        self.model.set_run(self.run)
        self.plots.show_stats(StepStats())
        self.set_step_range(None, None)
        self._show_status()
        self.poll()

    def poll(self) -> None:
        """Read what the run's logs gained (in the worker), unless a read is under way."""
        if self.follower is not None and not self._polling:
            self._polling = True
            self.log_worker.submit((self.generation, self.follower))

    def _chunk_arrived(self, result: tuple[int, RunChunk]) -> None:
        generation, chunk = result
        if generation != self.generation or self.run is None:
            return  # about a run no longer shown
        self._polling = False
        rows_changed = self.run.apply(chunk)
        if self.mined is None:
            self.model.refresh(rows_changed)
        if len(chunk.stats) or chunk.reset_events:
            self.plots.show_stats(self.run.stats)
        for message in chunk.errors:
            self._problem(message)
        self._more = chunk.more
        self._read_once = True
        if rows_changed and self.mined is None:
            self._pose_epoch, self._pose_next = self._pose_epoch + 1, 0
        self._update_source()
        self._measure_poses()
        self._show_status()
        if chunk.more:  # a long log: the next part at once, the window stays responsive
            QTimer.singleShot(0, self.poll)

    def _poll_failed(self, message: str) -> None:
        self._polling = False
        self._problem(message)

    def _problem(self, message: str, dialog: bool = True) -> None:
        """A one-line problem of this run: in the status line (a few), and a dialog once."""
        if message in self._notes or len(self._notes) >= MAX_NOTES:
            return
        self._notes.append(message)
        if dialog:
            self.state.report_error(message)
        self._show_status()

    def _show_status(self) -> None:
        run = self.run
        if self.mined is not None:
            parts = [self._mined_text, f"{self.model.rowCount()} triplets"]
        elif run is None:
            self.status.setText("No run: File > Open run...")
            return
        else:
            parts = self._run_status(run)
        shown = self.shown
        pose = shown.triplets.col("pose")
        if len(pose) and not np.isnan(pose).all():
            parts.append(f"<span style='color:#c62828'>{int(np.sum(pose < KAPPA))} likely false "
                         f"negatives</span> (true pose within {KAPPA} of the anchor's)")
        text = "; ".join(parts)
        if self._notes:
            text += "<br><span style='color:#d32f2f'>" + "<br>".join(
                _html(n) for n in self._notes) + "</span>"
        self.status.setText(text)

    def _run_status(self, run: RunData) -> list[str]:
        steps = run.stats.col("step")
        last = f"step {int(steps[-1])}" if len(steps) else "no step yet"
        total = run.config.get("steps")
        state = (run.status or {}).get("status", "running" if run.start else "waiting")
        parts = [f"<b>{run.run_dir.name}</b>: {last}{f'/{total}' if total else ''} ({state})",
                 f"{len(run.triplets)} triplets logged, {self.model.rowCount()} shown"]
        if self._read_once and self._source is None:
            parts.append("no crops: the run names no dataset folder found here")
        return parts

    # -- thumbnails -----------------------------------------------------------------------------
    @property
    def shown(self) -> RunData | None:
        """What the table shows: the "Mine now" triplets, else the run's."""
        return self.mined if self.mined is not None else self.run

    def _set_crops(self, make) -> None:
        """Thumbnails and true poses now come from make() (None: none); older ones are stale."""
        self._crops_generation += 1
        self.thumb_worker.set_source(self._crops_generation, make)
        self.model.reset_thumbnails()
        self._pose_epoch, self._pose_next = self._pose_epoch + 1, 0

    def _update_source(self, force: bool = False) -> None:
        """Point the thumbnail worker at the run's dataset once its start event is read (the
        "Mine now" table's crops come from the embedding index instead)."""
        if self.mined is not None:
            return
        run = self.run
        data = run.data_folder() if run is not None else None
        source = None
        if data is not None:
            config = run.config
            source = (data, run.cache_folder(), int(config.get("crop_size") or 128),
                      float(config.get("crop_margin") or 0.2))
        if source == self._source and not force:
            return
        self._source = source
        self._set_crops((lambda s=source: RunCrops(*s)) if source is not None else None)

    def _measure_poses(self) -> None:
        """Send the triplets not measured yet to have their true-pose distances taken."""
        run = self.shown
        has_crops = self.mined is not None or self._source is not None
        if run is None or not has_crops or self._pose_next >= len(run.triplets):
            return
        t, names = run.triplets, list(run.triplets.names)
        for start in range(self._pose_next, len(t), POSE_JOB_ROWS):
            end = min(start + POSE_JOB_ROWS, len(t))
            job = (names, *(t.col(c)[start:end].copy()
                            for c in ("a_seq", "a_frame", "n_seq", "n_frame")))
            self.thumb_worker.request_poses(self._crops_generation, self._pose_epoch, start,
                                            job)
        self._pose_next = len(t)

    def _poses_arrived(self, generation: int, epoch: int, start: int, values, problem: str
                       ) -> None:
        shown = self.shown
        if generation != self._crops_generation or epoch != self._pose_epoch or shown is None:
            return
        shown.triplets.col("pose")[start: start + len(values)] = values
        self.model.poses_changed()
        if problem:
            self._problem(problem, dialog=False)
        self._show_status()

    def _want_thumbnail(self, key: ThumbKey) -> None:
        if self._source is None and self.mined is None:
            self.model.forget([key])  # asked again once the dataset is known
            return
        self.model.forget(self.thumb_worker.request(self._crops_generation, key))

    def _thumbnail_arrived(self, generation: int, key, image, problem: str) -> None:
        if generation != self._crops_generation:
            return
        self.model.add_thumbnail(key, image)
        if problem:  # the dataset changed since the run: noted, no dialog per thumbnail
            self._problem(problem, dialog=False)

    # -- steps and rows -------------------------------------------------------------------------
    def set_step_range(self, lo: int | None, hi: int | None) -> None:
        """Show triplets of steps lo..hi (None: no bound), in the table and on the plots."""
        for box, value in ((self.step_from, lo), (self.step_to, hi)):
            box.blockSignals(True)
            box.setValue(NO_BOUND if value is None else max(value, NO_BOUND + 1))
            box.blockSignals(False)
        self.model.set_step_range(lo, hi)
        steps = self.run.stats.col("step") if self.run is not None else np.empty(0)
        first = float(steps[0]) if len(steps) else 0.0
        end = float(steps[-1]) if len(steps) else 1.0
        bounded = lo is not None or hi is not None
        self.plots.show_range(first if lo is None else lo, end if hi is None else hi, bounded)
        self._show_status()

    def _steps_typed(self) -> None:
        lo, hi = self.step_from.value(), self.step_to.value()
        self.set_step_range(None if lo == NO_BOUND else lo, None if hi == NO_BOUND else hi)

    def _region_chosen(self, lo: int, hi: int) -> None:
        self.set_step_range(max(lo, NO_BOUND + 1), max(hi, NO_BOUND + 1))

    def _activated(self, index) -> None:
        """Show the activated frame: the clicked positive or negative, else the anchor."""
        if not index.isValid():
            return
        role = ROLE_COLUMNS.get(index.column(), "anchor")
        ref = self.model.ref(index.row(), role)
        self.state.request_goto(ref.sequence, ref.camera_index, ref.frame)

    # -- Mine now -------------------------------------------------------------------------------
    def mining_rules(self) -> MiningRules:
        """The rules of the run shown (its logged config), else those the loaded checkpoint was
        trained with, else the trainer's defaults."""
        if self.run is not None and self.run.config:
            return MiningRules.from_config(self.run.config)
        checkpoint = self.state.checkpoint
        return MiningRules.of_checkpoint(checkpoint) if checkpoint is not None else MiningRules()

    def _update_mine_button(self) -> None:
        ready = self.state.embedding_index is not None
        self.mine_button.setEnabled(ready)
        self.mine_button.setToolTip(
            "The current frame's hardest negatives under the trainer's mining rules, from the "
            "loaded checkpoint's embeddings" if ready else
            "Needs the embedding index: load a checkpoint on a dataset and open the gallery or "
            "the embedding map")

    def mine_now(self) -> bool:
        """Mine the frame the player shows (selected camera, else the first) in the worker;
        False when there is no index or the frame is not in it."""
        index, s = self.state.embedding_index, self.state
        if index is None or s.sequence is None:
            return False
        try:
            row = index.row(s.sequence.name, max(s.selected_camera, 0), s.frame)
        except KeyError:
            return False
        self._mine_serial += 1
        self.mine_button.setText("Mining...")
        self.mine_worker.submit((self._mine_serial, index, row, self.mining_rules(),
                                 self.state.checkpoint))
        return True

    def _mined(self, result) -> None:
        serial, index, row, rules, step, records = result
        if serial != self._mine_serial:
            return
        self.mine_button.setText("Mine now")
        triplets, error = parse_triplets(records, list(range(len(records))), "Mine now")
        if error is not None:  # the records are made here: this would be a bug
            self._problem(str(error))
            return
        mined = RunData(Path("Mine now"), triplets=triplets)
        seq, _cam, frame = index.key(row)
        self._mined_text = (f"<b>Mine now</b>: {seq} frame {frame}, every camera as anchor, "
                            f"{_html(rules.text())}")
        if self.mined is None:
            self._run_steps = self.model.view.steps  # restored by "Show run"
        self.mined = mined
        self.show_run_button.setVisible(self.run is not None)
        self.model.set_run(mined, mined_now=True, mined_at=step)
        self.set_step_range(None, None)
        self._set_crops(lambda i=index: IndexCrops(i))
        self._measure_poses()
        self._show_status()

    def _mine_failed(self, message: str) -> None:
        self.mine_button.setText("Mine now")
        self._problem(message)

    def show_run(self) -> None:
        """Back from the "Mine now" triplets to the run's."""
        if self.mined is None:
            return
        self.mined = None
        self.show_run_button.hide()
        self.model.set_run(self.run)
        self.set_step_range(*self._run_steps)
        self._update_source(force=True)
        self._measure_poses()
        self._show_status()

    # -- for scripts and the end ----------------------------------------------------------------
    def ready(self) -> bool:
        """Everything of the run is read and every painted row has its thumbnails (with "Mine
        now" shown: its triplets arrived and have theirs)."""
        if self.mined is not None:
            return self.model.thumbnails_settled and self.thumb_worker.idle() and \
                self.mine_worker.idle()
        return (self.run is not None and self._read_once and not self._polling
                and not self._more and self.model.thumbnails_settled and self.thumb_worker.idle())

    def close_workers(self) -> None:
        """Stop both workers and the polling; the plots go at once, while Python still runs:
        pyqtgraph's items are Python objects, and Qt tearing them down after the interpreter
        ended crashes (seen when the window closed before its event loop ever ran). Once only:
        a window can be closed twice (by the user, then by its owner), and deleting the plots
        again crashed."""
        if self._workers_closed:
            return
        self._workers_closed = True
        self.generation += 1  # a read already answered but not yet delivered is dropped: it
        self.follower = None  # would draw on the deleted plots
        self.timer.stop()
        self.log_worker.stop()
        self.thumb_worker.stop()
        self.mine_worker.stop()
        if shiboken6.isValid(self.plots):
            shiboken6.delete(self.plots)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
