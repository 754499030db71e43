"""Fault injection: full disks, file-size limits, unwritable folders, kills mid-write and
corrupted files, against every writer and every file format the project reads.

Each case asserts what the brief promises: the write finishes or fails with a one-line
UserInputError (never a traceback, never a signal such as SIGBUS); afterwards the next open
sees the old committed data or the new data, never a mix, or refuses in one line; resumable
writers (the crop cache and its proxies) then finish byte-identical to an uninterrupted build.
The harness is tests/faultlib.py; the table of cases tried and held is printed after the run
(tests/conftest.py) and copied into README.md's Reliability section.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mcss_studio.cli import data as data_cli
from mcss_studio.core import open_sequence
from mcss_studio.core.boxes import load_boxes_file, save_boxes_npz
from mcss_studio.core.cache import CropCache, build_cache, crops_dir
from mcss_studio.core.calibration import load_calibration, save_calibration_toml
from mcss_studio.core.checkpoint import load_checkpoint, load_training_state, save_checkpoint
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.model import MCSSModel, ModelConfig
from mcss_studio.core.project import create_project, read_project
from mcss_studio.core.proxies import ProxyMissingError, ProxyStore, build_proxies, proxy_dir
from mcss_studio.core.runlog import EventWriter, read_events
from mcss_studio.core.sources.folder import load_joints3d
from mcss_studio.core.video import VideoReader
from mcss_studio.core.video_index import (
    forget_video_indexes,
    remember_video_indexes,
    save_video_indexes,
)
from tests.conftest import ring_cameras, standing_pose, write_mp4v
from tests.faultlib import (
    NOBODY,
    kill_points,
    mutations,
    read_only_view,
    record,
    run_child,
    tiny_fs,
    world_readable_dir,
)
from trainer import cli as train_cli

torch.set_num_threads(1)
NAMES = ["cam0", "cam1"]
CACHE_ARGS = {"crop_size": 16, "proxy_max_side": 32, "workers": 1}
UNWRITABLE = {"other user": "EACCES (nobody)", "read-only mount": "EROFS"}


# -- shared inputs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world():
    """A world-readable folder (an unprivileged child must read it) holding a recording."""
    root = world_readable_dir()
    rec = root / "rec"
    rec.mkdir()
    for c in range(2):
        write_mp4v(rec / f"cam{c}.mp4", 8, 64, 48, camera=c)
    doc = {"cameras": {f"cam{c}": {**cal.to_dict(), "size": [64, 48]}
                       for c, cal in enumerate(ring_cameras(2))}}
    (rec / "calibration.json").write_text(json.dumps(doc))
    np.savez(rec / "joints3d.npz", joints3d=standing_pose(8))
    os.chmod(rec, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(world):
    """An uninterrupted cache build: {relative path: bytes} of its crops, boxes and proxies."""
    with open_sequence(world / "rec") as seq:
        build_cache(seq, world / "ref", **CACHE_ARGS)
    return _cache_files(world / "ref", world / "rec")


def _cache_files(cache: Path, rec: Path) -> dict[str, bytes]:
    with open_sequence(rec) as seq:
        crops, proxies = crops_dir(cache, seq), proxy_dir(cache, seq)
    files = {f"crops/{c}.{ext}": crops / f"{c}.{ext}" for c in range(2) for ext in ("u8", "done")}
    files["crops/boxes.npy"] = crops / "boxes.npy"
    files.update({f"proxies/{c}.{ext}": proxies / f"{c}.{ext}"
                  for c in range(2) for ext in ("blob", "idx")})
    return {k: p.read_bytes() for k, p in files.items() if p.is_file()}


def _model(seed: int) -> MCSSModel:
    torch.manual_seed(seed)
    return MCSSModel(ModelConfig(width=8, embedding_dim=16, pose_hidden=32,
                                 orientation_hidden=16))


# -- the writers: committed old state, the write under test, and what the next open may see ---
@dataclass
class Writer:
    name: str
    setup: Callable[[Path, Path], None]  # (folder, recording): the old, committed state
    write: Callable[[Path, Path], object]  # the write under test (in a child)
    check: Callable[[Path, Path, dict], str | None]  # None when the next open is acceptable
    # the read-only part of check (check itself may resume the write): what a full disk is
    # inspected with before space is freed; None when check writes nothing
    inspect: Callable[[Path, Path, dict], str | None] | None = None


def _cache_write(d: Path, rec: Path) -> None:
    with open_sequence(rec) as seq:
        build_cache(seq, d / "cache", **CACHE_ARGS)


def _cache_inspect(d: Path, rec: Path, ref: dict) -> str | None:
    """Whatever claims to be complete after the fault holds the reference bytes (reads only)."""
    with open_sequence(rec) as seq:
        try:
            cache = CropCache.open(d / "cache", seq)
        except UserInputError as exc:
            if "\n" in str(exc):
                return f"multi-line error {exc!r}"
        else:  # it claims to be complete: every crop must be the reference's
            for c in range(2):
                if np.asarray(cache.crops(c)).tobytes() != ref[f"crops/{c}.u8"]:
                    return f"complete cache with wrong crops of camera {c}"
        return _complete_proxies_differ(d / "cache", seq, ref)


def _complete_proxies_differ(folder: Path, seq, ref: dict) -> str | None:
    """Which camera's proxies claim to be complete with other bytes than the reference's."""
    store = ProxyStore(folder, seq)
    for c in range(2):
        if store.complete(c) and (proxy_dir(folder, seq) / f"{c}.blob").read_bytes() != ref[
                f"proxies/{c}.blob"]:
            return f"complete proxies of camera {c} differ"
    return None


def _cache_check(d: Path, rec: Path, ref: dict) -> str | None:
    problem = _cache_inspect(d, rec, ref)
    if problem:
        return problem
    with open_sequence(rec) as seq:
        build_cache(seq, d / "cache", **CACHE_ARGS)  # resume after the fault
    if _cache_files(d / "cache", rec) != ref:
        return "resumed cache is not byte-identical to an uninterrupted build"
    return None


def _proxies_write(d: Path, rec: Path) -> None:
    with open_sequence(rec) as seq:
        build_proxies(seq, d / "px", max_side=CACHE_ARGS["proxy_max_side"])


def _proxies_inspect(d: Path, rec: Path, ref: dict) -> str | None:
    """Complete proxies after the fault hold the reference bytes (reads only)."""
    with open_sequence(rec) as seq:
        return _complete_proxies_differ(d / "px", seq, ref)


def _proxies_check(d: Path, rec: Path, ref: dict) -> str | None:
    problem = _proxies_inspect(d, rec, ref)
    if problem:
        return problem
    with open_sequence(rec) as seq:
        folder = proxy_dir(d / "px", seq)
        if not build_proxies(seq, d / "px", max_side=CACHE_ARGS["proxy_max_side"]):
            return "resumed proxies incomplete"
    for c in range(2):
        for ext in ("blob", "idx"):
            if (folder / f"{c}.{ext}").read_bytes() != ref[f"proxies/{c}.{ext}"]:
                return f"resumed proxies {c}.{ext} differ from an uninterrupted build"
    return None


def _ckpt_setup(d: Path, rec: Path) -> None:
    save_checkpoint(d / "model.safetensors", _model(0), {"tag": "old"}, {"step": 1})


def _ckpt_write(d: Path, rec: Path) -> None:
    save_checkpoint(d / "model.safetensors", _model(1), {"tag": "new"}, {"step": 2})


def _ckpt_check(d: Path, rec: Path, ref: dict) -> str | None:
    model, meta = load_checkpoint(d / "model.safetensors")
    expected = _model(0 if meta["tag"] == "old" else 1)
    if load_training_state(d / "model.safetensors")["step"] != (1 if meta["tag"] == "old" else 2):
        return "training state of one checkpoint, metadata of the other"
    for (name, a), b in zip(model.state_dict().items(), expected.state_dict().values()):
        if not torch.equal(a, b):
            return f"{meta['tag']} checkpoint with other weights ({name})"
    return None


def _events_setup(d: Path, rec: Path) -> None:
    ev = EventWriter(d / "events.jsonl")
    for i in range(3):
        ev.emit("old", i=i)
    ev.close()


def _events_write(d: Path, rec: Path) -> None:
    ev = EventWriter(d / "events.jsonl")
    for i in range(100):  # more than the 4 KiB page the old records already hold
        ev.emit("new", i=i, loss=0.5 * i, note="x" * 60)
    ev.close()


def _events_check(d: Path, rec: Path, ref: dict) -> str | None:
    records = read_events(d / "events.jsonl")
    kinds = [(r["event"], r["i"]) for r in records]
    if kinds[:3] != [("old", 0), ("old", 1), ("old", 2)]:
        return f"committed events lost: {kinds[:3]}"
    # each run appends new 0, 1, 2, ... in order (a rerun after a failure starts again at 0)
    previous = -1
    for kind, i in kinds[3:]:
        if kind != "new" or i not in (0, previous + 1):
            return f"new events out of order or mixed: {kinds[3:]}"
        previous = i
    return None


def _project_setup(d: Path, rec: Path) -> None:
    (d / "a").mkdir(exist_ok=True)
    (d / "b").mkdir(exist_ok=True)
    create_project(d / "p", d / "a")


def _project_check(d: Path, rec: Path, ref: dict) -> str | None:
    sources = read_project(d / "p").sources
    return None if sources in ([(d / "a").resolve()], [(d / "b").resolve()]) else str(sources)


def _boxes(k: float) -> np.ndarray:
    return np.tile([1.0 + k, 2.0, 30.0, 40.0], (2, 8, 1))


def _boxes_check(d: Path, rec: Path, ref: dict) -> str | None:
    got = load_boxes_file(d / "boxes.npz", NAMES, None)
    return None if any(np.array_equal(got, _boxes(k)) for k in (0, 1)) else "mixed boxes"


def _calib(k: float) -> dict:
    cams = ring_cameras(2)
    cams[0].K[0, 0] += k
    return dict(zip(NAMES, cams))


def _calib_check(d: Path, rec: Path, ref: dict) -> str | None:
    fx = load_calibration(d / "calibration.toml")["cam0"].K[0, 0]
    return None if fx in (_calib(0)["cam0"].K[0, 0], _calib(1)["cam0"].K[0, 0]) else f"fx={fx}"


def _video_indexes(d: Path, rec: Path, cameras: int) -> None:
    """Keep in d the stream indexes of the recording's first `cameras` videos (and no others)."""
    forget_video_indexes()
    for c in range(cameras):
        VideoReader(rec / f"cam{c}.mp4").close()
    save_video_indexes(d)


