"""A folder that really refuses writes during a test, also for root (no tests here).

CI runs as root, and root ignores chmod, so a chmod alone would let a read-only test pass
without anything being refused. The mechanisms, best first:

- not root: chmod a-w on the folder and every folder below it;
- root with CAP_SYS_ADMIN: a read-only bind mount of the folder onto itself (EROFS, the kernel's
  own refusal);
- root without it: the OS calls Python writes go through (os.open, os.mkdir, open, os.access)
  refuse paths inside the folder with EROFS (MCSS_TEST_READ_ONLY=python forces this one).

Whichever is used, a write is tried before the test body runs and must fail.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _inside(path: object, folder: Path) -> bool:
    try:
        p = Path(os.fsdecode(path)).absolute()
    except TypeError:  # a file descriptor, not a path
        return False
    return p == folder or folder in p.parents


def _refuse_writes_in_python(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def erofs(path: object) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_mkdir, real_access, real_builtin_open = os.open, os.mkdir, os.access, open

    def os_open(path, flags, *args, **kwargs):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        if writing and _inside(path, folder):
            raise erofs(path)
        return real_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _inside(path, folder):
            raise erofs(path)
        return real_mkdir(path, *args, **kwargs)

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and _inside(path, folder):
            return False
        return real_access(path, mode, *args, **kwargs)

    def builtin_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and _inside(file, folder):
            raise erofs(file)
        return real_builtin_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(builtins, "open", builtin_open)
    monkeypatch.setattr(io, "open", builtin_open)


def mount(*args: str) -> bool:
    """`mount ARGS`; True when it worked (it needs root with mount rights)."""
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make `folder` refuse writes while the block runs; yields the mechanism's name."""
    folder = Path(folder).absolute()
    in_python = os.environ.get("MCSS_TEST_READ_ONLY") == "python"
    if not in_python and os.geteuid() != 0:
        dirs = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        for d in dirs:
            d.chmod(0o555)
        mechanism = "chmod"
        undo = lambda: [d.chmod(0o755) for d in dirs]  # noqa: E731
    elif not in_python and mount("--bind", str(folder), str(folder)):
        if not mount("-o", "remount,bind,ro", str(folder)):
            subprocess.run(["umount", str(folder)], check=True)
            pytest.fail(f"could not remount {folder} read-only")
        mechanism = "read-only bind mount"
        undo = lambda: subprocess.run(["umount", str(folder)], check=True)  # noqa: E731
    else:
        patches = pytest.MonkeyPatch()
        _refuse_writes_in_python(folder, patches)
        mechanism = "EROFS at the OS calls"
        undo = patches.undo
    try:
        with pytest.raises(OSError):  # never a test that passes because nothing was refused
            Path(folder / ".probe").write_bytes(b"x")
        yield mechanism
    finally:
        undo()
