"""Write a synthetic multi-view dataset folder (docs/FORMATS.md layout), atomically.

Everything is rendered into a sibling temporary folder ``OUT.tmp-xxxx`` that is renamed to OUT
only when complete, so an interrupted run leaves no half dataset. All randomness derives from
the seed through SeedSequence keys (subject, action, take, camera), and every file is written
without time stamps, so one seed gives the same bytes on the same machine.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import queue as queue_module
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from ..atomic import atomic_path, writing
from ..calibration import save_calibration_json
from ..errors import UserInputError
from ..video_writer import VideoWriter
from .body import SUBJECT_ORDER, Appearance, build_shapes, make_appearance, subject_seed
from .cameras import MAX_CAMERAS, CameraView, Room, build_view, camera_layout
from .motion import VARIED_ACTIONS, Skeleton, Style, synthesize
from .presets import MAX_FPS, MAX_SIDE, MIN_FPS, MIN_SIDE, PRESETS, splits_for
from .render import render_frame

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SequencePlan:
    name: str
    subject: str
    action: str
    take: int
    frames: int


@dataclass(frozen=True)
class DatasetPlan:
    """What `generate` will write, decided (and validated) before anything touches the disk."""

    preset: str
    seed: int
    cameras: int
    fps: float
    size: tuple[int, int]
    sequences: tuple[SequencePlan, ...]
    splits: dict[str, list[str]]
    motion: str = "cyclic"  # motion.MOTION_STYLES

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(s.subject for s in self.sequences))

    @property
    def frames_per_camera(self) -> int:
        return sum(s.frames for s in self.sequences)

    @property
    def total_images(self) -> int:
        return self.frames_per_camera * self.cameras


@dataclass(frozen=True)
class Subject:
    """A subject's body, movement style and clothing: fixed across all of its takes."""

    name: str
    skeleton: Skeleton
    style: Style
    look: Appearance


def make_subject(seed: int, name: str) -> Subject:
    rng = np.random.default_rng(subject_seed(seed, name))
    height = float(rng.uniform(1560.0, 1900.0))
    index = SUBJECT_ORDER.index(name) if name in SUBJECT_ORDER else 0
    skeleton = Skeleton.from_height(height, rng)
    style = Style.sample(rng)
    return Subject(name, skeleton, style, make_appearance(rng, index, seed))


def plan_dataset(
    preset: str = "tiny",
    seed: int = 0,
    cameras: int | None = None,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
) -> DatasetPlan:
    """Validate the arguments and list the sequences; raises UserInputError naming the argument."""
    if preset not in PRESETS:
        raise UserInputError(
            "--preset", f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}"
        )
    p = PRESETS[preset]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserInputError("--seed", f"must be a non-negative integer, got {seed!r}")
    cams = p.cameras if cameras is None else cameras
    if (
        isinstance(cams, bool)
        or not isinstance(cams, (int, np.integer))
        or not 1 <= cams <= MAX_CAMERAS
    ):
        raise UserInputError(
            "--cameras", f"must be an integer from 1 to {MAX_CAMERAS}, got {cams!r}"
        )
    rate = p.fps if fps is None else fps
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise UserInputError(
            "--fps", f"must be a number from {MIN_FPS:g} to {MAX_FPS:g}, got {fps!r}"
        ) from None
    if not MIN_FPS <= rate <= MAX_FPS:
        raise UserInputError("--fps", f"must be from {MIN_FPS:g} to {MAX_FPS:g}, got {fps!r}")
    wh = p.size if size is None else size
    try:
        w, h = (int(v) for v in wh)
        ok = (w, h) == tuple(wh)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserInputError("--size", f"must be WIDTHxHEIGHT in pixels, got {size!r}")
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE) or w % 2 or h % 2:
        raise UserInputError(
            "--size",
            f"width and height must be even and from {MIN_SIDE} to {MAX_SIDE}, got {w}x{h}",
        )
    frames = max(2, int(round(p.seconds * rate)))
    sequences = tuple(
        SequencePlan(f"{subject}_{action}_{take + 1}", subject, action, take, frames)
        for subject in p.subjects
        for action in p.actions
        for take in range(p.takes)
    )
    return DatasetPlan(
        preset, int(seed), int(cams), rate, (w, h), sequences, splits_for(p.subjects), p.motion
    )


