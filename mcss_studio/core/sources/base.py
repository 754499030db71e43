"""What every source layout produces: a Dataset of named SequenceEntry items with subject splits.

Kept apart from the layout readers (folder, manifest, Human3.6M, MPI-INF-3DHP) so that each of
them can build a Dataset without importing the module that chooses between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserInputError
from ..sequence import MultiviewSequence


@dataclass
class SequenceEntry:
    """One sequence of a dataset; `open()` gives the MultiviewSequence."""

    name: str
    subject: str | None
    action: str | None
    opener: Callable[[], MultiviewSequence] = field(repr=False)

    def open(self) -> MultiviewSequence:
        seq = self.opener()
        seq.name = self.name
        seq.subject = seq.subject or self.subject
        seq.action = seq.action or self.action
        return seq


@dataclass
class Dataset:
    """Sequences of one source (kind: recording, manifest, h36m, mpi3dhp) and subject splits."""

    root: Path
    kind: str
    sequences: list[SequenceEntry]
    splits: dict[str, list[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sequences]

    @property
    def subjects(self) -> list[str]:
        seen: dict[str, None] = {}
        for s in self.sequences:
            if s.subject is not None:
                seen.setdefault(s.subject, None)
        return list(seen)

    def entry(self, name: str) -> SequenceEntry:
        for s in self.sequences:
            if s.name == name:
                return s
        raise UserInputError(self.root, f"no sequence named {name!r} (have: {_short(self.names)})")

    def open(self, name: str) -> MultiviewSequence:
        return self.entry(name).open()

    def for_subjects(self, subjects: list[str]) -> list[SequenceEntry]:
        wanted = set(subjects)
        return [s for s in self.sequences if s.subject in wanted]


def _short(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
