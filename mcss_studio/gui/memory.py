"""Python's full garbage collections kept out of playback.

A full (generation 2) collection walks every object Python tracks. With torch, vispy,
pyqtgraph and the Qt bindings loaded, the Studio holds about 270,000 of them, and one walk took
150-400 ms here, holding the GIL on whichever thread happened to allocate: the UI froze,
whatever it was doing. Python starts one whenever enough objects have survived since the last,
so sooner or later during playback.

So the Studio settles when a sequence is shown, a moment the user waits anyway (videos are
demuxed, caches attached): one full collection, then the survivors are frozen (`gc.freeze`)
and later collections walk only objects made since. Not when a checkpoint loads: a finished
training run loads its checkpoint into live inference while the user works, and the model adds
few objects. Cyclic garbage among frozen objects is not lost for good: every settle unfreezes
and collects everything first, so memory stays bounded by what one settle-to-settle period
leaves.
"""

from __future__ import annotations

import gc
import time

MIN_INTERVAL_S = 2.0  # openings in quick succession (scripts, tests) settle once

_last_settle = [float("-inf")]


def settle() -> bool:
    """Collect everything and freeze the survivors, unless that was done moments ago.
    Whether it ran."""
    now = time.perf_counter()
    if now - _last_settle[0] < MIN_INTERVAL_S:
        return False
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _last_settle[0] = time.perf_counter()
    return True