def _video_indexes_check(d: Path, rec: Path, ref: dict) -> str | None:
    forget_video_indexes()
    kept = remember_video_indexes(d)
    forget_video_indexes()
    return None if kept in (1, 2) else f"{kept} video indexes kept, not the old 1 or the new 2"


WRITERS = [
    Writer("crop cache + proxies", lambda d, r: None, _cache_write, _cache_check,
           _cache_inspect),
    Writer("display proxies (alone)", lambda d, r: None, _proxies_write, _proxies_check,
           _proxies_inspect),
    Writer("checkpoint", _ckpt_setup, _ckpt_write, _ckpt_check),
    Writer("events.jsonl", _events_setup, _events_write, _events_check),
    Writer("project file", _project_setup, lambda d, r: create_project(d / "p", d / "b"),
           _project_check),
    Writer("boxes.npz export", lambda d, r: save_boxes_npz(d / "boxes.npz", _boxes(0), NAMES),
           lambda d, r: save_boxes_npz(d / "boxes.npz", _boxes(1), NAMES), _boxes_check),
    Writer("calibration export", lambda d, r: save_calibration_toml(d / "calibration.toml",
                                                                    _calib(0)),
           lambda d, r: save_calibration_toml(d / "calibration.toml", _calib(1)), _calib_check),
    Writer("video indexes", lambda d, r: _video_indexes(d, r, 1),
           lambda d, r: _video_indexes(d, r, 2), _video_indexes_check),
]
IDS = [w.name for w in WRITERS]


