"""The label store: round trips, revisions, one writer, refusals that leave files alone, kills."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mcss_studio.core import labels as store_module
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.labels import (
    LABELS_FILE,
    OCCLUDED,
    SOURCES,
    VISIBLE,
    FrameLabel,
    LabelStore,
    backup_path,
)

ROOT = Path(__file__).resolve().parents[1]


def sample_label(frame: int = 3, value: float = 10.0) -> FrameLabel:
    lab = FrameLabel.empty("walk", frame, ["cam0", "cam1", "cam2"], subject="S1")
    lab.points2d[0, 5] = [value, value + 1]
    lab.visibility[0, 5] = VISIBLE
    lab.source2d[0, 5] = SOURCES.index("clicked")
    lab.visibility[2, 5] = OCCLUDED
    lab.joints3d[5] = [1.5, -2.25, value * 100]
    lab.source3d[5] = SOURCES.index("triangulated")
    lab.error2d[0, 5] = 0.75
    return lab


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_keeps_every_field_and_revision_grows(tmp_path):
    with LabelStore.open(tmp_path, author="ann") as store:
        assert store.revision == 0 and len(store) == 0
        first = store.put(sample_label())
        assert first.revision == 1 and first.author == "ann" and first.modified > 0
        store.put(sample_label(frame=4))
        assert store.revision == 2
        store.delete("walk", 4)
        assert store.revision == 3 and store.keys() == [("walk", 3)]
    with LabelStore.open(tmp_path / LABELS_FILE) as again:
        got = again.get("walk", 3)
        assert got.same_content(sample_label())
        assert got.visibility[2, 5] == OCCLUDED and got.error2d[0, 5] == 0.75
        assert (got.author, got.revision) == ("ann", 1)
        assert again.get("walk", 4) is None
        assert again.info()["frames"] == 1 and again.info()["revision"] == 3


def test_an_empty_label_deletes_the_frame(tmp_path):
    with LabelStore.open(tmp_path) as store:
        store.put(sample_label())
        store.put(FrameLabel.empty("walk", 3, ["cam0"]))
        assert len(store) == 0


def test_bad_shapes_are_refused_with_the_frame_named(tmp_path):
    lab = sample_label()
    lab.points2d = lab.points2d[:2]
    with LabelStore.open(tmp_path) as store:
        with pytest.raises(UserInputError, match="frame 3.*points2d"):
            store.put(lab)


def test_a_second_writer_gets_the_store_read_only_and_is_told_why(tmp_path):
    first = LabelStore.open(tmp_path)
    first.put(sample_label())
    second = LabelStore.open(tmp_path)
    assert second.read_only and f"pid {os.getpid()}" in second.read_only_reason
    assert second.get("walk", 3).same_content(sample_label())  # it still reads
    with pytest.raises(UserInputError, match="read-only.*open for writing"):
        second.put(sample_label(frame=9))
    first.put(sample_label(frame=7))
    assert second.keys() == [("walk", 3), ("walk", 7)]  # sees the writer's commits
    first.close()
    second.close()
    third = LabelStore.open(tmp_path)  # the lock went with the first writer
    assert not third.read_only
    third.close()


def test_opened_read_only_on_request(tmp_path):
    LabelStore.open(tmp_path).close()
    with LabelStore.open(tmp_path, read_only=True) as store:
        assert store.read_only_reason == "opened read-only"
        with pytest.raises(UserInputError, match="read-only"):
            store.delete("walk", 3)


def _refused_untouched(path: Path, match: str) -> None:
    before = digest(path)

    def names() -> list[str]:  # SQLite's own -wal/-shm of a WAL file may appear, empty
        journal = ("-shm", "-wal")
        return sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(journal))

    before_names = names()
    with pytest.raises(UserInputError, match=match) as info:
        LabelStore.open(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert digest(path) == before
    assert names() == before_names  # no lock file, no backup
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    path = tmp_path / LABELS_FILE
    path.write_bytes(b"label,x,y\n" * 50)
    _refused_untouched(path, "not an SQLite database")


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / LABELS_FILE
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE points (x REAL)")
    conn.commit()
    conn.close()
    _refused_untouched(path, "another program")


def test_a_newer_schema_is_refused_and_left_alone(tmp_path):
    LabelStore.open(tmp_path).close()
    path = tmp_path / LABELS_FILE
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {store_module.SCHEMA_VERSION + 1}")
    conn.close()
    (tmp_path / (LABELS_FILE + ".lock")).unlink()
    _refused_untouched(path, "newer MCSS Studio")


def test_a_damaged_store_is_refused_and_left_alone(tmp_path):
    with LabelStore.open(tmp_path) as store:
        store.put_many([sample_label(frame=f) for f in range(300)])
    path = tmp_path / LABELS_FILE
    (tmp_path / (LABELS_FILE + ".lock")).unlink()
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    data[3 * 4096:5 * 4096] = os.urandom(2 * 4096)  # pages of the table, not the header
    path.write_bytes(bytes(data))
    _refused_untouched(path, "damaged label store")


def test_an_older_schema_is_backed_up_then_migrated(tmp_path, monkeypatch):
    with LabelStore.open(tmp_path) as store:
        store.put(sample_label())
    path = tmp_path / LABELS_FILE
    old = digest(path)

    def add_notes(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE meta ADD COLUMN note TEXT")

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store_module, "MIGRATIONS", {1: add_notes})
    with LabelStore.open(tmp_path) as store:
        assert store.get("walk", 3).same_content(sample_label())
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [r[1] for r in store.conn.execute("PRAGMA table_info(meta)")]
        assert "note" in columns
    backup = backup_path(path, 1)
    conn = sqlite3.connect(backup)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 1
    conn.close()
    assert old  # the backup is a copy of the content, not of the bytes (WAL folded in)


def test_a_failing_migration_keeps_the_old_schema(tmp_path, monkeypatch):
    LabelStore.open(tmp_path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = 'x' WHERE key = 'revision'")
        conn.execute("ALTER TABLE no_such_table ADD COLUMN y")

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store_module, "MIGRATIONS", {1: broken})
    with pytest.raises(UserInputError, match="upgrade failed"):
        LabelStore.open(tmp_path)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    with LabelStore.open(tmp_path) as store:
        assert store.revision == 0  # the half-done upgrade was rolled back


CHILD = textwrap.dedent("""
    import sys
    from mcss_studio.core.labels import FrameLabel, LabelStore
    store = LabelStore.open(sys.argv[1])
    start = store.revision
    for i in range(start, start + 100000):
        lab = FrameLabel.empty("walk", i % 400, ["a", "b", "c", "d"], "S1")
        lab.points2d[:, :, 0] = i
        lab.points2d[:, :, 1] = -i
        lab.visibility[:] = 1
        lab.joints3d[:] = i
        store.put(lab)
        print(i, flush=True)
