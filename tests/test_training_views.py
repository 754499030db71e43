"""The training panel's parts on their own: the curves' view ranges (set here, not by
pyqtgraph's auto-range, so that a redraw does not re-lay the axes) and the run table's summary
thread (a run is read again only when its files changed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcss_studio.core.runlog import EventWriter
from mcss_studio.core.runs import RunHistory

pytestmark = [pytest.mark.gui]


def history(values: list[float], first_step: int = 1, steps_total: int = 300) -> RunHistory:
    h = RunHistory()
    h.add([{"event": "start", "steps": steps_total, "config": {}}])
    h.add([{"event": "step", "step": first_step + k, "active_triplets": v}
           for k, v in enumerate(values)])
    return h


def view(curves, plot: str) -> tuple[tuple[float, float], tuple[float, float]]:
    (x0, x1), (y0, y1) = curves.plots[plot].getViewBox().viewRange()
    return (round(x0, 6), round(x1, 6)), (round(y0, 6), round(y1, 6))


@pytest.fixture
def curves(qtbot):
    from mcss_studio.gui.training_curves import TrainingCurves

    widget = TrainingCurves()
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_curve_ranges_hold_until_the_data_leave_them(curves):
    run = Path("/runs/a")
    curves.show_runs([(run, "a")])
    box = curves.plots["active"].getViewBox()
    assert not any(box.state["autoRange"])
    values = [0.2 + 0.4 * k / 99 for k in range(100)]  # steps 1..100, 0.2 .. 0.6
    h = history(values)
    curves.update_plot("active", run, h)
    # x: 1.2 x 100 = 120 -> the next round step count, 150 (under the planned 300);
    # y: the data 0.2 .. 0.6 with a tenth of their span, 0.04, on each side; x: 2% each side
    assert view(curves, "active") == ((-3, 153), (0.16, 0.64))
    h.add([{"event": "step", "step": 100 + k, "active_triplets": 0.62} for k in range(1, 11)])
    curves.update_plot("active", run, h)  # 0.62: inside the view, which it still fills: held
    assert view(curves, "active") == ((-3, 153), (0.16, 0.64))
    h.add([{"event": "step", "step": 111, "active_triplets": 0.9}])
    curves.update_plot("active", run, h)  # 0.9 leaves it: 0.2 .. 0.9 padded by 0.07
    assert view(curves, "active") == ((-3, 153), (0.13, 0.97))
    h.add([{"event": "step", "step": 290, "active_triplets": 0.5}])
    curves.update_plot("active", run, h)  # 1.2 x 290 -> 400, but the run plans 300 steps
    assert view(curves, "active")[0] == (-6, 306)


def test_curve_range_narrows_when_the_data_fill_little_of_it(curves):
    a, b = Path("/runs/a"), Path("/runs/b")
    curves.show_runs([(a, "a")])
    curves.update_plot("active", a, history([0.0, 1.0]))
    assert view(curves, "active")[1] == (-0.1, 1.1)
    curves.show_runs([(b, "b")])  # 0.5 .. 0.52 fills 2% of the old view: fitted to them
    curves.update_plot("active", b, history([0.5, 0.52]))
    assert view(curves, "active")[1] == (0.498, 0.522)


def test_a_users_zoom_stays_until_autoscale_is_asked_for(curves):
    run = Path("/runs/a")
    curves.show_runs([(run, "a")])
    h = history([0.2, 0.6])
    curves.update_plot("active", run, h)
    box = curves.plots["active"].getViewBox()
    box.setRange(xRange=(10, 20), yRange=(0, 5), padding=0)  # the user zooms
    h.add([{"event": "step", "step": 3, "active_triplets": 0.9}])
    curves.update_plot("active", run, h)
    assert view(curves, "active") == ((10, 20), (0, 5))
    box.enableAutoRange()  # the plot's 'A' button
    curves.update_plot("active", run, h)
    assert view(curves, "active") == ((-0.08, 4.08), (0.13, 0.97))  # 1.2 x 3 -> 4
    assert not any(box.state["autoRange"])


def test_long_curves_are_drawn_as_the_low_and_high_of_equal_runs_of_points():
    import numpy as np

    from mcss_studio.gui.training_curves import peak_decimate

    x = np.arange(10.0)
    y = np.array([5, 1, 2, 8, 3, 3, 9, 0, 4, 4], float)
    assert peak_decimate(x, y, buckets=5)[1].tolist() == y.tolist()  # 2 x 5 points: as they are
    # 2 buckets: runs of 5, each drawn at its first step as its lowest then highest value
    dx, dy = peak_decimate(x, y, buckets=2)
    assert dx.tolist() == [0, 0, 5, 5] and dy.tolist() == [1, 8, 0, 9]
    # 11 points in 2 buckets: runs of 6, and the 5 left over as a shorter last run
    dx, dy = peak_decimate(np.arange(11.0), np.append(y, -1.0), buckets=2)
    assert dx.tolist() == [0, 0, 6, 6] and dy.tolist() == [1, 8, -1, 9]


def test_a_run_of_many_steps_is_drawn_with_few_points(curves):
    from mcss_studio.gui.training_curves import DRAWN_BUCKETS

    run = Path("/runs/long")
    curves.show_runs([(run, "long")])
    h = history([0.5 + 0.4 * (k % 7) / 6 for k in range(50000)], steps_total=50000)
    curves.update_plot("active", run, h)
    assert curves.point_count(run, "active_triplets") == 2 * DRAWN_BUCKETS
    assert view(curves, "active")[1] == (0.46, 0.94)  # the envelope keeps the extremes


def fake_run(run: Path, steps: int) -> Path:
    events = EventWriter(run / "events.jsonl")
    events.emit("start", steps=steps, start_step=0, device="cpu", config={"mining": "random"})
    for k in range(1, steps + 1):
        events.emit("step", step=k, loss=1.0 / k)
    events.emit("status", status="done", step=steps)
    events.close()
    return run


def test_run_table_reads_a_run_again_only_when_its_files_change(tmp_path, monkeypatch):
    from mcss_studio.gui import run_summaries

    a, b = fake_run(tmp_path / "a", 3), fake_run(tmp_path / "b", 4)
    damaged = tmp_path / "c"
    damaged.mkdir()
    (damaged / "events.jsonl").write_text("not json\n")
    read: list[Path] = []

    def counting(run: Path):
        read.append(run)
        return run_summaries.summarize_run.__wrapped__(run)

    counting.__wrapped__ = run_summaries.summarize_run
    monkeypatch.setattr(run_summaries, "summarize_run", counting)
    worker = run_summaries.RunSummaryWorker()  # process() is called here, on this thread
    serial, rows = worker.process((7, [a, b, damaged]))
    assert serial == 7 and [r.run for r in rows] == [a, b, damaged] and read == [a, b, damaged]
    assert rows[0].summary.history.step == 3 and rows[1].summary.history.step == 4
    assert rows[2].summary is None and "events.jsonl" in rows[2].error
    read.clear()
    assert worker.process((8, [a, b, damaged]))[1] == rows and read == []  # nothing changed
    with open(a / "events.jsonl", "a") as fh:
        fh.write('{"event": "step", "step": 5, "loss": 0.2}\n')
    rows = worker.process((9, [a, b]))[1]
    assert read == [a] and rows[0].summary.history.step == 5
    read.clear()
    worker.process((10, [b, damaged]))  # the damaged run left the cache when it left the list
    assert read == [damaged]


def test_the_panel_reads_run_summaries_off_the_ui_thread(qtbot, tmp_path, monkeypatch):
    import threading

    from mcss_studio.gui import run_summaries
    from mcss_studio.gui.session import Session
    from mcss_studio.gui.training_panel import TrainingPanel

    threads: list[threading.Thread] = []
    summarize = run_summaries.summarize_run

    def recording(run: Path):
        threads.append(threading.current_thread())
        return summarize(run)

    monkeypatch.setattr(run_summaries, "summarize_run", recording)
    session = Session()
    panel = TrainingPanel(session.state, session)
    qtbot.addWidget(panel)
    try:
        panel.open_run(fake_run(tmp_path / "a", 3))
        qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=10000)
        assert panel.table.item(0, 1).text() == "done"
        assert threads and threading.main_thread() not in threads
    finally:
        panel.close_followers()
        session.close()


def test_the_loss_axis_labels_only_1_2_and_5_of_each_decade(curves):
    import numpy as np

    from mcss_studio.gui.training_curves import SparseLogAxis

    axis = curves.plots["loss"].getAxis("left")
    assert isinstance(axis, SparseLogAxis)
    ticks = np.log10([0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 8.0])
    assert axis.logTickStrings(list(ticks), 1.0, 1.0) == ["0.1", "0.2", "", "0.5", "", "", "1",
                                                          "2", ""]


def test_the_table_changes_only_the_rows_of_runs_that_changed(qtbot, tmp_path):
    from mcss_studio.gui.session import Session
    from mcss_studio.gui.training_panel import COLUMNS, TrainingPanel

    session = Session()
    panel = TrainingPanel(session.state, session)
    qtbot.addWidget(panel)
    panel.show()
    try:
        a, b, c = (fake_run(tmp_path / name, 3) for name in "abc")
        for run in (a, b, c):
            panel.open_run(run)
        qtbot.waitUntil(lambda: panel.table.rowCount() == 3 and panel.settled(), timeout=10000)
        rewritten: list[Path] = []
        set_row = panel._set_row
        panel._set_row = lambda row, run, *rest: (rewritten.append(run),
                                                  set_row(row, run, *rest))
        with open(b / "events.jsonl", "a") as fh:
            fh.write('{"event": "step", "step": 5, "loss": 0.2}\n')
        panel.refresh_history()
        qtbot.waitUntil(panel.settled, timeout=10000)
        assert rewritten == [b]
        steps = {panel.table.item(r, 0).text(): panel.table.item(r, COLUMNS.index("steps")).text()
                 for r in range(3)}
        assert steps == {"a": "3/3", "b": "5/3", "c": "3/3"}
        rewritten.clear()
        panel.refresh_history()  # nothing changed: nothing rewritten
        qtbot.waitUntil(panel.settled, timeout=10000)
        assert rewritten == []
        d = fake_run(tmp_path / "d", 2)
        panel.open_run(d)  # another run: its row is added, the others stay
        qtbot.waitUntil(lambda: panel.table.rowCount() == 4 and panel.settled(), timeout=10000)
        assert rewritten == [d]
        rewritten.clear()
        panel._external.remove(c)  # a run that is gone: its row is removed, nothing rewritten
        panel.refresh_history()
        qtbot.waitUntil(lambda: panel.table.rowCount() == 3 and panel.settled(), timeout=10000)
        assert rewritten == [] and sorted(panel.table.item(r, 0).text() for r in range(3)) == [
            "a", "b", "d"]
    finally:
        panel.close_followers()
        session.close()


def test_an_unreadable_run_is_a_row_that_says_so(tmp_path, monkeypatch):
    import errno

    from mcss_studio.gui import run_summaries

    def unreadable(run: Path):  # what a folder of another user's (or a vanished file) gives
        raise PermissionError(errno.EACCES, "Permission denied", str(run / "events.jsonl"))

    monkeypatch.setattr(run_summaries, "summarize_run", unreadable)
    run = fake_run(tmp_path / "locked", 2)
    _serial, (row,) = run_summaries.RunSummaryWorker().process((1, [run]))
    assert row.summary is None and row.error == f"{run}: cannot read: Permission denied"
