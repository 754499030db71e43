"""Fault injection for tests/test_faults.py: forked children that are killed, limited or
unprivileged, tiny file systems, file mutations, and the table of cases tried and held.

Children are forked from the test process (no interpreter start-up, so hundreds of cases stay
cheap) and report through their exit status and a stderr file:

- exit 0: the write finished; exit 2: it raised a UserInputError (its one-line message on
  stderr); exit 3: anything else (a traceback on stderr, a bug); killed by a signal: -signum.
- `kill_at=k` SIGKILLs the child at its k-th write-like call (open, write, flush, fsync,
  replace, unlink, ...), counted by a profile hook, so kill points are exact and repeatable.
- `fsize=n` sets RLIMIT_FSIZE: writes past n bytes fail with EFBIG (Python ignores SIGXFSZ).
- `uid=n` drops root to that user before writing, so permission checks are real even in CI,
  which runs as root (root ignores chmod).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mcss_studio.core.errors import UserInputError
from tests.readonly import mount

NOBODY = 65534
WRITE_CALLS = frozenset({
    "open", "write", "pwrite", "writelines", "flush", "fsync", "replace", "rename", "unlink",
    "truncate", "ftruncate", "posix_fallocate", "close", "mkdir", "chmod",
})

# (group, case) -> [tried, held]; printed by tests/conftest.py after the run
TABLE: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])


def record(group: str, case: str, held: bool) -> None:
    entry = TABLE[(group, case)]
    entry[0] += 1
    entry[1] += int(held)


def format_table() -> str:
    """Markdown: one row per writer or file format, one column per fault, cells held/tried."""
    faults = sorted({group for group, _ in TABLE})
    cases = sorted({case for _, case in TABLE})
    width = max(len(c) for c in [*cases, "writer / file format"])
    rows = ["| " + " | ".join([f"{'writer / file format':<{width}}", *faults]) + " |",
            "|" + "|".join(["-" * (width + 2), *("-" * (len(f) + 2) for f in faults)]) + "|"]
    for case in cases:
        cells = [f"{TABLE[(f, case)][1]}/{TABLE[(f, case)][0]}" if (f, case) in TABLE else "-"
                 for f in faults]
        rows.append("| " + " | ".join([f"{case:<{width}}",
                                       *(f"{c:>{len(f)}}" for c, f in zip(cells, faults))]) + " |")
    tried = sum(t for t, _ in TABLE.values())
    held = sum(h for _, h in TABLE.values())
    rows.append(f"\n{held} of {tried} cases held (cells: held/tried).")
    return "\n".join(rows)


class Outcome:
    """How a forked child ended: status (0, 2, 3 or -signal), its stderr, its write count."""

    def __init__(self, status: int, stderr: str, calls: int) -> None:
        self.status, self.stderr, self.calls = status, stderr, calls

    @property
    def one_line_error(self) -> bool:
        return self.status == 2 and len(self.stderr.strip().splitlines()) == 1

    def __repr__(self) -> str:
        return f"Outcome(status={self.status}, calls={self.calls}, stderr={self.stderr!r})"


def run_child(
    body: Callable[[], object], kill_at: int | None = None, fsize: int | None = None,
    uid: int | None = None,
) -> Outcome:
    """Run body() in a forked child under the given fault; see the module docstring."""
    with tempfile.TemporaryDirectory() as tmp:
        count_path = Path(tmp) / "calls"
        sys.stdout.flush()
        sys.stderr.flush()
        read_end, write_end = os.pipe()  # a pipe: the file-size limit does not apply to it
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 3
            try:
                os.close(read_end)
                os.dup2(write_end, 2)
                # pytest's capture may have pointed sys.stderr elsewhere than fd 2
                sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
                calls = _install_counter(kill_at)
                hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                if fsize is not None:  # the soft limit only, so it can be lifted again
                    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, hard))
                if uid is not None:
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                message = ""
                try:
                    result = body()
                    code = int(result) if isinstance(result, int) else 0
                except UserInputError as exc:
                    message, code = f"error: {exc}\n", 2
                except BaseException:  # noqa: BLE001 - the bug we are looking for
                    message, code = traceback.format_exc(), 3
                sys.setprofile(None)
                if fsize is not None:  # lift the limit so the call count can be written
                    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
                sys.stdout.flush()
                sys.stderr.flush()  # what the CLI printed; os._exit would drop it
                os.write(2, message.encode())
                if uid is None:
                    count_path.write_text(str(calls[0]))
            finally:
                os._exit(code)
        os.close(write_end)
        with open(read_end, "rb") as pipe:  # read to the end first: a full pipe would block
            stderr = pipe.read().decode(errors="replace")
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        calls = int(count_path.read_text()) if count_path.exists() else -1
        return Outcome(code, stderr, calls)


def _install_counter(kill_at: int | None) -> list[int]:
    calls = [0]

    def hook(frame, event, arg):  # noqa: ANN001 - sys.setprofile's signature
        if event == "c_call" and getattr(arg, "__name__", "") in WRITE_CALLS:
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(hook)
    return calls


KILL_TAIL = 16  # every one of a writer's last calls: where it makes its files final


def kill_points(total: int, n: int, seed: int, tail: int = KILL_TAIL) -> list[int]:
    """Kill points in 1..total: the first call, every one of the last `tail` calls (the
    finalising renames and metadata, where an ordering mistake hides in one or two calls) and
    n - 2 seeded random ones."""
    rng = np.random.default_rng(seed)
    inner = rng.choice(np.arange(2, total), size=min(max(0, n - 2), max(0, total - 2)),
                       replace=False) if total > 2 else []
    return sorted({1, *range(max(1, total - tail + 1), total + 1), *(int(k) for k in inner)})


# -- file systems ----------------------------------------------------------------------------
@contextlib.contextmanager
def tiny_fs(folder: Path, size_kb: int) -> Iterator[Path | None]:
    """A tmpfs of size_kb at folder (None where mounting is impossible: not root)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                                       str(folder)):
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def grow_fs(folder: Path, size_kb: int) -> None:
    """Free space: remount the tmpfs larger, keeping its files."""
    assert mount("-o", f"remount,size={size_kb}k", str(folder))


@contextlib.contextmanager
def read_only_view(source: Path, folder: Path) -> Iterator[Path | None]:
    """A read-only bind mount of source at folder (None where mounting is impossible)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not mount("--bind", str(source), str(folder)):
        yield None
        return
    try:
        if not mount("-o", "remount,ro,bind", str(folder)):
            yield None
            return
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def world_readable_dir() -> Path:
    """A fresh folder every user can read but only its owner (root) can write: pytest's own
    temp folders are private, so an unprivileged child could not even reach them."""
    folder = Path(tempfile.mkdtemp(prefix="mcss-faults-"))
    os.chmod(folder, 0o755)
    return folder


# -- mutations -------------------------------------------------------------------------------
def mutations(data: bytes, n: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """n truncations and n single-bit flips of data, seeded; ("truncated"|"bit flip", bytes)."""
    rng = np.random.default_rng(seed)
    for cut in sorted(set(rng.integers(0, len(data), size=n).tolist()) | {0}):
        yield "truncated", data[:cut]
    for pos in rng.integers(0, len(data), size=n):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        yield "bit flip", bytes(flipped)
