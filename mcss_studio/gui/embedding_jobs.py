"""The Session's embedding work: the index build (with its map projection and pose errors),
the retrieval figures, and the neighbour queries of the gallery, all off the UI thread.

EmbeddingJobs builds (or reopens) the index of the loaded checkpoint over the open dataset in a
TaskWorker and writes it to the state; the retrieval figures follow in a second one. A build is
cancelled whenever the Studio's own crop build needs the folder or the inputs change; it resumes
from its finished chunks (core/embedding_store.py). NeighbourWorker answers the gallery's queries
newest-first (stale ones dropped, as for inference), reading the crops of the answer too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..core.embedding_store import build_index, crop_of
from ..core.embeddings import EmbeddingIndex, NeighbourFilter
from ..core.retrieval import KAPPA, cross_view_retrieval
from .state import StudioState
from .workers import LatestRequestWorker, TaskWorker

MAX_RETRIEVAL_INSTANTS = 1000  # pose distances are all pairs of instants: keep it seconds


def retrieval_figures(index: EmbeddingIndex) -> dict | None:
    """The protocol's figures (core.retrieval) over the index's instants with ground truth,
    every camera; at most MAX_RETRIEVAL_INSTANTS instants, evenly spread."""
    first = np.array([s.first_instant for s in index.sequences], np.int64)
    instant = first[index.seq_id] + index.frame
    if index.gt is None:
        return None
    has_gt = np.isfinite(np.asarray(index.gt)).all(axis=(1, 2))
    usable = np.flatnonzero(has_gt)
    if len(usable) < 2:
        return None
    keep = usable[np.linspace(0, len(usable) - 1, min(len(usable), MAX_RETRIEVAL_INSTANTS))
                  .round().astype(np.int64)]
    rows = np.flatnonzero(np.isin(instant, keep))
    figures, pairs = cross_view_retrieval(
        index.seq_id[rows], index.frame[rows], index.camera[rows],
        np.asarray(index.gt)[instant[rows]], np.asarray(index.embeddings[rows]))
    if not figures:
        return None
    return {"figures": figures, "pairs": pairs, "instants": int(len(keep))}


class EmbeddingJobs(QObject):
    """Owns the index and retrieval workers; writes their results and progress to the state.

    `wanted` says whether anything shows the index (the window clears it while its embedding
    panels are closed, so a large dataset is not embedded for nobody); a Session without a
    window wants it."""

    wantedChanged = Signal(bool)

    def __init__(self, state: StudioState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.wanted = True
        self.index_worker: TaskWorker | None = None
        self.retrieval_workers: list[TaskWorker] = []  # finishing ones are waited for on close
        self._key: tuple | None = None  # (dataset root, cache, checkpoint) of the index wanted
        self.neighbours = NeighbourWorker(self)
        self.neighbours.start()
        state.set_status("embeddings", "")

    def set_wanted(self, wanted: bool) -> None:
        """Whether a panel shows the index; a build for none is stopped (it resumes later)."""
        if bool(wanted) != self.wanted:
            self.wanted = bool(wanted)
            if not wanted:
                self.cancel()
                if self.state.embedding_index is None:
                    self.state.set_status("embeddings", "")
            self.wantedChanged.emit(self.wanted)

    @property
    def busy(self) -> bool:
        return self.index_worker is not None and self.index_worker.isRunning()

    def start(self, dataset, cache_dir: Path | None, checkpoint: Path | None) -> None:
        """Build or reopen the index for these inputs unless it is shown or being built."""
        if dataset is None or cache_dir is None or checkpoint is None or not self.wanted:
            return
        key = (Path(dataset.root), Path(cache_dir), Path(checkpoint))
        if key == self._key and (self.busy or self.state.embedding_index is not None):
            return
        self.cancel()
        self._key = key
        self.state.set_embedding_index(None)

        def build(progress) -> EmbeddingIndex:
            index = build_index(dataset, cache_dir, checkpoint, progress, device="cpu")
            index.projection()  # computed here, once: the map reads it
            index.pose_errors()
            index.enable_fast_search()  # the gallery's queries over a large index (core/knn.py)
            return index

        worker = TaskWorker(build, self)
        current = lambda: worker is self.index_worker  # noqa: E731 - replaced builds are stale
        worker.progress.connect(lambda d, t: current() and self.state.set_status(
            "embeddings", f"embeddings {d}/{t} frames"))
        worker.succeeded.connect(lambda index: current() and self._built(index))
        worker.failed.connect(lambda message: current() and self._failed(worker, message))
        self.index_worker = worker
        self.state.set_status("embeddings", "embeddings...")
        worker.start()

    def _built(self, index: EmbeddingIndex) -> None:
        self.state.set_embedding_index(index)
        self.state.set_status("embeddings", f"embeddings: {len(index)}")
        worker = TaskWorker(lambda _progress: retrieval_figures(index), self)
        current = lambda: index is self.state.embedding_index  # noqa: E731
        # {}: no figures (no ground truth, or they failed): the panels stop waiting for them
        worker.succeeded.connect(lambda figures: current() and self.state.set_retrieval(
            figures or {}))
        worker.failed.connect(lambda _message: current() and self.state.set_retrieval({}))
        self.retrieval_workers = [w for w in self.retrieval_workers if w.isRunning()] + [worker]
        worker.start()

    def _failed(self, worker: TaskWorker, message: str) -> None:
        self._key = None
        if worker.cancelled:
            self.state.set_status("embeddings", "embeddings: paused")
            return
        self.state.set_status("embeddings", "embeddings: failed")
        self.state.report_error(message)

    def cancel(self) -> None:
        """Stop a build (it resumes from its chunks when started again). Retrieval figures
        still being computed are left to finish; they are dropped unless their index is the
        state's."""
        worker = self.index_worker
        if worker is not None and worker.isRunning():
            worker.cancelled = True
            worker.wait()
        self.index_worker = None
        if self._key is not None and self.state.embedding_index is None:
            self._key = None

    def clear(self) -> None:
        """Forget the index (another dataset or no checkpoint)."""
        self.cancel()
        self._key = None
        self.state.set_embedding_index(None)
        self.state.set_status("embeddings", "")

    def close(self) -> None:
        self.cancel()
        for worker in self.retrieval_workers:
            worker.wait()
        self.neighbours.stop()


