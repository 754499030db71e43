"""The inspector's Qt-free data (core/triplets.py, core/runcrops.py): columns, order, step
filter, incremental following of live logs, damaged and foreign records, resumed runs, where a
run's dataset is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mcss_studio.core.triplets as triplets_mod
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.triplets import (
    RunData,
    RunFollower,
    find_run,
    parse_triplets,
    resolve_run_path,
    triplet_order,
)


def ref(seq: str, cam: int, frame: int) -> dict:
    return {"sequence": seq, "camera": f"cam{cam}", "camera_index": cam, "frame": frame}


def triplet(step: int, a: tuple, n: tuple, d_ap: float, d_an: float, margin: float = 0.2
            ) -> dict:
    """A record as the trainer writes it; the positive is the anchor's instant in camera 9."""
    return {"step": step, "mining": "hardest", "anchor": ref(*a), "positive": ref(a[0], 9, a[2]),
            "negative": ref(*n), "d_ap": d_ap, "d_an": d_an, "margin": margin,
            "violation": d_ap - d_an + margin}


# (step, anchor, negative, d_ap, d_an): violations 0.5, -0.1, 0.9, 0.2; dt +7, nan, -3, +12
RECORDS = [
    triplet(10, ("walk", 0, 20), ("walk", 1, 27), 0.6, 0.3),
    triplet(10, ("walk", 1, 5), ("run", 0, 40), 0.3, 0.6),
    triplet(20, ("run", 2, 9), ("run", 2, 6), 0.9, 0.2),
    triplet(30, ("aa", 0, 1), ("aa", 3, 13), 0.4, 0.4),
]


def lines(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def columns(records=RECORDS):
    out, error = parse_triplets(records, list(range(len(records))), "t.jsonl")
    assert error is None
    return out


def test_columns_give_violation_dt_and_refs():
    t = columns()
    assert np.allclose(t.violation(), [0.5, -0.1, 0.9, 0.2])
    dt = t.dt()
    assert dt[0] == 7 and np.isnan(dt[1]) and dt[2] == -3 and dt[3] == 12
    neg = t.ref(1, "negative")
    assert (neg.sequence, neg.camera, neg.camera_index, neg.frame) == ("run", "cam0", 0, 40)
    assert t.ref(2, "positive").camera_index == 9


def test_order_by_each_key_with_ties_in_log_order_and_missing_values_last():
    t = columns()
    assert list(triplet_order(t, "violation", descending=True)) == [2, 0, 3, 1]
    assert list(triplet_order(t, "violation")) == [1, 3, 0, 2]
    assert list(triplet_order(t, "dt")) == [2, 0, 3, 1]  # |dt| 3, 7, 12; other sequence last
    assert list(triplet_order(t, "dt", descending=True)) == [3, 0, 2, 1]
    assert list(triplet_order(t, "step", descending=True)) == [3, 2, 0, 1]  # 10, 10 keep order
    assert list(triplet_order(t, "d_an")) == [2, 0, 3, 1]
    assert list(triplet_order(t, "anchor")) == [3, 2, 0, 1]  # aa < run < walk; walk cam0 < cam1
    with pytest.raises(ValueError):
        triplet_order(t, "loss")


def test_step_range_filter_is_inclusive_and_open_ended():
    t = columns()
    assert list(triplet_order(t, "step", steps=(20, 30))) == [2, 3]
    assert list(triplet_order(t, "step", steps=(None, 10))) == [0, 1]
    assert list(triplet_order(t, "violation", True, steps=(11, None))) == [2, 3]
    assert list(triplet_order(t, "step", steps=(31, None))) == []


def test_a_record_without_needed_fields_is_refused_naming_byte_and_field(tmp_path):
    old = {k: v for k, v in RECORDS[2].items() if k != "margin"}  # older log: margin from it
    foreign = {"step": 40, "anchor": 3, "positive": 4, "negative": 5}
    t, error = parse_triplets([RECORDS[0], old, foreign, RECORDS[1]], [0, 100, 250, 300],
                              tmp_path / "triplets.jsonl")
    assert len(t) == 2 and np.isclose(t.col("margin")[1], 0.2)
    assert error is not None and "byte 250" in str(error) and "'anchor'" in str(error)
    assert "\n" not in str(error) and "triplets.jsonl" in str(error)


def write_run(run: Path, events: list[dict], records: list[dict], tail: bytes = b"") -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "events.jsonl").write_bytes(lines(events))
    (run / "triplets.jsonl").write_bytes(lines(records) + tail)


