"""Full garbage collections kept out of playback (gui/memory.py), each rule on its own: a
settle freezes the survivors so later collections skip them, cyclic garbage frozen by one settle
is reclaimed by the next, settles in quick succession run once, and the Session settles when a
sequence is shown, not when a checkpoint loads (a finished run's loads while the user works)."""

from __future__ import annotations

import gc
import weakref

import pytest

from mcss_studio.gui import memory
from tests.test_gui_window import WAIT_MS, assets, open_ready, window  # noqa: F401


@pytest.fixture
def fresh_settle(monkeypatch):
    monkeypatch.setattr(memory, "_last_settle", [float("-inf")])
    yield
    gc.unfreeze()  # leave the test process as it was


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_a_settle_freezes_the_survivors(fresh_settle):
    kept = Node()
    assert memory.settle()
    assert gc.get_freeze_count() > 0
    assert all(o is not kept for o in gc.get_objects())  # later collections do not walk it


def test_cyclic_garbage_frozen_by_one_settle_is_reclaimed_by_the_next(fresh_settle, monkeypatch):
    node = Node()
    alive = weakref.ref(node)
    assert memory.settle()  # node survives (still referenced) and is frozen
    del node  # now garbage, but frozen: plain collections never see it
    gc.collect()
    assert alive() is not None
    monkeypatch.setattr(memory, "_last_settle", [float("-inf")])
    assert memory.settle()
    assert alive() is None


def test_settles_in_quick_succession_run_once(fresh_settle):
    assert memory.settle()
    assert not memory.settle()


@pytest.mark.gui
@pytest.mark.usefixtures("private_studio_dirs")
def test_the_session_settles_when_a_sequence_is_shown_not_when_a_checkpoint_loads(
        qtbot, monkeypatch, window, assets):  # noqa: F811
    calls: list[tuple] = []
    real = memory.settle
    monkeypatch.setattr(memory, "settle", lambda: calls.append(
        (window.state.sequence is not None, window.state.checkpoint is not None)) or real())
    monkeypatch.setattr(memory, "_last_settle", [float("-inf")])
    rec, ckpt = assets
    open_ready(qtbot, window, rec)
    assert calls == [(True, False)]  # once the sequence is shown
    window.open_checkpoint(ckpt)
    qtbot.waitUntil(lambda: window.state.checkpoint is not None, timeout=WAIT_MS)
    assert calls == [(True, False)]  # no pause for the model's few objects
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