def _held(outcome, check: Callable[[], str | None], expect: str | None = None) -> str | None:
    """None if the fault was handled: finished, or a one-line error (naming `expect`)."""
    if outcome.status not in (0, 2) or (outcome.status == 2 and not outcome.one_line_error):
        return f"child ended badly: {outcome}"
    if outcome.status == 2 and expect is not None and expect not in outcome.stderr:
        return f"error does not say {expect!r}: {outcome.stderr!r}"
    return check()


# -- kills ---------------------------------------------------------------------------------
@pytest.mark.parametrize("writer", WRITERS, ids=IDS)
def test_sigkill_at_random_points_of_every_writer(writer, world, reference, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    writer.setup(probe, world / "rec")
    total = run_child(lambda: writer.write(probe, world / "rec")).calls
    assert total > 3
    failures = []
    for k in kill_points(total, 8, seed=len(writer.name)):
        d = tmp_path / f"kill{k}"
        d.mkdir()
        writer.setup(d, world / "rec")
        outcome = run_child(lambda d=d: writer.write(d, world / "rec"), kill_at=k)
        problem = (None if outcome.status in (-9, 0) else f"not killed: {outcome}") or \
            writer.check(d, world / "rec", reference)
        record("SIGKILL", writer.name, problem is None)
        if problem:
            failures.append(f"kill at call {k}/{total}: {problem}")
    assert not failures


# -- full disk -----------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1, 700, 4000, 9000])
@pytest.mark.parametrize("writer", WRITERS, ids=IDS)
def test_file_size_limit_is_a_one_line_error(writer, limit, world, reference, tmp_path):
    """RLIMIT_FSIZE (works everywhere): a write past the limit fails with EFBIG."""
    writer.setup(tmp_path, world / "rec")
    outcome = run_child(lambda: writer.write(tmp_path, world / "rec"), fsize=limit)
    problem = _held(outcome, lambda: writer.check(tmp_path, world / "rec", reference),
                    "file-size limit")
    record("RLIMIT_FSIZE", writer.name, problem is None)
    assert problem is None


@pytest.mark.parametrize("writer", WRITERS, ids=IDS)
def test_full_disk_is_a_one_line_error_and_the_rerun_completes(writer, world, reference,
                                                              tmp_path):
    """A real ENOSPC: a tiny tmpfs filled up, then grown (space freed) and written again."""
    with tiny_fs(tmp_path / "fs", 4096) as fs:
        if fs is None:
            pytest.skip("mounting a tmpfs needs root")
        writer.setup(fs, world / "rec")
        fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT)  # leave the writer no space
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        outcome = run_child(lambda: writer.write(fs, world / "rec"))
        inspect = writer.inspect or writer.check  # nothing may be written on the full disk
        problem = _held(outcome, lambda: inspect(fs, world / "rec", reference), "disk is full")
        if problem is None and outcome.status == 0:
            problem = "the write claimed success on a full disk"
        if problem is None:
            (fs / "filler").unlink()
            again = run_child(lambda: writer.write(fs, world / "rec"))
            problem = (None if again.status == 0 else f"rerun failed: {again}") or \
                writer.check(fs, world / "rec", reference)
        record("full tmpfs", writer.name, problem is None)
        assert problem is None


