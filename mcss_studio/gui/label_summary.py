"""The label store's revision and usable-frame count, read off the UI thread.

The training panel shows what a run would train on from the store and whether a run's labels
have changed since; both follow `state.labelsChanged`, which fires after every stored edit. The
count reads every labelled frame's 3D joints, and SQLite may wait on another process's lock
(up to its busy timeout), so the UI thread only submits the store's path here: this worker reads
it on its own read-only connection (kept open between requests) and answers with a
`StoreSummary`. Requests that pile up while it reads are coalesced into the newest one.
"""

from __future__ import annotations

from pathlib import Path

from ..core.labels import LabelStore, StoreSummary
from .workers import LatestRequestWorker


class StoreSummaryWorker(LatestRequestWorker):
    """Request: the store's path (None: the project closed, let go of its store); result: its
    StoreSummary. A store that cannot be read comes back through `failed` as the store's
    one-line message."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._store: LabelStore | None = None  # used on the worker thread only

    def process(self, request: object) -> StoreSummary | None:
        if request is None:
            self._close_store()
            return None
        path = Path(request)
        if self._store is None or self._store.path != path:
            self._close_store()
            self._store = LabelStore.open(path, read_only=True, create=False)
        return self._store.training_summary()

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def stop(self) -> None:
        super().stop()
        self._close_store()  # the thread has ended: nothing else uses the connection