def generate(
    out: Path,
    preset: str = "tiny",
    seed: int = 0,
    cameras: int | None = None,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> Path:
    """Render the preset into the dataset folder `out` and return it.

    `progress(done, total)` is called with rendered images (frames x cameras) so far.
    `workers`: processes rendering sequences side by side (same bytes as 1); 0 = one per CPU
    core (at most 4), or 1 for small presets where starting processes costs more than it saves.
    Worker processes are spawned, so a script calling this with workers != 1 needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    plan = plan_dataset(preset, seed, cameras, fps, size)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise UserInputError("--workers", f"must be 0 (one per core) or more, got {workers!r}")
    return write_plan(out, plan, progress, _default_workers(plan) if workers == 0 else workers)


def write_plan(
    out: Path, plan: DatasetPlan, progress: Progress | None = None, workers: int = 1
) -> Path:
    """Render `plan` into the dataset folder `out` (absent or empty) through a sibling temporary
    folder renamed only when complete; returns `out`."""
    out = Path(out)
    tmp = _make_temp_folder(out)
    try:
        with writing(out, name_file=False):  # full disk: one line; the temp folder goes
            write_dataset(tmp, plan, progress, workers)
            if out.is_dir():
                out.rmdir()  # empty (checked before); rename cannot replace it on every platform
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _default_workers(plan: DatasetPlan) -> int:
    if plan.total_images < 4000:
        return 1
    return max(1, min(4, os.cpu_count() or 1, len(plan.sequences)))


def _make_temp_folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UserInputError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserInputError(
            out, "already exists and is not empty; remove it or choose a new folder"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise UserInputError(
            out, f"cannot write the dataset here ({exc.strerror or exc})"
        ) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset is an ordinary folder
    return tmp


def build_views(plan: DatasetPlan) -> list[CameraView]:
    """The rig of the dataset: calibrations, cached backgrounds and noise banks."""
    width, height = plan.size
    room = Room.sample(plan.seed)
    layout = camera_layout(plan.cameras, width, height, plan.seed)
    return [build_view(name, cal, room, plan.seed, i) for i, (name, cal) in enumerate(layout)]


def sequence_joints(plan: DatasetPlan, seq: SequencePlan, subject: Subject) -> np.ndarray:
    """World joints (T,17,3) of one take; seeded by (seed, subject, action, take)."""
    key = [
        plan.seed,
        99,
        SUBJECT_ORDER.index(seq.subject) if seq.subject in SUBJECT_ORDER else 0,
        VARIED_ACTIONS.index(seq.action),  # the old actions first, with their old indices
        seq.take,
    ]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    return synthesize(
        seq.action, seq.frames, plan.fps, subject.skeleton, subject.style, rng, plan.motion
    )


def write_dataset(
    folder: Path, plan: DatasetPlan, progress: Progress | None = None, workers: int = 1
) -> None:
    """Render every sequence of the plan into `folder` (which exists and is empty).

    With workers > 1, sequences render in that many processes; each sequence is seeded on its
    own, so the files are the same whichever process writes them.
    """
    total = plan.total_images
    if progress is not None:
        progress(0, total)
    if workers > 1 and len(plan.sequences) > 1:
        _write_sequences_in_pool(folder, plan, progress, workers)
    else:
        renderer = _SequenceRenderer(plan)
        done = 0

        def step(images: int) -> None:
            nonlocal done
            done += images
            if progress is not None:
                progress(done, total)

        for index in range(len(plan.sequences)):
            renderer.write(folder, index, step)
    _write_manifest(folder, plan)


class _SequenceRenderer:
    """The rig and subjects of a plan, built once, then any of its sequences on demand."""

    def __init__(self, plan: DatasetPlan) -> None:
        self.plan = plan
        self.views = build_views(plan)
        self.subjects = {name: make_subject(plan.seed, name) for name in plan.subjects}

    def write(self, folder: Path, index: int, step: Callable[[int], None]) -> None:
        """Render sequence `index` into folder/<name>/; `step(images)` after every instant."""
        plan, views = self.plan, self.views
        seq = plan.sequences[index]
        seq_dir = folder / seq.name
        seq_dir.mkdir()
        subject = self.subjects[seq.subject]
        joints = sequence_joints(plan, seq, subject)
        shapes = build_shapes(joints, subject.skeleton, subject.look.girth)
        noise_rng = np.random.default_rng(np.random.SeedSequence([plan.seed, 2024, index]))
        noise_index = noise_rng.integers(0, 1 << 30, size=(len(views), seq.frames))
        boxes = np.full((len(views), seq.frames, 4), np.nan)
        with ExitStack() as stack:
            writers = [
                stack.enter_context(
                    # a keyframe every second keeps seeking in the player and loaders cheap
                    VideoWriter(
                        seq_dir / f"{v.name}.mp4",
                        plan.fps,
                        v.width,
                        v.height,
                        codec="h264",
                        gop=max(1, round(plan.fps)),
                    )
                )
                for v in views
            ]
            for t in range(seq.frames):
                for c, (view, writer) in enumerate(zip(views, writers)):
                    frame = render_frame(
                        view, shapes, t, subject.look, joints[t], int(noise_index[c, t])
                    )
                    writer.write(frame.image)
                    boxes[c, t] = frame.box
                step(len(views))
        save_calibration_json(seq_dir / "calibration.json", {v.name: v.calibration for v in views})
        save_npz(seq_dir / "joints3d.npz", joints3d=joints)
        save_npz(seq_dir / "boxes.npz", boxes=boxes, cameras=np.array([v.name for v in views]))
        meta = {"name": seq.name, "subject": seq.subject, "action": seq.action}
        (seq_dir / "sequence.toml").write_text(tomli_w.dumps(meta), encoding="utf-8")


# -- process pool: one renderer per worker, progress through a queue ----------------------------
_worker_renderer: _SequenceRenderer | None = None
_worker_queue: Any = None


def _init_worker(plan: DatasetPlan, queue: Any) -> None:
    global _worker_renderer, _worker_queue
    _worker_renderer = _SequenceRenderer(plan)
    _worker_queue = queue


def _worker_write(folder: Path, index: int) -> None:
    assert _worker_renderer is not None
    _worker_renderer.write(folder, index, _worker_queue.put)


def _write_sequences_in_pool(
    folder: Path, plan: DatasetPlan, progress: Progress | None, workers: int
) -> None:
    ctx = multiprocessing.get_context("spawn")  # no fork: safe next to threads (Qt, BLAS)
    queue = ctx.Queue()
    total, done = plan.total_images, 0
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(plan, queue)
    ) as pool:
        try:
            futures = [pool.submit(_worker_write, folder, i) for i in range(len(plan.sequences))]
            while not all(f.done() for f in futures):
                try:
                    done += queue.get(timeout=0.2)
                except queue_module.Empty:
                    continue
                if progress is not None:
                    progress(done, total)
            for f in futures:
                f.result()  # re-raise the first failure
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    while True:  # what arrived after the last check
        try:
            done += queue.get_nowait()
        except queue_module.Empty:
            break
    if progress is not None and done:
        progress(done, total)


def _write_manifest(folder: Path, plan: DatasetPlan) -> None:
    manifest = {
        "format": "mcss-multiview-dataset",
        "version": 1,
        "generator": {
            "name": "mcss-data synth",
            "preset": plan.preset,
            "seed": plan.seed,
            "cameras": plan.cameras,
            "fps": plan.fps,
            "size": list(plan.size),
            # only when not the original style, so the old presets' manifests keep their bytes
            **({"motion": plan.motion} if plan.motion != "cyclic" else {}),
        },
        "sequences": [
            {"name": s.name, "path": s.name, "subject": s.subject, "action": s.action}
            for s in plan.sequences
        ],
        "splits": plan.splits,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like np.savez_compressed but without zip time stamps, so the bytes are reproducible."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