@pytest.mark.parametrize("limit", [1, 2000])
def test_synth_past_a_file_size_limit_is_one_line_and_leaves_nothing(limit, tmp_path):
    outcome = run_child(lambda: data_cli.main(["synth", str(tmp_path / "out"), "--workers",
                                               "1"]), fsize=limit)
    held = outcome.one_line_error and "file-size limit" in outcome.stderr
    held = held and list(tmp_path.iterdir()) == []  # no dataset, no temp folder
    record("RLIMIT_FSIZE", "mcss-data synth", held)
    assert held, (outcome, list(tmp_path.iterdir()))


@pytest.mark.parametrize("size_kb", [8, 24, 40, 64])
def test_cache_cli_on_a_full_disk_exits_2_and_resumes_byte_identical(size_kb, world, reference,
                                                                     tmp_path):
    """The report's case: `mcss-data cache` on a full disk died of SIGBUS (exit 135)."""
    with tiny_fs(tmp_path / "fs", size_kb) as fs:
        if fs is None:
            pytest.skip("mounting a tmpfs needs root")
        argv = ["cache", str(world / "rec"), "--cache", str(fs / "c"), "--crop-size", "16",
                "--proxy-size", "32"]
        outcome = run_child(lambda: data_cli.main(argv))
        problem = None if outcome.status == 0 else _held(outcome, lambda: None, "disk is full")
        if problem is None:
            from tests.faultlib import grow_fs

            grow_fs(fs, 4096)  # free space
            again = run_child(lambda: data_cli.main(argv))
            problem = None if again.status == 0 else f"rerun failed: {again}"
        if problem is None and _cache_files(fs / "c", world / "rec") != reference:
            problem = "cache after the rerun is not byte-identical"
        record("full tmpfs", "mcss-data cache CLI", problem is None)
        assert problem is None


