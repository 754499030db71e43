"""The trainer subprocess runs below every thread of the Studio: nice 19 and, on Linux, the
idle scheduling class, inherited by the threads it starts afterwards (torch's among them)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mcss_studio.gui import training_runner
from mcss_studio.gui.training_runner import TRAINER_NICE, lower_priority

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling")

# waits for a line, then reports its main thread's and a new thread's nice and policy
CHILD = """
import os, sys, threading
sys.stdin.readline()
def report(who):
    print(who, os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0), flush=True)
report("main")
t = threading.Thread(target=report, args=("thread",))
t.start()
t.join()
"""


def lowered_child_reports() -> dict[str, list[str]]:
    """Start CHILD, lower it, and return its main thread's and a later thread's reports."""
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        lower_priority(child.pid)
        out, _ = child.communicate("go\n", timeout=60)
    finally:
        child.kill()
    return dict((line.split()[0], line.split()[1:]) for line in out.splitlines())


def test_lowered_process_and_the_threads_it_starts_later_run_idle():
    assert TRAINER_NICE == 19
    reports = lowered_child_reports()
    assert reports["main"] == ["19", str(os.SCHED_IDLE)]
    assert reports["thread"] == ["19", str(os.SCHED_IDLE)]


def test_lowering_a_process_that_ended_is_no_error():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    lower_priority(child.pid)  # gone: nothing to lower, nothing raised


def test_a_trainer_nice_of_0_leaves_the_process_at_the_studios_priority(monkeypatch):
    # the screenshot and walkthrough scripts set it, so that a loaded machine cannot starve them
    monkeypatch.setattr(training_runner, "TRAINER_NICE", 0)
    own = [str(os.getpriority(os.PRIO_PROCESS, 0)), str(os.sched_getscheduler(0))]
    reports = lowered_child_reports()
    assert reports["main"] == own
    assert reports["thread"] == own
