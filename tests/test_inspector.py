"""The hard-negative inspector panel (pytest-qt): it lists, sorts and step-filters hand-built
logs, grows with a live log (a partial last line waits), reports a damaged line once in one
line, sends the activated row's frame to the state, and shows the crops of a real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from mcss_studio.gui.inspector import InspectorPanel
from mcss_studio.gui.state import StudioState
from tests.test_triplets import RECORDS, lines, step_event, triplet, write_run

pytestmark = [pytest.mark.gui]
WAIT_MS = 60000  # generous: the machine is shared; nothing here measures time
STEP, ANCHOR, POSITIVE, NEGATIVE, VIOLATION, DT = 0, 1, 2, 3, 6, 7


@pytest.fixture
def panel(qtbot):
    state = StudioState()
    widget = InspectorPanel(state)
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    widget.show()
    yield widget
    widget.close_workers()


def show(qtbot, panel: InspectorPanel, run: Path, rows: int) -> None:
    panel.state.set_run(run)
    qtbot.waitUntil(lambda: panel.model.rowCount() == rows and not panel._polling,
                    timeout=WAIT_MS)


def column(panel: InspectorPanel, col: int) -> list[str]:
    m = panel.model
    return [m.data(m.index(r, col)) for r in range(m.rowCount())]


def test_lists_sorts_and_filters_by_step(qtbot, panel, tmp_path):
    write_run(tmp_path / "r", [step_event(10), step_event(20), step_event(30)], RECORDS)
    show(qtbot, panel, tmp_path / "r", 4)
    # the default order is the worst violation first: 0.9, 0.5, 0.2, -0.1
    assert column(panel, VIOLATION) == ["0.900", "0.500", "0.200", "-0.100"]
    panel.table.sortByColumn(DT, Qt.SortOrder.AscendingOrder)  # |dt| 3, 7, 12, other seq.
    assert column(panel, DT) == ["-3", "+7", "+12", "other seq."]
    panel.table.sortByColumn(STEP, Qt.SortOrder.DescendingOrder)
    assert column(panel, STEP) == ["30", "20", "10", "10"]
    panel.step_from.setValue(15)
    assert column(panel, STEP) == ["30", "20"]
    panel.step_to.setValue(25)
    assert column(panel, STEP) == ["20"]
    panel.set_step_range(None, None)
    assert panel.model.rowCount() == 4 and panel.step_from.text() == "first"


def test_plots_show_the_step_statistics(qtbot, panel, tmp_path):
    events = [step_event(10, 0.5), step_event(20, 0.25)]
    write_run(tmp_path / "r", events, RECORDS)
    show(qtbot, panel, tmp_path / "r", 4)
    mined, violating = panel.plots.count.curves_
    assert list(mined.getData()[0]) == [10, 20] and list(mined.getData()[1]) == [8, 8]
    assert list(violating.getData()[1]) == [4, 2]  # 8 triplets x fraction violating
    assert list(panel.plots.fraction.curves_[0].getData()[1]) == [0.5, 0.25]
    assert list(panel.plots.distance.curves_[1].getData()[1]) == [0.3, 0.3]


def test_a_live_log_grows_the_table_and_a_partial_line_waits(qtbot, panel, tmp_path):
    run = tmp_path / "r"
    partial = lines(RECORDS[2:3])[:25]
    write_run(run, [step_event(10)], RECORDS[:2], tail=partial)
    show(qtbot, panel, run, 2)
    panel.table.selectRow(1)  # violation -0.1; the selection stays on it while rows come in
    with open(run / "triplets.jsonl", "ab") as fh:
        fh.write(lines(RECORDS[2:3])[25:] + lines(RECORDS[3:]) + b'{"step": 40, ')
    qtbot.waitUntil(lambda: panel.model.rowCount() == 4, timeout=WAIT_MS)
    assert column(panel, VIOLATION) == ["0.900", "0.500", "0.200", "-0.100"]
    assert panel.table.currentIndex().row() == 3
    assert [i.row() for i in panel.table.selectionModel().selectedRows()] == [3]
    panel.table.sortByColumn(STEP, Qt.SortOrder.AscendingOrder)
    assert column(panel, STEP) == ["10", "10", "20", "30"]
    panel.poll()
    qtbot.waitUntil(lambda: not panel._polling, timeout=WAIT_MS)
    assert panel.model.rowCount() == 4  # the half-written record is not shown


def test_a_damaged_line_is_reported_once_in_one_line(qtbot, panel, tmp_path):
    run = tmp_path / "r"
    write_run(run, [], RECORDS[:2], tail=b"{not json}\n" + lines(RECORDS[2:]))
    errors = []
    panel.state.errorRaised.connect(errors.append)
    show(qtbot, panel, run, 2)
    qtbot.waitUntil(lambda: bool(errors), timeout=WAIT_MS)
    for _ in range(3):  # later polls do not report it again
        panel.poll()
        qtbot.waitUntil(lambda: not panel._polling, timeout=WAIT_MS)
    byte = len(lines(RECORDS[:2]))
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "triplets.jsonl" in errors[0] and f"damaged record at byte {byte}" in errors[0]
    assert "damaged record" in panel.status.text() and panel.model.rowCount() == 2


def test_activating_a_row_asks_the_state_for_that_frame(qtbot, panel, tmp_path):
    write_run(tmp_path / "r", [], RECORDS)
    show(qtbot, panel, tmp_path / "r", 4)
    asked = []
    panel.state.gotoRequested.connect(lambda s, c, f: asked.append((s, c, f)))
    model = panel.model
    panel.table.activated.emit(model.index(0, VIOLATION))  # worst row: RECORDS[2]
    panel.table.activated.emit(model.index(0, NEGATIVE))
    panel.table.activated.emit(model.index(1, POSITIVE))  # RECORDS[0]
    assert asked == [("run", 2, 9), ("run", 2, 6), ("walk", 9, 20)]


def test_switching_runs_drops_the_old_one(qtbot, panel, tmp_path):
    write_run(tmp_path / "a", [], RECORDS)
    write_run(tmp_path / "b", [], [triplet(5, ("x", 0, 1), ("x", 0, 9), 0.1, 0.2)])
    show(qtbot, panel, tmp_path / "a", 4)
    show(qtbot, panel, tmp_path / "b", 1)
    assert column(panel, ANCHOR) == ["x\ncam0  f1"]
    panel.state.set_run(None)
    assert panel.model.rowCount() == 0 and "No run" in panel.status.text()


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A few steps of `mcss-train fit` on the tiny synthetic dataset."""
    from mcss_studio.core.synth import generate
    from trainer.cli import main

    root = tmp_path_factory.mktemp("inspector")
    data = generate(root / "data", preset="tiny", seed=0)
    config = root / "fit.toml"
    config.write_text(f'data = "{data.as_posix()}"\ncrop_size = 32\nwidth = 8\n'
                      "embedding_dim = 16\npose_hidden = 32\norientation_hidden = 16\n"
                      "tau = 3\ninstants_per_sequence = 4\nlabelled_batch = 8\n"
                      "triplet_log_every = 2\ntriplet_log_size = 5\neval_every = 0\n")
    assert main(["fit", "--config", str(config), "--steps", "4", "--log-every", "1",
                 "--run-dir", str(root / "runs"), "--run-id", "x", "--progress", "off"]) == 0
    return root / "runs" / "x", data


