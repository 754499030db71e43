"""The inspector's triplet table model and its thumbnail worker.

`TripletTableModel` is a model/view table over the columns of core/triplets.py: it holds one
array of row indices (the step filter and the sort, computed with numpy), so a log of a million
triplets sorts and scrolls as fast as one of a hundred; appended rows are inserted, and rows
kept across a re-sort keep their selection. Thumbnails are asked for only when a row is painted
and come from `ThumbnailWorker`, which cuts crops off the UI thread, newest request first, and
drops requests the user scrolled past long ago; when no thumbnail is wanted it measures how close
each negative's true pose is to its anchor's (the likely false negatives).
"""

from __future__ import annotations

import threading
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QColor, QImage

from ..core.errors import UserInputError
from ..core.runcrops import RunCrops
from ..core.triplets import KAPPA, FrameRef, RunData, TripletView
from .workers import _lower_thread_priority

THUMB = 72  # px of a thumbnail's side
CACHE_THUMBS = 3000  # thumbnails kept (about 60 MB at 72 px)
MAX_PENDING = 256  # thumbnail requests kept; older ones were scrolled past
ThumbKey = tuple[str, int, int]  # sequence, camera index, frame

COLUMNS = ("Step", "Anchor", "Positive", "Negative", "d(a,p)", "d(a,n)", "Violation", "dt",
           "True pose")
SORT_KEY = ("step", "anchor", "positive", "negative", "d_ap", "d_an", "violation", "dt", "pose")
VIOLATION_COLUMN, POSE_COLUMN = 6, 8
PoseJob = tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # names, a/n seq+frame
ROLE_COLUMNS = {1: "anchor", 2: "positive", 3: "negative"}
REF_ROLE = Qt.ItemDataRole.UserRole  # the FrameRef of an anchor / positive / negative cell


class ThumbnailWorker(QThread):
    """Cuts crops for thumbnails from a RunCrops made in this thread; newest request first."""

    ready = Signal(int, object, object, str)  # generation, key, QImage or None, why none
    posesReady = Signal(int, int, int, object, str)  # generation, epoch, first row, values, why

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: OrderedDict[ThumbKey, int] = OrderedDict()  # key -> generation
        self._pose_jobs: deque[tuple[int, int, int, PoseJob]] = deque()
        self._source: tuple[int, Callable[[], RunCrops] | None] = (0, None)
        self._source_changed = False
        self._stopping = False
        self._busy = False

    def set_source(self, generation: int, make: Callable[[], RunCrops] | None) -> None:
        """Crops now come from make() (called in the worker), for requests of `generation`."""
        with self._cond:
            self._source, self._source_changed = (generation, make), True
            self._pending.clear()
            self._pose_jobs.clear()
            self._cond.notify()

    def request(self, generation: int, key: ThumbKey) -> list[ThumbKey]:
        """Ask for a thumbnail; returns the oldest requests dropped to make room."""
        dropped = []
        with self._cond:
            self._pending.pop(key, None)
            self._pending[key] = generation
            while len(self._pending) > MAX_PENDING:
                dropped.append(self._pending.popitem(last=False)[0])
            self._cond.notify()
        return dropped

    def request_poses(self, generation: int, epoch: int, start: int, job: PoseJob) -> None:
        """Measure the true-pose distance of triplets start.. (after the thumbnails asked for)."""
        with self._cond:
            self._pose_jobs.append((generation, epoch, start, job))
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not (self._pending or self._pose_jobs or self._busy or self._source_changed)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.wait(10000)

    def run(self) -> None:
        _lower_thread_priority(10)
        crops: RunCrops | None = None
        generation = 0
        try:
            while True:
                with self._cond:
                    while not (self._pending or self._pose_jobs or self._source_changed
                               or self._stopping):
                        self._cond.wait()
                    if self._stopping:
                        return
                    changed, self._source_changed = self._source_changed, False
                    source = self._source
                    key = wanted = pose_job = None
                    if not changed and self._pending:
                        key, wanted = self._pending.popitem(last=True)
                    elif not changed and self._pose_jobs:
                        pose_job = self._pose_jobs.popleft()
                    self._busy = True
                try:
                    if changed:
                        if crops is not None:
                            crops.close()
                        generation, crops = source[0], source[1]() if source[1] else None
                    elif key is not None and wanted == generation:
                        self._cut(crops, generation, key)
                    elif pose_job is not None and pose_job[0] == generation and crops:
                        self._measure(crops, *pose_job)
                finally:
                    with self._cond:
                        self._busy = False
        finally:
            if crops is not None:
                crops.close()

    def _measure(self, crops: RunCrops, generation: int, epoch: int, start: int, job: PoseJob
                 ) -> None:
        try:
            values, problem = crops.pose_distance(*job)
        except UserInputError as exc:
            values, problem = np.full(len(job[1]), np.nan), str(exc)
        self.posesReady.emit(generation, epoch, start, values, problem)

    def _cut(self, crops: RunCrops | None, generation: int, key: ThumbKey) -> None:
        if crops is None:
            self.ready.emit(generation, key, None, "")
            return
        try:
            rgb = np.ascontiguousarray(crops.crop(*key))
        except UserInputError as exc:
            self.ready.emit(generation, key, None, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a worker must survive and report
            traceback.print_exc()
            self.ready.emit(generation, key, None, f"{type(exc).__name__}: {exc}")
            return
        h, w = rgb.shape[:2]
        image = QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation)
        self.ready.emit(generation, key, image.copy(), "")


