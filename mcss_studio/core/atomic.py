"""Transactional file writes, and the one translation of write failures into user errors.

`atomic_path` / `atomic_open`: a temp file beside the target, renamed over it only on success, so
readers see either the old file or the new one, never half of one, whatever happens during the
write (exception, Ctrl+C, crash). Temp files that a killed process left behind are removed by the
next write into the same folder (only those of processes no longer running). The result gets the
mode an ordinary new file gets (0666 minus the umask), whatever the writing library chose.

`write_error` / `writing` / `make_dirs`: a full disk (ENOSPC, EDQUOT, EFBIG), a read-only file
system (EROFS) or a permission problem (EACCES, EPERM) while writing becomes a one-line
UserInputError naming the path and what to free or change, never a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from .errors import UserInputError

_ADVICE = {
    errno.ENOSPC: "the disk is full; free space on it or choose a folder on another disk",
    errno.EDQUOT: "the disk quota is used up; free space or choose a folder on another disk",
    errno.EFBIG: "the file is too large for this file system or the file-size limit; "
    "choose a folder on another disk or raise the limit",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a writable folder or change its permissions",
    errno.EPERM: "permission denied; choose a writable folder or change its permissions",
}


def write_error(
    path: str | os.PathLike[str], exc: OSError, name_file: bool = True
) -> UserInputError:
    """The user-facing error for `exc`, raised while writing `path`; it names the file the
    error names (a folder that could not be made, say) unless name_file is False."""
    advice = _ADVICE.get(exc.errno or 0) or (exc.strerror or str(exc))
    where = (exc.filename if name_file else None) or path
    return UserInputError(where, f"cannot write: {advice}")


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """os.pwrite at offset until every byte is written (a short write is legal, if rare);
    a write that makes no progress is the full disk it almost surely is."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:  # no progress and no error: treat as the full disk it almost surely is
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[n:], offset + n


@contextmanager
def writing(path: str | os.PathLike[str], name_file: bool = True) -> Iterator[None]:
    """Turn an OSError raised in the block into write_error(path, ...); UserInputError passes."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc, name_file) from None


def make_dirs(path: str | os.PathLike[str]) -> Path:
    """mkdir -p, with an unwritable location reported as a UserInputError naming it."""
    with writing(path):
        Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def writable_folder(path: str | os.PathLike[str]) -> Path:
    """make_dirs, then prove a file can be created there; a UserInputError before long work
    whose result could not be saved."""
    folder = make_dirs(path)
    probe = folder / f".write-probe.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    with writing(folder, name_file=False):
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(probe)
    return folder


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs under another user
        return True
    return True


_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")  # what temp_path names
# a dead pid alone is not enough: on a shared network folder the pid may be another machine's
# running writer; only a temp file untouched this long is an orphan
STALE_TEMP_SECONDS = 3600.0


def temp_path(target: Path) -> Path:
    """A private temp name beside target (this process and a random tag), which the stale-temp
    cleanup recognises."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_temps(folder: Path) -> int:
    """Delete temp_path files in `folder` whose writing process is gone; the count.

    Only temp files of processes no longer running on this machine and untouched for
    STALE_TEMP_SECONDS are removed, so a concurrent writer's file stays (also another machine's
    on a shared folder). Unremovable ones (a read-only folder) are left.
    """
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    now = time.time()
    for name in names:
        match = _TEMP_NAME.match(name)
        if match is None or int(match[1]) == os.getpid() or _pid_running(int(match[1])):
            continue
        try:
            if now - os.stat(folder / name).st_mtime < STALE_TEMP_SECONDS:
                continue
            os.unlink(folder / name)
            removed += 1
        except OSError:
            pass
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike[str], fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path to write; it replaces `path` when the block ends without error.

    The temp file is created (empty, mode 0666 minus the umask) so that a target folder that
    cannot be written fails here with a UserInputError naming the target; the finished file gets
    the mode of the file it replaces (a user's chmod stays), else that ordinary mode, even if the
    writer recreated the temp file privately (e.g. 0600).
    """
    target = Path(path)
    remove_stale_temps(target.parent)
    tmp = temp_path(target)
    with writing(target, name_file=False):  # the user knows the target, not our temp name
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        mode = os.stat(tmp).st_mode & 0o777
        if target.is_file():
            mode = target.stat().st_mode & 0o777
    try:
        yield tmp
        with writing(target, name_file=False):  # disk full, permissions: the old file stays
            if fsync:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            if os.stat(tmp).st_mode & 0o777 != mode:
                os.chmod(tmp, mode)
            os.replace(tmp, target)
    except OSError as exc:  # raised by the caller's block while it wrote the temp file
        raise write_error(target, exc, name_file=False) from None
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", fsync: bool = False, **kwargs: Any
) -> Iterator[IO[Any]]:
    """`open()` for writing whose result appears at `path` only if the block succeeds."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


_Writer = TypeVar("_Writer", bound="CommitOnExit")


class CommitOnExit:
    """Base of writers used as `with Writer(...) as w:`: the block ending normally commits
    (close), an exception discards what was half written (abort)."""

    def close(self) -> object:  # what a subclass returns (e.g. ProxyWriter's bool) is its own
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Writer) -> _Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
