"""Datasets: a list of sequences with subjects, actions and splits, whatever the source layout."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserInputError
from ..sequence import MultiviewSequence
from ..tomlio import read_toml
from .folder import is_recording_folder, open_recording

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mcss-multiview-dataset"


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


def _read_manifest(root: Path) -> Dataset:
    path = root / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise UserInputError(path, f"cannot read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(path, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise UserInputError(path, f"not a {MANIFEST_FORMAT} manifest (missing 'format')")
    entries = doc.get("sequences")
    if not isinstance(entries, list) or not entries:
        raise UserInputError(path, "lists no sequences")
    sequences = []
    for i, item in enumerate(entries):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise UserInputError(path, f"sequence {i} has no 'path'")
        folder = (root / item["path"]).resolve()
        if root.resolve() not in folder.parents and folder != root.resolve():
            raise UserInputError(path, f"sequence path {item['path']!r} leaves the dataset folder")
        sequences.append(
            SequenceEntry(
                name=str(item.get("name", item["path"])),
                subject=item.get("subject"),
                action=item.get("action"),
                opener=lambda folder=folder: open_recording(folder),
            )
        )
    splits = doc.get("splits", {})
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise UserInputError(path, "'splits' must map split names to lists of subjects")
    return Dataset(root=root, kind="manifest", sequences=sequences, splits=splits)


def open_dataset(path: str | Path) -> Dataset:
    """Any supported layout as a Dataset: manifest folder, Human3.6M, MPI-INF-3DHP, recording."""
    root = Path(path)
    if not root.exists():
        raise UserInputError(root, "does not exist")
    if not root.is_dir():
        raise UserInputError(root, "is not a folder")
    if (root / MANIFEST).is_file():
        return _read_manifest(root)
    from . import h36m, mpi3dhp

    if h36m.is_h36m_root(root):
        return h36m.dataset(root)
    if mpi3dhp.is_mpi3dhp_root(root):
        return mpi3dhp.dataset(root)
    if is_recording_folder(root):
        meta = read_toml(root / "sequence.toml") if (root / "sequence.toml").is_file() else {}
        entry = SequenceEntry(
            name=str(meta.get("name", root.name)),
            subject=meta.get("subject"),
            action=meta.get("action"),
            opener=lambda: open_recording(root),
        )
        return Dataset(root=root, kind="recording", sequences=[entry])
    raise UserInputError(
        root,
        "is not a recording (no camera videos or image folders), a dataset (no manifest.json), "
        "Human3.6M or MPI-INF-3DHP folder",
    )


def open_sequence(path: str | Path, name: str | None = None) -> MultiviewSequence:
    """The recording at `path`, or sequence `name` (default: the first) of a dataset."""
    ds = open_dataset(path)
    if name is None:
        return ds.sequences[0].open()
    return ds.open(name)
