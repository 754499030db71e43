"""Transactional writes: the old file survives any failure, and no temp file is left."""

from __future__ import annotations

import errno
import os
import stat
import time

import pytest

from mcss_studio.core.atomic import (
    _TEMP_NAME,
    STALE_TEMP_SECONDS,
    atomic_open,
    atomic_path,
    writing,
)
from mcss_studio.core.checkpoint import save_checkpoint
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.model import MCSSModel, ModelConfig


def test_success_replaces_and_failure_keeps_old(tmp_path):
    target = tmp_path / "labels.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    with atomic_open(target, fsync=True) as fh:
        fh.write("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]


def test_unwritable_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="missing.*cannot write"):
        with atomic_open(tmp_path / "missing" / "x.json") as fh:
            fh.write("x")


def _dead_pid() -> int:
    """The pid of a child that has exited and been reaped (so no process has it now)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_temp_files_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    """A SIGKILLed save leaves `.<name>.<pid>.<hex>.tmp`; the next save in that folder removes
    it, but never the temp file of a writer that still runs, nor other files."""
    dead_pid = _dead_pid()
    dead = tmp_path / f".step_0000100.safetensors.{dead_pid}.0123abcd.tmp"
    alive = tmp_path / f".step_0000200.safetensors.{os.getppid()}.89abcdef.tmp"
    recent = tmp_path / f".step_0000300.safetensors.{dead_pid}.456789ab.tmp"  # another host's?
    other = tmp_path / ".notes.1.tmp"
    old = time.time() - STALE_TEMP_SECONDS - 60
    for p in (dead, alive, recent, other):
        p.write_bytes(b"")
        if p is not recent:
            os.utime(p, (old, old))
    with atomic_open(tmp_path / "last.safetensors", "wb") as fh:
        fh.write(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, recent.name, other.name, "last.safetensors"])


def test_a_video_export_leaves_a_temp_name_the_cleanup_knows(tmp_path):
    import numpy as np

    from mcss_studio.core.video_writer import VideoWriter

    writer = VideoWriter(tmp_path / "cam0.mp4", fps=25, width=32, height=32)
    for _ in range(60):  # enough for the encoder to emit packets, so the file exists
        writer.write(np.zeros((32, 32, 3), np.uint8))
    temps = [p.name for p in tmp_path.iterdir()]
    assert len(temps) == 1 and _TEMP_NAME.match(temps[0])  # a kill now leaves this behind
    writer.abort()


def test_replacing_a_file_keeps_the_mode_its_user_gave_it(tmp_path):
    target = tmp_path / "mcss-project.toml"
    target.write_text("old")
    target.chmod(0o600)
    with atomic_open(target) as fh:
        fh.write("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_finished_files_get_the_ordinary_mode_even_if_the_writer_made_them_private(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:
            tmp.unlink()
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))  # like safetensors' writer
        save_checkpoint(tmp_path / "m.safetensors", MCSSModel(ModelConfig(
            width=8, embedding_dim=16, pose_hidden=32, orientation_hidden=16)))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == 0o644


@pytest.mark.parametrize("errno_, advice", [
    (errno.ENOSPC, "the disk is full; free space"),
    (errno.EDQUOT, "quota"),
    (errno.EROFS, "read-only; choose a writable folder"),
    (errno.EACCES, "permission denied"),
])
def test_write_errors_name_the_path_and_what_to_do(tmp_path, errno_, advice):
    with pytest.raises(UserInputError) as err:
        with writing(tmp_path / "out.npz"):
            raise OSError(errno_, os.strerror(errno_))
    assert str(err.value).startswith(f"{tmp_path / 'out.npz'}: cannot write: ")
    assert advice in str(err.value) and "\n" not in str(err.value)


def test_write_all_finishes_short_writes_and_calls_no_progress_a_full_disk(tmp_path,
                                                                          monkeypatch):
    from mcss_studio.core.atomic import write_all

    real_pwrite = os.pwrite
    fd = os.open(tmp_path / "f.bin", os.O_RDWR | os.O_CREAT)
    try:
        monkeypatch.setattr(os, "pwrite", lambda f, d, o: real_pwrite(f, bytes(d[:3]), o))
        write_all(fd, b"0123456789", 2)  # 3 bytes a call: still every byte, in place
        assert os.pread(fd, 12, 0) == b"\0\0" + b"0123456789"
        monkeypatch.setattr(os, "pwrite", lambda f, d, o: 0)
        with pytest.raises(OSError) as err:
            write_all(fd, b"x", 0)
        assert err.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