class TripletTableModel(QAbstractTableModel):
    """Rows = logged triplets of one run (RunData), filtered by step range and sorted."""

    thumbnailWanted = Signal(object)  # ThumbKey, for a cell being painted without one

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.data_: RunData | None = None
        self.mined_now = False  # the rows are "Mine now" triplets, not a run's logged ones
        self.mined_at: int | None = None  # then: the checkpoint's training step, if known
        self.view = TripletView("step")  # the filter and sort; its order: row -> triplet
        self._shown = 0  # triplets of the run the view has seen
        self.thumbs: OrderedDict[ThumbKey, QImage | None] = OrderedDict()
        self._asked: set[ThumbKey] = set()
        self.painted = False  # a view asked for a thumbnail since they were last reset
        self._thumbs_arrived = QTimer(self)  # one repaint for a burst of thumbnails
        self._thumbs_arrived.setSingleShot(True)
        self._thumbs_arrived.setInterval(40)
        self._thumbs_arrived.timeout.connect(self._repaint_thumbs)

    # -- contents -------------------------------------------------------------------------------
    def set_run(self, data: RunData | None, mined_now: bool = False,
                mined_at: int | None = None) -> None:
        """Show a run's logged triplets, or "Mine now" triplets (mined_at: the training step of
        the checkpoint they were mined with, None when it is not known)."""
        self.beginResetModel()
        self.data_ = data
        self.mined_now, self.mined_at = mined_now, mined_at if mined_now else None
        self.reset_thumbnails()
        self._rebuild()
        self.endResetModel()

    def reset_thumbnails(self) -> None:
        """Forget every thumbnail (their source changed); painted rows ask again."""
        self.thumbs.clear()
        self._asked.clear()
        self.painted = False
        self._thumbs_arrived.start()

    @property
    def order(self) -> np.ndarray:
        return self.view.order

    def _rebuild(self) -> np.ndarray:
        self._shown = len(self.data_.triplets) if self.data_ is not None else 0
        if self.data_ is None:
            self.view.order = np.empty(0, np.int64)
            return self.view.order
        return self.view.rebuild(self.data_.triplets)

    def refresh(self, rows_changed: bool) -> None:
        """Show what RunData.apply added. New triplets are merged into the order: inserted when
        they all land after the shown rows, else the rows are re-laid out, keeping the
        selection on its triplets. Rows dropped (a resumed or replaced log) reset the table."""
        if self.data_ is None:
            return
        if rows_changed:
            self.beginResetModel()
            self._rebuild()
            self.endResetModel()
            return
        old = self.order.copy()
        start, self._shown = self._shown, len(self.data_.triplets)
        view = self.view.copy()
        at = view.add(self.data_.triplets, start)  # merged aside: Qt must see the old order
        if not len(at):
            return
        if at[0] >= len(old):
            self.beginInsertRows(QModelIndex(), len(old), len(old) + len(at) - 1)
            self.view = view
            self.endInsertRows()
        else:
            self._relayout(lambda: setattr(self, "view", view), old)

    def _relayout(self, change, old: np.ndarray | None = None) -> None:
        """Apply `change` to the order; persistent indexes (selection, current) follow their
        triplet."""
        self.layoutAboutToBeChanged.emit()
        old = self.order.copy() if old is None else old
        change()
        new = self.order
        where = np.full(int(max(old.max(initial=-1), new.max(initial=-1))) + 1, -1, np.int64)
        where[new] = np.arange(len(new))
        for index in self.persistentIndexList():
            row = int(where[old[index.row()]]) if 0 <= index.row() < len(old) else -1
            self.changePersistentIndex(
                index, self.index(row, index.column()) if row >= 0 else QModelIndex())
        self.layoutChanged.emit()

    def _reorder(self, key: str, descending: bool, steps) -> None:
        def change() -> None:
            self.view = TripletView(key, descending, steps)
            self._rebuild()

        self._relayout(change)

    def set_step_range(self, lo: int | None, hi: int | None) -> None:
        if (lo, hi) != self.view.steps:
            self._reorder(self.view.key, self.view.descending, (lo, hi))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self._reorder(SORT_KEY[column], order == Qt.SortOrder.DescendingOrder, self.view.steps)

    # -- Qt model -------------------------------------------------------------------------------
    def rowCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(self.order)

    def columnCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS[section]
        return None

    def triplet(self, row: int) -> int:
        """The triplet index (into the run's columns) shown in `row`."""
        return int(self.order[row])

    def ref(self, row: int, role: str) -> FrameRef:
        assert self.data_ is not None
        return self.data_.triplets.ref(self.triplet(row), role)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.data_ is None or index.row() >= len(self.order):
            return None
        col, i = index.column(), self.triplet(index.row())
        t = self.data_.triplets
        if col in ROLE_COLUMNS:
            flagged = col == 3 and t.col("pose")[i] < KAPPA
            if role == Qt.ItemDataRole.BackgroundRole and flagged:
                return QColor(255, 205, 210)
            if role == Qt.ItemDataRole.ToolTipRole and flagged:
                return (f"likely false negative: its true pose is within {KAPPA} of the "
                        "anchor's (the same pose at another time)")
            return self._ref_data(t.ref(i, ROLE_COLUMNS[col]), role)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._number_text(col, i)
        if role == Qt.ItemDataRole.ToolTipRole and col == 0 and self.mined_now:
            return ("mined now with the loaded checkpoint" + (
                "" if self.mined_at is None else
                f", saved at training step {self.mined_at}") + "; not a logged training step")
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col == VIOLATION_COLUMN:
            return QColor("#c62828") if t.violation(np.array([i]))[0] > 0 else QColor("#2e7d32")
        if role == Qt.ItemDataRole.ForegroundRole and col == POSE_COLUMN:
            return QColor("#c62828") if t.col("pose")[i] < KAPPA else None
        return None

    def _number_text(self, col: int, i: int) -> str:
        t = self.data_.triplets
        if col == 0:
            return self.step_text() if self.mined_now else str(int(t.col("step")[i]))
        one = np.array([i])
        if col == 7:
            dt = t.dt(one)[0]
            return "other seq." if np.isnan(dt) else f"{int(dt):+d}"
        value = {4: t.col("d_ap"), 5: t.col("d_an"), POSE_COLUMN: t.col("pose")}.get(col)
        value = t.violation(one)[0] if value is None else value[i]
        return "-" if np.isnan(value) else f"{value:.3f}"

    def step_text(self) -> str:
        """The step cell of "Mine now" rows: mined now, with the checkpoint's training step."""
        return "now" if self.mined_at is None else f"now\nckpt {self.mined_at}"

    def _ref_data(self, ref: FrameRef, role):
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{ref.sequence}\n{ref.camera}  f{ref.frame}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail((ref.sequence, ref.camera_index, ref.frame))
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{ref.sequence}, camera {ref.camera}, frame {ref.frame} (double-click: show)"
        if role == REF_ROLE:
            return ref
        return None

    # -- thumbnails -----------------------------------------------------------------------------
    def _thumbnail(self, key: ThumbKey) -> QImage | None:
        self.painted = True
        if key in self.thumbs:
            self.thumbs.move_to_end(key)
            return self.thumbs[key]
        if key not in self._asked and key[1] >= 0:
            self._asked.add(key)
            self.thumbnailWanted.emit(key)
        return None

    def add_thumbnail(self, key: ThumbKey, image: QImage | None) -> None:
        """A thumbnail arrived (None: there is none to show; it is not asked for again)."""
        self._asked.discard(key)
        self.thumbs[key] = image
        while len(self.thumbs) > CACHE_THUMBS:
            self.thumbs.popitem(last=False)
        self._thumbs_arrived.start()

    def poses_changed(self) -> None:
        """True-pose distances arrived: re-sort if sorted by them, repaint their cells."""
        if self.view.key == "pose":
            self._reorder(self.view.key, self.view.descending, self.view.steps)
        if len(self.order):
            self.dataChanged.emit(self.index(0, 3), self.index(len(self.order) - 1, POSE_COLUMN))

    def forget(self, keys: list[ThumbKey]) -> None:
        """Requests the worker dropped: asked for again when their rows are painted."""
        self._asked.difference_update(keys)

    @property
    def thumbnails_settled(self) -> bool:
        """Every painted cell's thumbnail arrived (or there is none to paint)."""
        return not self._asked and (self.painted or not len(self.order))

    def _repaint_thumbs(self) -> None:
        if len(self.order):
            self.dataChanged.emit(self.index(0, 1), self.index(len(self.order) - 1, 3),
                                  [Qt.ItemDataRole.DecorationRole])


HEADER_TIPS = (
    "training step the triplet was mined at",
    "anchor crop: sequence, camera, frame",
    "positive: the same instant seen by another camera",
    "negative: the mined frame (another time of the sequence, or another sequence)",
    "embedding distance anchor - positive",
    "embedding distance anchor - negative",
    "d(a,p) - d(a,n) + margin: > 0 violates the margin (red)",
    "negative frame - anchor frame (sorted by |dt|); 'other seq.' = another sequence",
    f"distance of the negative's and the anchor's ground-truth poses (unit scale, Procrustes "
    f"aligned); below {KAPPA} (red) it is the same pose: likely a false negative",
)
