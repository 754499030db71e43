"""A background thread that follows training-run folders for the training panel.

It reads what each followed run appended to its event stream and trainer log (core/runs.py
RunFollower: only new bytes, in slices of at most SLICE bytes) and hands the parsed records to
the UI thread in batches, so a run with a million event lines is caught up with in the
background while the UI thread only appends each batch to its RunHistory. Each batch names the
run and the generation of its follower: batches from a follower that was replaced (the run was
unfollowed and followed again, and is read from its start) are recognised and ignored.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QThread, Signal

from ..core.errors import UserInputError
from ..core.runs import RunFollower
from .workers import _lower_thread_priority

SLICE = 256 << 10  # bytes parsed per batch: a batch costs the UI thread a few milliseconds
IDLE_S = 0.25  # pause when every run is caught up


class RunFollowWorker(QThread):
    batch = Signal(object, int, list, list)  # run folder, generation, records, log lines
    failed = Signal(object, str)  # run folder, one-line message (a damaged event log)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._followers: dict[Path, tuple[int, RunFollower]] = {}
        self._generation = 0
        self._stopping = False
        self._caught_up = False  # every followed run was read to its end by the last loop

    def follow(self, runs: list[Path]) -> dict[Path, int]:
        """Follow exactly `runs`; runs new to the set are read from their start. Returns the
        generation of each followed run (batches of other generations are stale)."""
        with self._lock:
            kept = {}
            for run in runs:
                if run in self._followers:
                    kept[run] = self._followers[run]
                else:
                    self._generation += 1
                    kept[run] = (self._generation, RunFollower(run))
            self._followers = kept
            self._caught_up = False
            generations = {run: gen for run, (gen, _) in kept.items()}
        self._wake.set()
        return generations

    def caught_up(self) -> bool:
        """Every followed run was read to its end (its batches may still be in the queue)."""
        with self._lock:
            return self._caught_up

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self.wait(10000)

    def run(self) -> None:
        _lower_thread_priority(5)
        while not self._stopping:
            with self._lock:
                followers = list(self._followers.items())
            behind = False
            for run, (generation, follower) in followers:
                try:
                    records, lines = follower.poll(SLICE)
                except (UserInputError, OSError) as exc:
                    self.failed.emit(run, str(exc))
                    with self._lock:
                        self._followers.pop(run, None)
                    continue
                if records or lines:
                    self.batch.emit(run, generation, records, lines)
                behind = behind or not follower.caught_up
            with self._lock:
                self._caught_up = not behind and followers == list(self._followers.items())
            if not behind:
                self._wake.wait(IDLE_S)
                self._wake.clear()
