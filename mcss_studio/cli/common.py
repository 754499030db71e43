"""What every command-line front end shares: one-line errors, exit codes, progress bars."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..core.errors import UserInputError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(body: Callable[[], int | None], prog: str) -> int:
    """Run a command body; user errors become `prog: error: message` on stderr and exit 2."""
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"{prog}: warning: {msg}\n"
    try:
        return int(body() or 0)
    except UserInputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


@contextmanager
def progress_bar(desc: str, unit: str = "frame") -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callback drawing a tqdm bar on stderr (silent when not a TTY)."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit=unit, disable=not sys.stderr.isatty())
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