# -- unwritable folders --------------------------------------------------------------------
@contextlib.contextmanager
def _other_user(root: Path) -> Iterator[int | None]:
    """Make root a folder this test's child may not write; yield the uid the child runs as.

    As root (CI), permission bits do not stop root, so the child runs as user nobody and the
    folder stays owned by root (0755). Otherwise the folder is made read-only (0555) for us,
    and writable again afterwards.
    """
    def set_modes(dirs: int, files: int) -> None:
        for p in [root, *root.rglob("*")]:
            os.chmod(p, dirs if p.is_dir() else files)

    set_modes(0o755 if os.geteuid() == 0 else 0o555, 0o644 if os.geteuid() == 0 else 0o444)
    try:
        yield NOBODY if os.geteuid() == 0 else None
    finally:
        set_modes(0o755, 0o644)


@pytest.mark.parametrize("how", ["other user", "read-only mount"])
@pytest.mark.parametrize("writer", WRITERS, ids=IDS)
def test_unwritable_folder_is_a_one_line_error(writer, how, world, reference, tmp_path):
    base = Path(world) / f"unwritable-{how.replace(' ', '-')}-{IDS.index(writer.name)}"
    base.mkdir()
    try:
        writer.setup(base, world / "rec")
        if how == "other user":
            with _other_user(base) as uid:
                outcome = run_child(lambda: writer.write(base, world / "rec"), uid=uid)
            problem = _held(outcome, lambda: _unchanged(writer, base, world, reference),
                            "permission denied")
        else:
            with read_only_view(base, tmp_path / "ro") as ro:
                if ro is None:
                    pytest.skip("a read-only bind mount needs root")
                outcome = run_child(lambda: writer.write(ro, world / "rec"))
                problem = _held(outcome, lambda: _unchanged(writer, ro, world, reference),
                                "read-only")
        if problem is None and outcome.status == 0:
            problem = "the write claimed success in an unwritable folder"
        record(UNWRITABLE[how], writer.name, problem is None)
        assert problem is None
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _unchanged(writer: Writer, d: Path, world: Path, reference: dict) -> str | None:
    if writer.name == "crop cache + proxies":  # nothing was there; nothing may claim to be
        with open_sequence(world / "rec") as seq, pytest.raises(UserInputError):
            CropCache.open(d / "cache", seq)
        return None
    if writer.name == "display proxies (alone)":
        with open_sequence(world / "rec") as seq:
            store = ProxyStore(d / "px", seq)
            return None if not any(store.available(c) for c in range(2)) else "proxies appeared"
    return writer.check(d, world / "rec", reference)


