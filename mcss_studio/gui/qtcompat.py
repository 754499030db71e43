"""Refuse a Qt binding known to crash the Studio, with a message that says how to fix it.

PySide6 6.12.0 returns None from every void method (and True/False from `Signal.emit`) without
taking a reference. On Python 3.12+ those singletons are immortal and nothing happens; on 3.10 and
3.11 each call lowers their reference count, and after seconds of playback Python aborts with
"none_dealloc: deallocating None". pyproject.toml excludes that release on those Pythons; this
check catches environments assembled by hand.
"""

from __future__ import annotations

import sys

import PySide6
from PySide6.QtCore import QObject, Signal


class BrokenBindingError(RuntimeError):
    """The installed Qt binding would crash the interpreter."""


class _Probe(QObject):
    ping = Signal()


def binding_leaks() -> bool:
    """True when void calls or emits of this Qt binding drop references to None/True/False."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    probe = _Probe()
    before = (sys.getrefcount(None), sys.getrefcount(True) + sys.getrefcount(False))
    for _ in range(16):
        probe.setObjectName("probe")
        probe.ping.emit()
    after = (sys.getrefcount(None), sys.getrefcount(True) + sys.getrefcount(False))
    return after[0] <= before[0] - 8 or after[1] <= before[1] - 8


def check_binding() -> None:
    """Raise BrokenBindingError (one line, with the fix) when the binding leaks references."""
    if binding_leaks():
        raise BrokenBindingError(
            f"PySide6 {PySide6.__version__} has a reference-counting bug that crashes Python "
            f"{sys.version_info.major}.{sys.version_info.minor}: install another release "
            "(pip install 'PySide6-Essentials!=6.12.0') or use Python >= 3.12"
        )
