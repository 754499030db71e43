"""Heavy paint work kept out of one another's event-loop pass.

On a 2-core machine, repainting the camera views (a few ms) and other heavy paint work (the
training panel's plots, 5-15 ms with pyqtgraph; the 3D view's render where it runs on the UI
thread, 10-15 ms with software OpenGL) each fit well inside a display frame, but landing in the
same event-loop pass, with the machine's load on top, they stalled the UI past 50 ms. Within one
pass Qt may deliver the views' paints before or after a timer's work, so the camera views note
when they ask for a paint and when they painted, and deferrable work (`PassDeferrer`) waits a
few ms for the next pass while a paint is asked for or has just run.

Guarantees: deferral is bounded (`MAX_DEFERRALS`), so deferred work is late by at most a few
tens of ms and never starves however busy the views are.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

SAME_PASS_S = 0.004  # heavy work that ended this recently ran in the pass now running
DEFER_MS = 8  # how long deferred work waits: past the rest of this pass
MAX_DEFERRALS = 3

_last_heavy_end = [float("-inf")]
_heavy_work_pending = [False]


def note_heavy_work_requested() -> None:
    """Called when heavy paint work is asked for (a shown camera view's update)."""
    _heavy_work_pending[0] = True


def note_heavy_work_done() -> None:
    """Called at the end of heavy paint work (a camera view's paint)."""
    _last_heavy_end[0] = time.perf_counter()
    _heavy_work_pending[0] = False


def heavy_work_in_this_pass() -> bool:
    """Whether heavy work runs in the event-loop pass now running: it is asked for and not
    done yet, or it ended moments ago."""
    return _heavy_work_pending[0] or time.perf_counter() - _last_heavy_end[0] < SAME_PASS_S


class PassDeferrer:
    """Runs `work` when asked, unless `deferring()` holds (playback) and the camera views paint
    in this event-loop pass: then DEFER_MS later, at most MAX_DEFERRALS times in a row.
    `request` coalesces: asked again before it ran, the work runs once."""

    def __init__(self, parent: QObject, work: Callable[[], None],
                 deferring: Callable[[], bool]) -> None:
        self.work, self.deferring = work, deferring
        self.timer = QTimer(parent)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.run)
        self.deferrals = 0

    def request(self) -> None:
        self.timer.start(0)

    def cancel(self) -> None:
        self.timer.stop()

    def run(self) -> None:
        if self.deferring() and heavy_work_in_this_pass() and self.deferrals < MAX_DEFERRALS:
            self.deferrals += 1
            self.timer.start(DEFER_MS)
            return
        self.deferrals = 0
        self.timer.stop()
        self.work()
