"""wait_until, the event-loop wait that the screenshot scripts share: it returns once the
condition holds (events keep flowing meanwhile) and ends the script in one line on timeout."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QTimer

from mcss_studio.gui.screenshot import wait_until


def test_wait_until_runs_events_until_the_condition_holds(qapp):
    fired: list[bool] = []
    QTimer.singleShot(30, lambda: fired.append(True))  # only the event loop delivers this
    wait_until(qapp, lambda: fired, seconds=10)
    assert fired == [True]


def test_wait_until_ends_the_script_in_one_line_on_timeout(qapp):
    with pytest.raises(SystemExit, match="^timed out waiting for the training panel$"):
        wait_until(qapp, lambda: False, seconds=0.05, what="the training panel")
