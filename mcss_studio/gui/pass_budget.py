"""Heavy paint work kept out of one another's event-loop pass.

On a 2-core machine with software OpenGL, repainting the camera views (a few ms) and rendering
the 3D view (10-15 ms) each fit well inside a display frame, but landing in the same event-loop
pass, with the machine's load on top, they stalled the UI past 50 ms. Qt handles posted events
(paints) before timers in a pass, so the camera views note when they painted, and deferrable
work (the 3D view's render during playback) run from a timer in the same pass waits a few ms
for the next one.

Guarantees: deferral is bounded (`MAX_DEFERRALS`), so deferred work is late by at most a few
tens of ms and never starves however busy the views are.
"""

from __future__ import annotations

import time

SAME_PASS_S = 0.004  # heavy work that ended this recently ran in the pass now running
DEFER_MS = 8  # how long deferred work waits: past the rest of this pass
MAX_DEFERRALS = 3

_last_heavy_end = [float("-inf")]


def note_heavy_work_done() -> None:
    """Called at the end of heavy paint work (a camera view's paint)."""
    _last_heavy_end[0] = time.perf_counter()


def heavy_work_in_this_pass() -> bool:
    """Whether heavy work ran in the event-loop pass now running (it ended moments ago)."""
    return time.perf_counter() - _last_heavy_end[0] < SAME_PASS_S