CLI_CASES = {
    "mcss-data cache (recording)": lambda ro, w: data_cli.main(["cache", str(ro), "--crop-size",
                                                                 "16", "--no-proxies"]),
    "mcss-train embed (out folder)": lambda ro, w: train_cli.main(
        ["embed", str(w / "none.safetensors"), str(w / "rec"), str(ro / "sub" / "e.npz")]),
    "mcss-train fit --run-dir": lambda ro, w: train_cli.main(
        ["fit", "--data", str(w / "rec"), "--run-dir", str(ro), "--run-id", "r",
         "--progress", "off"]),
}


@pytest.mark.parametrize("how", ["other user", "read-only mount"])
@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_into_unwritable_folder_exits_2_with_one_line(case, how, world, tmp_path):
    """The report's item 2: each of these gave a traceback and exit 1."""
    target = world / "rec"
    if how == "other user":
        with _other_user(target) as uid:
            outcome = run_child(lambda: CLI_CASES[case](target, world), uid=uid)
        expect = "permission denied"
    else:
        with read_only_view(target, tmp_path / "ro") as ro:
            if ro is None:
                pytest.skip("a read-only bind mount needs root")
            outcome = run_child(lambda: CLI_CASES[case](ro, world))
        expect = "read-only"
    held = outcome.one_line_error and expect in outcome.stderr
    if case.startswith("mcss-data cache"):  # and how to keep the cache elsewhere
        held = held and "--cache DIR" in outcome.stderr
    record(UNWRITABLE[how], case, held)
    assert held, outcome


# -- corrupted files -----------------------------------------------------------------------
def _read_video(rec: Path) -> None:
    with open_sequence(rec) as seq:
        for c in range(len(seq.cameras)):
            for _ in seq.iter_frames(c):
                pass


def _read_cache(cache: Path, rec: Path) -> None:
    with open_sequence(rec) as seq, CropCache.open(cache, seq) as crops:
        for c in range(2):
            np.asarray(crops.crops(c)).sum()


def _read_proxies(cache: Path, rec: Path) -> None:
    with open_sequence(rec) as seq:
        store = ProxyStore(cache, seq)
        for c in range(2):
            for t in range(8):
                try:
                    store.read(c, t)
                except ProxyMissingError:  # "not built": the player decodes the video instead
                    pass