""")


def test_sigkill_at_random_moments_loses_no_committed_label(tmp_path):
    """Each trial kills a labelling process after a random number of reported edits (and a
    random pause): every edit it reported committed is in the reopened store, exactly."""
    rng = np.random.default_rng(7)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    expected: dict[int, int] = {}  # frame -> last committed value
    for _trial in range(20):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], env=env,
                                 stdout=subprocess.PIPE, text=True)
        wanted = int(rng.integers(1, 40))
        done = []
        for line in child.stdout:
            done.append(int(line))
            if len(done) >= wanted:
                break
        time.sleep(float(rng.uniform(0, 0.01)))  # somewhere inside the next edit
        child.send_signal(signal.SIGKILL)
        child.wait()
        for i in done:
            expected[i % 400] = i
        with LabelStore.open(tmp_path, read_only=True) as store:
            for frame, value in expected.items():
                lab = store.get("walk", frame)
                assert lab is not None, f"committed edit {value} lost"
                got = lab.points2d[0, 0, 0]
                assert got >= value  # the edit in flight may have landed too, whole
                assert np.all(lab.points2d[..., 0] == got) and np.all(lab.points2d[..., 1] == -got)
                assert np.all(lab.joints3d == got)
            assert store.revision >= max(done) + 1
        # the next trial continues after whatever landed
        with LabelStore.open(tmp_path, read_only=True) as store:
            for frame in list(expected):
                expected[frame] = int(store.get("walk", frame).points2d[0, 0, 0])
