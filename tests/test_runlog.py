"""Run logs (core/runlog.py): complete records only, and a resumed writer never fuses records."""

from __future__ import annotations

import json

import pytest

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.runlog import EventWriter, JsonLines, read_events, read_triplets, tail_records


def test_reader_skips_a_half_written_last_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"start","time":1}\n{"event":"step","time":2}\n{"event":"st')
    assert read_events(path) == [{"event": "start", "time": 1}, {"event": "step", "time": 2}]
    # a record whose newline has not been written yet is still being written: not read either
    path.write_text('{"event":"start","time":1}\n{"event":"step","time":2}')
    assert read_events(path) == [{"event": "start", "time": 1}]


def test_resumed_writer_starts_on_a_fresh_line(tmp_path):
    path = tmp_path / "triplets.jsonl"
    path.write_text('{"step":1,"violation":0.5}\n{"step":2,"viol')  # killed mid-write
    log = JsonLines(path)
    log.write({"step": 3, "violation": 0.25})
    log.close()
    # the record the killed writer never finished is cut off, the new one starts on a fresh line
    assert path.read_text() == '{"step":1,"violation":0.5}\n{"step":3,"violation":0.25}\n'
    assert read_triplets(path) == [{"step": 1, "violation": 0.5}, {"step": 3, "violation": 0.25}]


def test_a_damaged_complete_record_is_a_one_line_error(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a":1}\n{"b"\xff2}\n{"c":3}\n')
    with pytest.raises(UserInputError, match="damaged record at byte 8"):
        read_events(path)
    path.write_bytes(b'{"a":1}\n[1, 2]\n')  # valid JSON, but no record
    with pytest.raises(UserInputError, match="byte 8"):
        read_events(path)


def test_a_record_that_does_not_fit_on_the_disk_is_cut_back(tmp_path, monkeypatch):
    import errno
    import os

    path = tmp_path / "events.jsonl"
    log = EventWriter(path)
    log.emit("start", steps=1)
    real_pwrite = os.pwrite

    def half_then_full(fd, data, offset):  # a full disk after the first few bytes of the record
        if len(data) > 5:
            return real_pwrite(fd, bytes(data[:5]), offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", half_then_full)
    with pytest.raises(UserInputError, match="disk is full"):
        log.emit("step", step=1)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    log.emit("step", step=2)
    log.close()
    assert [r["event"] for r in read_events(path)] == ["start", "step"]
    assert read_events(path)[1]["step"] == 2


def test_writer_adds_no_blank_line_to_a_clean_file(tmp_path):
    path = tmp_path / "events.jsonl"
    with_events = EventWriter(path)
    with_events.emit("start", steps=2)
    with_events.close()
    again = EventWriter(path)
    again.emit("status", status="done", loss=float("nan"))
    again.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(lines)
    last = json.loads(lines[1])
    assert last["event"] == "status" and last["loss"] is None  # non-finite -> null


def test_tail_follows_a_live_file_without_reading_half_records(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":')
    records, offset = tail_records(path)
    assert records == [{"a": 1}] and offset == 8
    with open(path, "ab") as fh:
        fh.write(b'2}\n{"c":3}\n')
    records, offset = tail_records(path, offset)
    assert records == [{"b": 2}, {"c": 3}] and offset == path.stat().st_size


def test_none_path_writes_nothing(tmp_path):
    log = EventWriter(None)
    assert log.emit("step", step=1)["event"] == "step"
    log.close()
    assert list(tmp_path.iterdir()) == []
