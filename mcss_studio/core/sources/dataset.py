"""Datasets: a list of sequences with subjects, actions and splits, whatever the source layout."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserInputError
from ..sequence import MultiviewSequence
from ..tomlio import read_toml
from . import h36m, mpi3dhp
from .base import Dataset, SequenceEntry
from .folder import is_recording_folder, open_recording, recording_subfolders

__all__ = ["Dataset", "SequenceEntry", "open_dataset", "open_sequence"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mcss-multiview-dataset"


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
    """Any supported layout as a Dataset: manifest folder, Human3.6M, MPI-INF-3DHP, recording,
    or a folder of recordings (a Pose2Sim batch session: Trial_1/videos, Trial_2/videos, ...)."""
    root = Path(path)
    if not root.exists():
        raise UserInputError(root, "does not exist")
    if not root.is_dir():
        raise UserInputError(root, "is not a folder")
    if (root / MANIFEST).is_file():
        return _read_manifest(root)
    if h36m.is_h36m_root(root):
        return h36m.dataset(root)
    if mpi3dhp.is_mpi3dhp_root(root):
        return mpi3dhp.dataset(root)
    if is_recording_folder(root):
        return Dataset(root=root, kind="recording", sequences=[_recording_entry(root)])
    trials = recording_subfolders(root)
    if trials:  # a Pose2Sim batch session: one recording per trial folder
        return Dataset(root=root, kind="recordings",
                       sequences=[_recording_entry(t, t.name) for t in trials])
    raise UserInputError(
        root,
        "is not a recording (no camera videos or image folders), a dataset (no manifest.json), "
        "Human3.6M or MPI-INF-3DHP folder",
    )


def _recording_entry(folder: Path, default_name: str | None = None) -> SequenceEntry:
    """One recording folder as a dataset entry, named by its sequence.toml or folder name."""
    toml = folder / "sequence.toml"
    meta = read_toml(toml) if toml.is_file() else {}
    return SequenceEntry(
        name=str(meta.get("name", default_name or folder.name)),
        subject=meta.get("subject"),
        action=meta.get("action"),
        opener=lambda: open_recording(folder),
    )


def open_sequence(path: str | Path, name: str | None = None) -> MultiviewSequence:
    """The recording at `path`, or sequence `name` (default: the first) of a dataset."""
    ds = open_dataset(path)
    if name is None:
        return ds.sequences[0].open()
    return ds.open(name)
