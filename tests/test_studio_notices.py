"""What the user must keep in view about open data stays in the notice status line: a
sequence's warnings (frame counts that differ, say) do not scroll away after seconds."""

from __future__ import annotations

import pytest

from mcss_studio.gui.session import Session

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("private_studio_dirs")]


def test_sequence_warnings_stay_in_the_notice_line(qtbot, make_recording):
    uneven = make_recording("uneven", frames=[10, 8, 8])
    even = make_recording("even", frames=8)
    s = Session()
    try:
        assert s.open_path(uneven)
        notice = s.state.status["notice"]
        assert "frame counts differ" in notice and "common 8 frames" in notice
        qtbot.wait(300)
        s.state.set_frame(5)
        assert s.state.status["notice"] == notice  # still there: nothing times it out
        assert s.open_path(even)
        assert s.state.status["notice"] == ""  # about the data now open, not the old one
    finally:
        s.close()