def step_event(step: int, active: float = 0.5) -> dict:
    return {"event": "step", "time": 0, "step": step, "triplets": 8, "active_triplets": active,
            "d_ap_mean": 0.4, "d_an_mean": 0.3}


def test_following_reads_only_new_bytes_and_waits_for_a_partial_line(tmp_path, monkeypatch):
    run = tmp_path / "r"
    write_run(run, [step_event(10)], RECORDS[:2], tail=b'{"step": 20, "anch')
    reads = []
    real = triplets_mod.follow_records

    def spy(path, offset=0, max_bytes=None):
        reads.append((Path(path).name, offset))
        return real(path, offset, max_bytes)

    monkeypatch.setattr(triplets_mod, "follow_records", spy)
    follower, data = RunFollower(run), RunData(run)
    assert data.apply(follower.poll()) is False
    assert len(data.triplets) == 2 and list(data.stats.col("step")) == [10]
    first_end = len(lines(RECORDS[:2]))
    assert follower.triplets.offset == first_end  # the partial line waits
    with open(run / "triplets.jsonl", "r+b") as fh:  # the writer finishes it, adds another
        fh.seek(first_end)
        fh.write(lines(RECORDS[2:]))
    with open(run / "events.jsonl", "ab") as fh:
        fh.write(lines([step_event(20)]))
    reads.clear()
    data.apply(follower.poll())
    assert ("triplets.jsonl", first_end) in reads and ("triplets.jsonl", 0) not in reads
    assert len(data.triplets) == 4 and list(data.stats.col("step")) == [10, 20]
    assert [data.triplets.ref(i, "anchor").frame for i in range(4)] == [20, 5, 9, 1]


