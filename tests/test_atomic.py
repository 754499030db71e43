"""Transactional writes: the old file survives any failure, and no temp file is left."""

from __future__ import annotations

import pytest

from mcss_studio.core.atomic import atomic_open
from mcss_studio.core.errors import UserInputError


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