def test_a_real_run_shows_its_triplets_with_the_crops_the_trainer_cut(qtbot, panel, real_run):
    from mcss_studio.core import open_dataset
    from mcss_studio.core.cache import CropCache

    run, data = real_run
    records = [json.loads(x) for x in (run / "triplets.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2] * 5 + [4] * 5
    for step in (2, 4):  # worst first within a step
        v = [r["violation"] for r in records if r["step"] == step]
        assert v == sorted(v, reverse=True)
    show(qtbot, panel, run, 10)
    qtbot.waitUntil(panel.ready, timeout=WAIT_MS)
    ref = panel.model.ref(0, "negative")
    image = panel.model.data(panel.model.index(0, NEGATIVE), Qt.ItemDataRole.DecorationRole)
    assert image is not None and not image.isNull()
    with CropCache.open(data / "cache", open_dataset(data).open(ref.sequence)) as cache:
        crop = np.asarray(cache.get(ref.camera_index, ref.frame), np.float64)
    shown = image.convertToFormat(image.Format.Format_RGB888)
    rgb = np.frombuffer(shown.constBits(), np.uint8).reshape(
        shown.height(), shown.bytesPerLine())[:, : shown.width() * 3].reshape(
        shown.height(), shown.width(), 3)
    small = rgb[:: max(1, rgb.shape[0] // 32), :: max(1, rgb.shape[1] // 32)][:32, :32]
    assert np.abs(small.astype(np.float64).mean((0, 1)) - crop.mean((0, 1))).max() < 12
    assert "no crops" not in panel.status.text()


def _studio(args: list[str], tmp_path: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "MCSS_STUDIO_CACHE": str(tmp_path / "clicache"),
           "MCSS_STUDIO_SETTINGS": str(tmp_path / "cli.ini")}
    return subprocess.run([sys.executable, "-m", "mcss_studio.gui.app", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_screenshot_of_the_inspector_from_a_run_or_a_projects_newest(tmp_path):
    from PySide6.QtGui import QImage

    write_run(tmp_path / "p" / "runs" / "r", [step_event(10), step_event(20)], RECORDS)
    out = tmp_path / "inspector.png"
    res = _studio(["--run", str(tmp_path / "p"), "--screenshot", str(out), "--panel",
                   "inspector", "--size", "900x600"], tmp_path)  # a project: its newest run
    assert res.returncode == 0, res.stderr
    image = QImage(str(out))
    assert image.width() >= 800 and image.height() >= 500
    res = _studio(["--run", str(tmp_path / "nowhere"), "--screenshot", str(out), "--panel",
                   "inspector"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines_ = [x for x in res.stderr.splitlines() if x.startswith("mcss-studio:")]
    assert len(lines_) == 1 and "no such folder" in lines_[0]


@pytest.mark.usefixtures("private_studio_dirs")
def test_a_row_opens_its_frame_in_the_player(qtbot, real_run):
    from mcss_studio.gui.session import Session

    run, data = real_run
    session = Session(remember_recent=False)
    panel = InspectorPanel(session.state)
    qtbot.addWidget(panel)
    try:
        assert session.open_path(data), session.state.last_error
        show(qtbot, panel, run, 10)
        shown = session.state.sequence.name
        row = next(r for r in range(10) if panel.model.ref(r, "negative").sequence != shown)
        ref = panel.model.ref(row, "negative")
        panel.table.activated.emit(panel.model.index(row, NEGATIVE))
        state = session.state
        assert (state.sequence.name, state.selected_camera, state.frame) == (
            ref.sequence, ref.camera_index, ref.frame)
        assert state.sequence.camera_names[ref.camera_index] == ref.camera
    finally:
        panel.close_workers()
        session.close()


def test_negatives_with_the_anchors_true_pose_are_flagged(qtbot, panel, real_run, tmp_path,
                                                          monkeypatch):
    from mcss_studio.core import open_dataset
    from mcss_studio.core.geometry import paired_pose_distance
    from mcss_studio.gui import inspector

    monkeypatch.setattr(inspector, "POSE_JOB_ROWS", 2)  # the 3 triplets in two jobs
    _, data = real_run
    joints = open_dataset(data).open("S1_walk_1").joints3d
    run = tmp_path / "hand"
    start = {"event": "start", "time": 0, "run_dir": str(run),
             "config": {"data": str(data), "crop_size": 32, "crop_margin": 0.2}}
    records = [triplet(1, ("S1_walk_1", 0, 2), ("S1_walk_1", 1, 2), 0.5, 0.1),  # its own pose
               triplet(1, ("S1_walk_1", 0, 2), ("S1_walk_1", 1, 9), 0.5, 0.2),
               triplet(1, ("S1_walk_1", 0, 2), ("gone", 1, 9), 0.5, 0.3)]  # not in the dataset
    write_run(run, [start], records)
    show(qtbot, panel, run, 3)
    pose = panel.run.triplets.col("pose")
    qtbot.waitUntil(lambda: not np.isnan(pose[:2]).any() and "'gone'" in panel.status.text(),
                    timeout=WAIT_MS)  # the second job, about the missing sequence, came too
    expected = paired_pose_distance(joints[[2]], joints[[9]])[0]
    assert pose[0] < 1e-6 and np.isclose(pose[1], expected) and np.isnan(pose[2])
    assert expected > 0.1  # so only the first is flagged
    panel.table.sortByColumn(8, Qt.SortOrder.AscendingOrder)
    assert column(panel, 8) == ["0.000", f"{expected:.3f}", "-"]
    flagged = panel.model.index(0, NEGATIVE)
    assert "likely false negative" in panel.model.data(flagged, Qt.ItemDataRole.ToolTipRole)
    assert panel.model.data(panel.model.index(1, NEGATIVE), Qt.ItemDataRole.BackgroundRole) is None
    assert "1 likely false negatives" in panel.status.text()


@pytest.mark.usefixtures("private_studio_dirs")
def test_the_dock_opens_for_open_run_but_not_for_any_run_the_state_selects(qtbot, tmp_path):
    from mcss_studio.gui.main_window import MainWindow

    run = tmp_path / "p" / "runs" / "r"
    write_run(run, [step_event(10)], RECORDS)
    window = MainWindow(interactive=False, with_3d=False, remember_recent=False)
    qtbot.addWidget(window)
    window.show()
    try:
        window.state.set_run(run)  # as the training panel does as a project opens or a run starts
        assert window.inspector.run.run_dir == run and not window.inspector_dock.isVisible()
        assert window.open_run(tmp_path / "p")  # File > Open run... (a project: its newest run)
        assert window.inspector_dock.isVisible()
    finally:
        window.close()


def test_a_trained_runs_log_is_listed_sorted_and_its_false_negatives_flagged(
        qtbot, panel, trained_project):
    """The log of the checkpoint trained in the test setup (tau 1 on cyclic motion: most mined
    negatives are the anchor's pose one cycle away, which the inspector must flag)."""
    from mcss_studio.core import open_dataset
    from mcss_studio.core.geometry import paired_pose_distance
    from mcss_studio.core.triplets import KAPPA

    run = trained_project.run
    records = [json.loads(x) for x in (run / "triplets.jsonl").read_text().splitlines()]
    assert len(records) == 80 and {r["step"] for r in records} == set(range(20, 201, 20))
    show(qtbot, panel, run, len(records))
    qtbot.waitUntil(lambda: not np.isnan(panel.run.triplets.col("pose")).any(),
                    timeout=WAIT_MS)
    m = panel.model

    panel.table.sortByColumn(5, Qt.SortOrder.AscendingOrder)  # d(a,n)
    assert column(panel, 5) == [f"{v:.3f}" for v in sorted(r["d_an"] for r in records)]
    panel.table.sortByColumn(VIOLATION, Qt.SortOrder.DescendingOrder)
    assert column(panel, VIOLATION) == [
        f"{v:.3f}" for v in sorted((r["violation"] for r in records), reverse=True)]
    panel.table.sortByColumn(DT, Qt.SortOrder.AscendingOrder)
    dts = [r["negative"]["frame"] - r["anchor"]["frame"] for r in records
           if r["negative"]["sequence"] == r["anchor"]["sequence"]]
    others = len(records) - len(dts)  # negatives of another sequence come last
    assert column(panel, DT) == [f"{d:+d}" for d in sorted(dts, key=abs)] + ["other seq."] * others
    panel.step_from.setValue(150)
    assert m.rowCount() == sum(r["step"] >= 150 for r in records)
    panel.set_step_range(None, None)

    dataset = open_dataset(trained_project.data)
    joints = {name: dataset.open(name).joints3d for name in dataset.names}

    def true_pose_distance(r: dict) -> float:
        a, n = r["anchor"], r["negative"]
        return float(paired_pose_distance(joints[a["sequence"]][[a["frame"]]],
                                          joints[n["sequence"]][[n["frame"]]])[0])

    expected = sorted((r["anchor"]["sequence"], r["anchor"]["camera_index"],
                        r["anchor"]["frame"], r["negative"]["sequence"],
                        r["negative"]["camera_index"], r["negative"]["frame"], r["step"])
                       for r in records if true_pose_distance(r) < KAPPA)
    flagged = []
    for row in range(m.rowCount()):
        if m.data(m.index(row, NEGATIVE), Qt.ItemDataRole.BackgroundRole) is not None:
            a, n = m.ref(row, "anchor"), m.ref(row, "negative")
            flagged.append((a.sequence, a.camera_index, a.frame, n.sequence, n.camera_index,
                            n.frame, int(m.data(m.index(row, STEP)))))
    # the log has false negatives to show (tau 1 on cyclic motion); whether every one of its 80
    # is one depends on the machine: its largest true-pose distances sit at 0.0999, a hair under
    # kappa (all 80 flagged on the machine of 2026-12-01, fewer on earlier ones). That the flag
    # tells the two apart is checked on hand-made triplets
    # (test_negatives_with_the_anchors_true_pose_are_flagged)
    assert len(expected) > len(records) // 2
    assert sorted(flagged) == expected
    assert f"{len(expected)} likely false negatives" in panel.status.text()