def test_a_long_log_is_read_in_chunks(tmp_path):
    run = tmp_path / "r"
    many = [triplet(1 + i // 7, ("walk", 0, i % 50), ("walk", 1, i % 50 + 20), 0.5, 0.1)
            for i in range(300)]  # 7 triplets a step: polls end inside a step
    write_run(run, [], many)
    follower, data = RunFollower(run, chunk_bytes=4096), RunData(run)
    polls = 0
    while True:
        chunk = follower.poll()
        data.apply(chunk)
        polls += 1
        if not chunk.more:
            break
    assert len(data.triplets) == 300 and polls > 10
    assert list(data.triplets.col("step")) == [1 + i // 7 for i in range(300)]
    assert [data.triplets.ref(i, "anchor").frame for i in range(300)] == [
        i % 50 for i in range(300)]


def test_a_damaged_line_keeps_what_came_before_and_is_reported_once(tmp_path):
    run = tmp_path / "r"
    write_run(run, [], RECORDS[:2], tail=b'{"step": 2\xff0}\n' + lines(RECORDS[2:]))
    follower, data = RunFollower(run), RunData(run)
    chunk = follower.poll()
    data.apply(chunk)
    assert len(data.triplets) == 2
    bad_at = len(lines(RECORDS[:2]))
    assert len(chunk.errors) == 1 and f"byte {bad_at}" in chunk.errors[0]
    assert "\n" not in chunk.errors[0]
    again = follower.poll()
    assert again.errors == [] and len(again.triplets) == 0


def test_a_resumed_run_replaces_the_steps_it_logs_again(tmp_path):
    run = tmp_path / "r"
    write_run(run, [step_event(10), step_event(20), step_event(30)], RECORDS)
    follower, data = RunFollower(run), RunData(run)
    data.apply(follower.poll())
    with open(run / "triplets.jsonl", "ab") as fh:  # resumed from the step-10 checkpoint
        fh.write(lines([triplet(20, ("walk", 0, 3), ("walk", 0, 30), 0.1, 0.9)]))
    with open(run / "events.jsonl", "ab") as fh:
        fh.write(lines([step_event(20, active=0.25)]))
    assert data.apply(follower.poll()) is True  # rows shown before were dropped
    assert list(data.triplets.col("step")) == [10, 10, 20]
    assert data.triplets.ref(2, "anchor").frame == 3
    assert list(data.stats.col("step")) == [10, 20]
    assert data.stats.col("active_triplets")[-1] == 0.25


def test_a_replaced_log_is_read_again_from_its_start(tmp_path):
    run = tmp_path / "r"
    write_run(run, [], RECORDS)
    follower, data = RunFollower(run), RunData(run)
    data.apply(follower.poll())
    (run / "triplets.jsonl").write_bytes(lines(RECORDS[3:]))  # shorter: another run's log
    chunk = follower.poll()
    assert chunk.reset_triplets and data.apply(chunk) is True
    assert len(data.triplets) == 1 and data.triplets.ref(0, "anchor").sequence == "aa"


def test_relative_paths_are_resolved_from_the_folder_the_trainer_ran_in(tmp_path):
    (tmp_path / "work" / "data").mkdir(parents=True)
    run = tmp_path / "work" / "runs" / "r1"
    run.mkdir(parents=True)
    assert resolve_run_path(run, "runs/r1", "data") == (tmp_path / "work" / "data")
    assert resolve_run_path(run, "runs/r1", "missing") is None
    assert resolve_run_path(run, "runs/r1", "") is None
    assert resolve_run_path(run, None, str(tmp_path / "work" / "data")) == tmp_path / "work" / \
        "data"


def test_find_run_takes_a_run_or_a_projects_newest_and_refuses_others(tmp_path):
    import os

    older, newer = tmp_path / "p" / "runs" / "a", tmp_path / "p" / "runs" / "b"
    write_run(older, [step_event(1)], [])
    write_run(newer, [step_event(1)], [])
    os.utime(older / "events.jsonl", (1e9, 1e9))
    assert find_run(tmp_path / "p") == newer
    assert find_run(older) == older
    with pytest.raises(UserInputError, match="no training run here"):
        find_run(tmp_path)
    with pytest.raises(UserInputError, match="no such folder"):
        find_run(tmp_path / "nowhere")


def test_a_resume_inside_one_read_drops_the_steps_logged_again(tmp_path):
    run = tmp_path / "r"
    again = [triplet(20, ("walk", 0, 3), ("walk", 0, 30), 0.1, 0.9),
             triplet(20, ("walk", 0, 4), ("walk", 0, 31), 0.1, 0.9)]
    write_run(run, [step_event(10), step_event(20), step_event(30), step_event(20)],
              RECORDS + again)  # steps 10 10 20 30, then 20 20 after a resume
    data = RunData(run)
    data.apply(RunFollower(run).poll())
    assert list(data.triplets.col("step")) == [10, 10, 20, 20]
    assert [data.triplets.ref(i, "anchor").frame for i in range(4)] == [20, 5, 3, 4]
    assert list(data.stats.col("step")) == [10, 20]


@pytest.mark.parametrize("key", ["step", "d_ap", "violation", "dt", "anchor"])
@pytest.mark.parametrize("descending", [False, True])
def test_appended_triplets_merge_into_the_order_a_full_sort_gives(key, descending):
    from mcss_studio.core.triplets import TripletView

    rng = np.random.default_rng(1)
    def frame() -> tuple:
        return f"s{rng.integers(3)}", int(rng.integers(2)), int(rng.integers(9))

    records = [triplet(1 + i // 5, frame(), frame(), float(rng.integers(4)) / 4,
                       float(rng.integers(4)) / 4) for i in range(120)]  # many ties
    records[7]["d_ap"] = None  # a null distance sorts last
    view = TripletView(key, descending, steps=(3, 20))
    t = columns(records[:40])
    view.rebuild(t)
    for end in (41, 75, 120):
        start = len(t)
        t.extend(columns(records[start:end]))
        old = view.order.copy()
        at = view.add(t, start)
        assert list(view.order) == list(triplet_order(t, key, descending, (3, 20)))
        assert list(np.delete(view.order, at)) == list(old)  # the old rows kept their order