@dataclass
class GalleryRequest:
    """Neighbours of `row` (mode "neighbours") or the crops of `rows` (mode "rows")."""

    serial: int
    index: EmbeddingIndex
    row: int
    k: int = 10
    filt: NeighbourFilter = field(default_factory=NeighbourFilter)
    rows: tuple[int, ...] = ()
    kappa: float = KAPPA


@dataclass
class GalleryItem:
    row: int
    key: tuple[str, int, int]
    distance: float
    crop: np.ndarray | None
    pose: np.ndarray  # (J, 3) predicted camera-frame pose, mm
    correct: bool | None  # by the retrieval criterion; None without ground truth
    p_mpjpe: float  # of its GT pose to the query's, mm (NaN without)


@dataclass
class GalleryAnswer:
    serial: int
    index: EmbeddingIndex
    query: int
    items: list[GalleryItem]


class NeighbourWorker(LatestRequestWorker):
    """Answers GalleryRequests; only the newest pending one is worked on."""

    def process(self, request: GalleryRequest) -> GalleryAnswer:
        index = request.index
        if request.rows:
            rows = np.asarray(request.rows, np.int64)
            q = index.embeddings[request.row]
            distances = np.linalg.norm(np.asarray(index.embeddings[rows]) - q, axis=1)
        else:
            found = index.query(request.row, request.k, request.filt)
            rows, distances = found.rows, found.distances
        judged = index.judge(request.row, rows, request.kappa)
        items = []
        for i, (r, d) in enumerate(zip(rows.tolist(), distances.tolist())):
            correct, error = judged[i] if judged else (None, float("nan"))
            items.append(GalleryItem(r, index.key(r), float(d), crop_of(index, r),
                                     np.asarray(index.poses[r]), correct, error))
        return GalleryAnswer(request.serial, index, request.row, items)


__all__ = ["EmbeddingJobs", "GalleryAnswer", "GalleryItem", "GalleryRequest", "NeighbourWorker",
           "retrieval_figures"]
