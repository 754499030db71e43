"""Project folders, without Qt: `mcss-project.toml` naming the sources, and the cache folder.

A project is a folder holding `mcss-project.toml`, `cache/` and later `labels.sqlite` and
`runs/`. Source paths are stored relative to the project so the folder can be moved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from .atomic import atomic_open
from .errors import UserInputError
from .tomlio import read_toml

PROJECT_FILE = "mcss-project.toml"
PROJECT_FORMAT = "mcss-project"


@dataclass
class Project:
    root: Path
    sources: list[Path]
    checkpoint: Path | None = None
    settings: dict = field(default_factory=dict)

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"


def is_project(path: Path) -> bool:
    path = Path(path)
    return (path.is_file() and path.name == PROJECT_FILE) or (path / PROJECT_FILE).is_file()


def read_project(path: Path) -> Project:
    """Read a project folder (or its mcss-project.toml); bad files raise UserInputError."""
    path = Path(path)
    file = path if path.name == PROJECT_FILE else path / PROJECT_FILE
    doc = read_toml(file)
    if doc.get("format") != PROJECT_FORMAT:
        raise UserInputError(file, f"not an MCSS project (format must be {PROJECT_FORMAT!r})")
    raw = doc.get("sources")
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
        raise UserInputError(file, "'sources' must be a non-empty list of folder paths")
    root = file.parent
    sources = [(root / s).resolve() for s in raw]
    ckpt = doc.get("checkpoint")
    if ckpt is not None and not isinstance(ckpt, str):
        raise UserInputError(file, "'checkpoint' must be a path")
    return Project(
        root=root,
        sources=sources,
        checkpoint=None if ckpt is None else (root / ckpt).resolve(),
        settings=dict(doc.get("settings", {})),
    )


def create_project(root: Path, source: Path) -> Project:
    """Write a project for one source folder into root (atomically)."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        rel = os.path.relpath(Path(source).resolve(), root.resolve())
        doc = {"format": PROJECT_FORMAT, "version": 1, "sources": [Path(rel).as_posix()]}
    except OSError as exc:
        raise UserInputError(
            root, f"cannot create a project here ({exc.strerror or exc})"
        ) from None
    with atomic_open(root / PROJECT_FILE, "wb") as fh:
        tomli_w.dump(doc, fh)
    return read_project(root)