def _formats(world: Path, d: Path) -> dict[str, tuple[Path, Callable[[], object]]]:
    """file format -> (a valid file of it inside d, the reader the project opens it with)."""
    rec, synced = d / "rec", d / "synced"
    shutil.copytree(world / "rec", rec)
    shutil.copytree(world / "rec", synced)
    with open_sequence(rec) as seq:
        build_cache(seq, d / "cache", **CACHE_ARGS)
        crops, proxies = crops_dir(d / "cache", seq), proxy_dir(d / "cache", seq)
    save_calibration_toml(d / "calibration.toml", _calib(0))
    save_boxes_npz(d / "boxes.npz", _boxes(0), NAMES)
    (d / "boxes.csv").write_text("camera,frame,x0,y0,x1,y1\ncam0,1,1,2,30,40\n"
                                 "cam1,3,2.5,2,31,41\n")
    np.savetxt(d / "joints3d.csv", standing_pose(4).reshape(4, -1), delimiter=",")
    (synced / "sequence.toml").write_text('name = "take"\n[offsets]\ncam1 = 1\n')
    save_checkpoint(d / "model.safetensors", _model(0), {"tag": "x"}, {"step": 3})
    (d / "a").mkdir()
    create_project(d / "p", d / "a")
    _events_setup(d, rec)
    cache = d / "cache"
    return {
        "video (cam0.mp4)": (rec / "cam0.mp4", lambda: _read_video(rec)),
        "calibration.json": (rec / "calibration.json",
                             lambda: load_calibration(rec / "calibration.json")),
        "calibration.toml": (d / "calibration.toml",
                             lambda: load_calibration(d / "calibration.toml")),
        "sequence.toml": (synced / "sequence.toml", lambda: open_sequence(synced).close()),
        "joints3d.npz": (rec / "joints3d.npz", lambda: load_joints3d(rec / "joints3d.npz")),
        "joints3d.csv": (d / "joints3d.csv", lambda: load_joints3d(d / "joints3d.csv")),
        "boxes.npz": (d / "boxes.npz", lambda: load_boxes_file(d / "boxes.npz", NAMES, None)),
        "boxes.csv": (d / "boxes.csv", lambda: load_boxes_file(d / "boxes.csv", NAMES, None)),
        "checkpoint (.safetensors)": (d / "model.safetensors", lambda: (
            load_checkpoint(d / "model.safetensors"),
            load_training_state(d / "model.safetensors"))),
        "project (mcss-project.toml)": (d / "p" / "mcss-project.toml",
                                        lambda: read_project(d / "p")),
        "events.jsonl": (d / "events.jsonl", lambda: read_events(d / "events.jsonl")),
        "crop cache meta.json": (crops / "meta.json", lambda: _read_cache(cache, rec)),
        "crop cache boxes.npy": (crops / "boxes.npy", lambda: _read_cache(cache, rec)),
        "crop cache 0.u8": (crops / "0.u8", lambda: _read_cache(cache, rec)),
        "crop cache 0.done": (crops / "0.done", lambda: _read_cache(cache, rec)),
        "proxy 0.json": (proxies / "0.json", lambda: _read_proxies(cache, rec)),
        "proxy 0.idx": (proxies / "0.idx", lambda: _read_proxies(cache, rec)),
        "proxy 0.blob": (proxies / "0.blob", lambda: _read_proxies(cache, rec)),
    }


FORMAT_NAMES = ["video (cam0.mp4)", "calibration.json", "calibration.toml", "sequence.toml",
                "joints3d.npz", "joints3d.csv", "boxes.npz", "boxes.csv",
                "checkpoint (.safetensors)", "project (mcss-project.toml)", "events.jsonl",
                "crop cache meta.json", "crop cache boxes.npy", "crop cache 0.u8",
                "crop cache 0.done", "proxy 0.json", "proxy 0.idx", "proxy 0.blob"]


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_truncated_or_bit_flipped_files_open_or_fail_in_one_line(fmt, world, reference,
                                                                tmp_path):
    path, read = _formats(world, tmp_path)[fmt]
    assert run_child(read).status == 0  # the intact file opens
    original = path.read_bytes()
    failures = []
    for kind, data in mutations(original, 6, seed=FORMAT_NAMES.index(fmt)):
        path.write_bytes(data)
        outcome = run_child(read)
        held = outcome.status == 0 or outcome.one_line_error
        record(kind, fmt, held)
        if not held:
            failures.append(f"{kind} to {len(data)} bytes: {outcome}")
    path.write_bytes(original)
    assert not failures


@pytest.mark.parametrize("limit", [1, 3000])
def test_video_export_past_a_file_size_limit_is_one_line_and_leaves_nothing(limit, tmp_path):
    from mcss_studio.core.video_writer import VideoWriter

    def export() -> None:
        frames = np.random.default_rng(0).integers(0, 255, (6, 48, 64, 3), dtype=np.uint8)
        with VideoWriter(tmp_path / "out.mp4", 25, 64, 48, codec="mp4v") as writer:
            for frame in frames:
                writer.write(frame)

    outcome = run_child(export, fsize=limit)
    held = outcome.one_line_error and "file-size limit" in outcome.stderr
    held = held and list(tmp_path.iterdir()) == []  # neither the video nor its temp file
    record("RLIMIT_FSIZE", "video export (VideoWriter)", held)
    assert held, (outcome, list(tmp_path.iterdir()))
