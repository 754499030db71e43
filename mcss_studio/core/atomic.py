"""Transactional file writes: a temp file beside the target, renamed over it only on success.

Readers therefore see either the old file or the new one, never half of one, whatever happens
during the write (exception, Ctrl+C, crash).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from .errors import UserInputError


@contextmanager
def atomic_path(path: str | os.PathLike[str], fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path to write; it replaces `path` when the block ends without error.

    The temp file is created (empty, mode 0666 minus the umask) so that a target folder that
    cannot be written fails here with a UserInputError naming the target.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise UserInputError(target, f"cannot write ({exc.strerror or exc})") from None
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:  # disk full, permissions: the user's to fix, and the old file stays
        raise UserInputError(target, f"cannot write ({exc.strerror or exc})") from None
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
