"""Run folders as the Studio reads them (core/runs.py): incremental history, resume cuts,
status of runs that ended without a status event, bounded reads, commands and configs."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.runlog import tail_records
from mcss_studio.core.runs import (
    Launch,
    LaunchRecord,
    RunFollower,
    RunHistory,
    fit_command,
    labels_text,
    list_runs,
    new_run_id,
    read_launch,
    read_run_config,
    run_checkpoints,
    run_label_store,
    run_status,
    store_edits_since,
    summarize_run,
    torchrun_command,
    write_launch,
    write_run_config,
)


def ev(kind: str, t: float, **fields) -> dict:
    return {"event": kind, "time": t, **fields}


def write_events(path, records, partial: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        fh.write(partial)


def test_history_curves_eval_and_resume_cut():
    h = RunHistory()
    h.add([ev("start", 100.0, steps=10, start_step=0, config={"steps": 10}),
           ev("step", 101.0, step=2, loss=3.0, pose_loss=2.0, metric_loss=1.0, lr=0.1),
           ev("step", 102.0, step=4, loss=2.0, pose_loss=1.5, metric_loss=0.5, lr=0.2,
              active_triplets=0.5),
           ev("eval", 102.5, step=4, metrics={"n_mpjpe": 90.0, "hit@1": 0.3,
                                               "chance_hit@1": 0.1}),
           ev("step", 103.0, step=6, loss=1.0, pose_loss=0.9, metric_loss=0.1, lr=0.3),
           ev("checkpoint", 103.1, step=6, path="c6"),
           ev("status", 104.0, status="stopped", step=6)])
    x, y = h.series("loss")
    assert x.tolist() == [2, 4, 6] and y.tolist() == [3.0, 2.0, 1.0]
    assert h.series("active_triplets")[0].tolist() == [4]
    assert h.status == "stopped" and h.duration == pytest.approx(4.0)
    assert h.eval_series("n_mpjpe")[1].tolist() == [90.0]
    # resumed from the step-4 checkpoint: the points after 4 go, the status is open again
    h.add([ev("start", 200.0, steps=10, start_step=4),
           ev("step", 202.0, step=6, loss=1.5, lr=0.3)])
    assert h.series("loss")[0].tolist() == [2, 4, 6]
    assert h.series("loss")[1].tolist() == [3.0, 2.0, 1.5]
    assert h.series("pose_loss")[0].tolist() == [2, 4]
    assert h.status is None and h.duration == pytest.approx(4.0 + 2.0)
    assert h.evals and h.evals[0][0] == 4
    assert h.checkpoints == {6: "c6"}


def test_series_reads_as_views_and_grows_past_its_capacity():
    from mcss_studio.core.runs import Series

    series = Series()
    for k in range(60):
        series.append(k, k / 2)
    x, y = series.arrays()
    assert x.tolist() == list(range(60)) and y[-1] == 29.5
    with pytest.raises(ValueError):  # a view of the curve, not a copy to change
        y[0] = 1.0
    for k in range(60, 200):  # past the first 64 places: the arrays grow, the points stay
        series.append(k, k / 2)
        if k % 50 == 0:
            assert series.arrays()[0][-1] == k
    x, y = series.arrays()
    assert x.tolist() == list(range(200)) and y.tolist() == [k / 2 for k in range(200)]
    series.append(200, 7.0)
    series.keep_until(99.5)  # a resume from step 99: the later points go, pending ones too
    series.append(150, 1.0)
    x, y = series.arrays()
    assert x.tolist() == list(range(100)) + [150] and y[-1] == 1.0


def test_eta_from_the_recent_pace():
    h = RunHistory()
    h.add([ev("start", 0.0, steps=100, start_step=0)])
    assert h.eta() is None  # no pace yet
    h.add([ev("step", 10.0, step=10), ev("step", 30.0, step=20)])  # 2 s a step
    assert h.seconds_per_step() == pytest.approx(2.0)
    assert h.eta() == pytest.approx(80 * 2.0)


def test_follower_reads_only_new_complete_lines_in_slices(tmp_path):
    run = tmp_path / "r"
    events = run / "events.jsonl"
    write_events(events, [ev("start", 1.0, steps=4, start_step=0)], partial='{"event": "st')
    f, h = RunFollower(run), RunHistory()
    records, _ = f.poll()
    assert [r["event"] for r in records] == ["start"]
    assert f.offset == len((json.dumps(ev("start", 1.0, steps=4, start_step=0)) + "\n").encode())
    assert f.poll() == ([], [])  # the half-written line waits
    with open(events, "a") as fh:
        fh.write('ep", "time": 2.0, "step": 1, "loss": 1.0}\n')
    write_events(events, [ev("step", 3.0, step=k, loss=1.0 / k) for k in range(2, 50)])
    got, _ = f.poll(limit=200)  # a slice of about 200 bytes: a few records, not all
    assert 0 < len(got) < 10
    h.add(got)
    while not f.caught_up:
        h.add(f.poll(limit=200)[0])
    assert h.series("loss")[0].tolist() == list(range(1, 50))
    # the trainer log: complete lines only, the partial one later
    (run / "trainer.log").write_bytes(b"line one\nline tw")
    assert f.poll()[1] == ["line one"]
    with open(run / "trainer.log", "ab") as fh:
        fh.write(b"o\n")
    assert f.poll()[1] == ["line two"]


def test_tail_records_limit_reads_a_long_line_whole(tmp_path):
    path = tmp_path / "e.jsonl"
    long = {"event": "x", "pad": "a" * 500}
    path.write_text(json.dumps(long) + "\n" + json.dumps({"event": "y"}) + "\n")
    records, offset = tail_records(path, 0, limit=50)
    assert records == [long] and offset == len(json.dumps(long)) + 1


def launch(**fields) -> LaunchRecord:
    base = dict(command=["x"], started=50.0, ended=None)
    base.update(fields)
    return LaunchRecord({"source": "ground_truth", "subjects": ["S1"]}, [Launch(**base)])


def test_status_of_runs_that_ended_without_a_status_event():
    h = RunHistory()
    h.add([ev("start", 100.0, steps=10, start_step=0), ev("step", 101.0, step=1)])
    assert run_status(h, launch(), running=True) == ("running", "")
    killed = launch(ended=102.0, exit_code=9, crashed=True)
    assert run_status(h, killed) == ("failed", "the trainer was killed (SIGKILL)")
    assert run_status(h, launch(ended=102.0, exit_code=2)) == (
        "failed", "the trainer exited with code 2")
    stopped_early = launch(ended=102.0, exit_code=15, crashed=True, stop_requested=True)
    assert run_status(h, stopped_early)[0] == "stopped"
    assert run_status(h, None)[0] == "incomplete"  # an external run nobody saw end
    h.add([ev("status", 103.0, status="stopped", step=1)])
    assert run_status(h, launch(ended=104.0, exit_code=3)) == ("stopped", "")
    # a later resume that failed before writing an event: the old "stopped" is not its status
    resumed = launch(started=200.0, ended=201.0, exit_code=2)
    assert run_status(h, resumed) == ("failed", "the trainer exited with code 2")
    h.add([ev("status", 300.0, status="failed", step=1, message="boom")])
    assert run_status(h, launch(started=250.0, ended=301.0, exit_code=1)) == ("failed", "boom")


def test_run_files_commands_and_listing(tmp_path):
    runs = tmp_path / "runs"
    rid = new_run_id(runs, "bench quick: MCSS", now=0)
    assert rid.endswith("-bench-quick-mcss")
    (runs / rid).mkdir(parents=True)
    assert new_run_id(runs, "bench quick: MCSS", now=0) == rid + "-2"
    cfg = write_run_config(runs / rid, {"steps": 5, "labelled_subjects": ["S1"], "x": None})
    assert read_run_config(runs / rid) == {"steps": 5, "labelled_subjects": ["S1"]}
    argv = fit_command(cfg, resume=runs / rid / "checkpoints" / "step_0000002.safetensors",
                       python="py")
    assert argv[:5] == ["py", "-m", "trainer.cli", "fit", "--config"]
    assert argv[-2] == "--resume"
    line = torchrun_command(cfg, gpus=8)
    assert shlex.split(line)[:4] == ["torchrun", "--nnodes=1", "--nproc_per_node=8",
                                     "--standalone"]
    assert str(cfg) in shlex.split(line)
    record = launch(ended=3.0, exit_code=0)
    write_launch(runs / rid, record)
    assert read_launch(runs / rid) == record
    (runs / rid / "launch.json").write_text("{not json")
    with pytest.raises(UserInputError, match="launch.json"):
        read_launch(runs / rid)
    (runs / "not-a-run").mkdir()
    assert list_runs(runs) == [runs / rid]
    ck = runs / rid / "checkpoints"
    ck.mkdir()
    for name in ("last.safetensors", "step_0000004.safetensors", "step_0000002.safetensors"):
        (ck / name).write_bytes(b"")
    assert [p.name for p in run_checkpoints(runs / rid)] == [
        "step_0000002.safetensors", "step_0000004.safetensors", "last.safetensors"]
    assert labels_text({}, {"labelled_subjects": ["S1", "S5"], "label_every": 10}) == (
        "GT S1+S5 every 10")
    assert labels_text({"source": "store", "revision": 7}, {}) == "label store rev 7"


def test_a_run_is_tied_to_the_store_revision_its_trainer_read(tmp_path):
    store = tmp_path / "labels.sqlite"
    launch = LaunchRecord({"source": "store", "path": str(store), "revision": 4}, [])
    h = RunHistory()
    assert run_label_store(h, launch)["revision"] == 4  # before the trainer's start event
    assert run_label_store(h, LaunchRecord({"source": "ground_truth"}, [])) is None
    # the trainer read revision 5 (an edit came between Train and its start), then a resume 6
    h.add([{"event": "start", "start_step": 0, "label_store": {"path": str(store),
                                                               "revision": 5}}])
    assert run_label_store(h, launch)["revision"] == 5
    h.add([{"event": "start", "start_step": 2, "label_store": {"path": str(store),
                                                               "revision": 6}}])
    record = run_label_store(h, launch)
    assert labels_text({}, {}, record) == "label store rev 6"
    assert store_edits_since(record, store, 6) == 0
    assert store_edits_since(record, tmp_path / "." / "labels.sqlite", 9) == 3
    assert store_edits_since(record, tmp_path / "other.sqlite", 9) is None  # another store
    assert store_edits_since(record, None, None) is None  # no store open
    assert store_edits_since(None, store, 9) is None  # a run on ground truth
    assert store_edits_since(record, store, 2) == -4  # the store was replaced since


def test_summary_of_a_long_log_reads_its_ends(tmp_path, monkeypatch):
    import mcss_studio.core.runs as runs_mod

    monkeypatch.setattr(runs_mod, "SUMMARY_FULL_BYTES", 2000)
    monkeypatch.setattr(runs_mod, "SUMMARY_TAIL_BYTES", 500)
    run = tmp_path / "r"
    write_events(run / "events.jsonl", [ev("start", 0.0, steps=200, start_step=0,
                                           config={"lambda_metric": 0.3})]
                 + [ev("step", float(k), step=k, loss=1.0) for k in range(1, 201)]
                 + [ev("eval", 201.0, step=200, metrics={"n_mpjpe": 80.0}),
                    ev("status", 202.0, status="done", step=200)])
    s = summarize_run(run)
    assert s.history.config == {"lambda_metric": 0.3}
    assert s.history.status == "done" and s.history.final_metrics == {"n_mpjpe": 80.0}
    assert 0 < len(s.history.series("loss")[0]) < 200  # only the tail's points
    assert np.all(np.diff(s.history.series("loss")[0]) == 1)
