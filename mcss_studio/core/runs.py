"""Training runs as the Studio sees them, without Qt and without importing trainer/.

A run is a folder `runs/<id>/` holding what `mcss-train fit` writes (`events.jsonl`,
`triplets.jsonl`, `checkpoints/`) and what the Studio writes when it starts one: the settings
(`config.toml`, TrainConfig field names, read by `mcss-train fit --config`), the trainer's
merged stdout and stderr (`trainer.log`) and the launch record (`launch.json`: the label source
and, per start or resume, the command, start and end times, exit code and whether the user asked
it to stop). Guarantees:

- `RunHistory` is what the events say so far, built incrementally: a resumed run's `start`
  event at step s drops the curve points and evaluations after s (the run continues from there);
- `RunFollower` reads only bytes it has not read (`tail_records` offsets), at most `limit` per
  call, so a run with a million event lines is taken in slices and never re-read;
- `run_status` names a run that ended without a `status` event (killed, crashed before it could
  write one) "failed" when the Studio saw its process end, "incomplete" when nobody did;
- every file the Studio writes here is written atomically (core/atomic.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomli_w

from .atomic import atomic_open, make_dirs
from .errors import UserInputError
from .runlog import EVENTS_FILE, tail_records
from .tomlio import read_toml

CONFIG_FILE = "config.toml"
LAUNCH_FILE = "launch.json"
LOG_FILE = "trainer.log"
CHECKPOINT_DIR = "checkpoints"
CURVES = ("loss", "pose_loss", "metric_loss", "lr", "active_triplets", "images_per_s")
SUMMARY_FULL_BYTES = 8 << 20  # a summary reads a whole event log up to this size, else its ends
SUMMARY_TAIL_BYTES = 1 << 20


# -- starting a run --------------------------------------------------------------------------
def new_run_id(runs: Path, name: str = "", now: float | None = None) -> str:
    """A fresh folder name in `runs`: local time stamp, then the name's letters and digits."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:32]
    base = f"{stamp}-{slug}" if slug else stamp
    run_id, n = base, 2
    while (Path(runs) / run_id).exists():
        run_id, n = f"{base}-{n}", n + 1
    return run_id


def write_run_config(run_dir: Path, settings: dict) -> Path:
    """`settings` (TrainConfig field names) as `run_dir/config.toml`, atomically."""
    clean = {k: v for k, v in settings.items() if v is not None}
    path = make_dirs(run_dir) / CONFIG_FILE
    with atomic_open(path, "wb") as fh:
        tomli_w.dump(clean, fh)
    return path


def read_run_config(run_dir: Path) -> dict:
    """The settings of a run: its config.toml, else the config of its first start event."""
    path = Path(run_dir) / CONFIG_FILE
    if path.is_file():
        doc = read_toml(path)
        return dict(doc["train"]) if isinstance(doc.get("train"), dict) else doc
    return dict(summarize_run(run_dir).history.config)


def fit_command(config: Path, resume: Path | None = None, python: str | None = None
                ) -> list[str]:
    """The argv that trains `config` in a subprocess (the `mcss-train fit` entry point, run as a
    module of the same interpreter so it works from a checkout and from an install)."""
    argv = [python or sys.executable, "-m", "trainer.cli", "fit", "--config", str(config),
            "--progress", "off"]
    return argv + (["--resume", str(resume)] if resume is not None else [])


def torchrun_command(config: Path, gpus: int = 4, nodes: int = 1,
                     resume: Path | None = None) -> str:
    """A shell line that trains the same config with DistributedDataParallel under torchrun,
    one process per GPU (on a cluster: the same line on every node, with --rdzv settings)."""
    argv = ["torchrun", f"--nnodes={nodes}", f"--nproc_per_node={gpus}"]
    argv += ["--standalone"] if nodes == 1 else ["--rdzv_backend=c10d",
                                                "--rdzv_endpoint=$HEAD_NODE:29500"]
    argv += ["-m", "trainer.cli", "fit", "--config", str(config), "--device", "cuda"]
    argv += ["--resume", str(resume)] if resume is not None else []
    return " ".join(a if a.startswith("--rdzv_endpoint") else shlex.quote(a) for a in argv)


# -- the launch record -------------------------------------------------------------------------
@dataclass
class Launch:
    """One start (or resume) of the trainer by the Studio."""

    command: list[str]
    started: float
    resume: str = ""
    ended: float | None = None
    exit_code: int | None = None
    crashed: bool = False  # ended by a signal (killed, segfault), not by exiting
    stop_requested: bool = False


@dataclass
class LaunchRecord:
    """What the Studio knows about a run beyond its events: the labels it was started on and
    every launch."""

    labels: dict = field(default_factory=dict)
    launches: list[Launch] = field(default_factory=list)

    @property
    def last(self) -> Launch | None:
        return self.launches[-1] if self.launches else None


def write_launch(run_dir: Path, record: LaunchRecord) -> None:
    doc = {"labels": record.labels, "launches": [vars(x) for x in record.launches]}
    with atomic_open(Path(run_dir) / LAUNCH_FILE) as fh:
        fh.write(json.dumps(doc, indent=1))


def read_launch(run_dir: Path) -> LaunchRecord | None:
    """The launch record, None when the Studio never started this run (an external one)."""
    path = Path(run_dir) / LAUNCH_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        launches = [Launch(**x) for x in doc.get("launches", [])]
        return LaunchRecord(dict(doc.get("labels") or {}), launches)
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        raise UserInputError(path, "damaged launch record (not the Studio's JSON)") from None


# -- what the events say ---------------------------------------------------------------------
class Series:
    """A curve that grows by one point at a time. New points wait in lists (cheap to append)
    and move into arrays that double when full when the curve is read, so a read is a view,
    not a conversion of the whole curve (a run can log a million steps)."""

    def __init__(self) -> None:
        self._xy = np.empty((2, 0))
        self._n = 0
        self._new: tuple[list[float], list[float]] = ([], [])

    def append(self, x: float, y: float) -> None:
        self._new[0].append(x)
        self._new[1].append(y)

    def keep_until(self, x: float) -> None:
        """Drop the points after step x (steps grow along the curve)."""
        steps, _ = self.arrays()
        self._n = int(np.searchsorted(steps, x, side="right"))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Steps and values: read-only views, valid until the curve next changes."""
        new = len(self._new[0])
        if new:
            if self._n + new > self._xy.shape[1]:
                grown = np.empty((2, max(2 * self._xy.shape[1], self._n + new, 64)))
                grown[:, :self._n] = self._xy[:, :self._n]
                self._xy = grown
            self._xy[:, self._n:self._n + new] = self._new
            self._n += new
            self._new = ([], [])
        x, y = self._xy[0, :self._n], self._xy[1, :self._n]
        x.flags.writeable = y.flags.writeable = False
        return x, y


class RunHistory:
    """Curves, evaluations, checkpoints and status of one run, fed its events in order."""

    def __init__(self) -> None:
        self.config: dict = {}
        self.steps_total = 0
        self.step = 0
        self.device = ""
        self.labelled_frames: int | None = None
        self.label_store: dict | None = None  # the store record of the latest start, if any
        self.status: str | None = None  # done | stopped | failed, None while it runs
        self.status_time: float | None = None
        self.message = ""
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.active_seconds = 0.0  # summed over segments (start to status), gaps left out
        self._segment_start: float | None = None
        self._series: dict[str, Series] = {}
        self._step_times: deque[tuple[float, int]] = deque(maxlen=20)
        self.evals: list[tuple[int, dict]] = []
        self.checkpoints: dict[int, str] = {}  # step -> path, as the events announced them
        self.events = 0

    def add(self, records: list[dict]) -> None:
        for r in records:
            self.events += 1
            t = r.get("time")
            if isinstance(t, (int, float)):
                self.first_time = t if self.first_time is None else self.first_time
                self.last_time = t
            handler = getattr(self, "_on_" + str(r.get("event")), None)
            if handler is not None:
                handler(r)

    def _on_start(self, r: dict) -> None:
        start = int(r.get("start_step") or 0)
        if not self.config:
            self.config = dict(r.get("config") or {})
        self.steps_total = int(r.get("steps") or self.steps_total)
        self.device = str(r.get("device", ""))
        self.labelled_frames = r.get("labelled_frames", self.labelled_frames)
        if isinstance(r.get("label_store"), dict):  # a resume re-reads the store: the latest
            self.label_store = dict(r["label_store"])
        for series in self._series.values():  # resumed from step `start`: later points go
            series.keep_until(start)
        self.evals = [(s, m) for s, m in self.evals if s <= start]
        self.step, self.status, self.status_time, self.message = start, None, None, ""
        self._step_times.clear()
        self._segment_start = r.get("time")

    def _on_step(self, r: dict) -> None:
        step = int(r["step"])
        self.step = step
        for key in CURVES:
            value = r.get(key)
            if isinstance(value, (int, float)):
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = Series()
                series.append(step, float(value))
        if isinstance(r.get("time"), (int, float)):
            self._step_times.append((r["time"], step))

    def _on_eval(self, r: dict) -> None:
        self.evals.append((int(r.get("step", self.step)), dict(r.get("metrics") or {})))

    def _on_checkpoint(self, r: dict) -> None:
        self.checkpoints[int(r.get("step", self.step))] = str(r.get("path", ""))

    def _on_status(self, r: dict) -> None:
        self.status = str(r.get("status"))
        self.status_time = r.get("time")
        self.message = str(r.get("message", ""))
        self.step = int(r.get("step", self.step))
        if self._segment_start is not None and isinstance(r.get("time"), (int, float)):
            self.active_seconds += r["time"] - self._segment_start
        self._segment_start = None

    # -- reading ------------------------------------------------------------------------------
    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """A step curve's steps and values: read-only views, no copy (see Series)."""
        series = self._series.get(key)
        return series.arrays() if series is not None else (np.empty(0), np.empty(0))

    def eval_series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [(s, m[key]) for s, m in self.evals if isinstance(m.get(key), (int, float))]
        return np.asarray([p[0] for p in pts], float), np.asarray([p[1] for p in pts], float)

    @property
    def final_metrics(self) -> dict:
        return dict(self.evals[-1][1]) if self.evals else {}

    @property
    def duration(self) -> float:
        """Seconds of training: finished segments plus the open one up to its last event."""
        open_part = 0.0
        if self._segment_start is not None and self.last_time is not None:
            open_part = self.last_time - self._segment_start
        return self.active_seconds + open_part

    def seconds_per_step(self) -> float | None:
        """Over the last (up to 20) step events of the current segment."""
        if len(self._step_times) < 2:
            return None
        (t0, s0), (t1, s1) = self._step_times[0], self._step_times[-1]
        return (t1 - t0) / (s1 - s0) if s1 > s0 else None

    def eta(self) -> float | None:
        """Seconds until steps_total at the recent pace (None before it can be measured)."""
        per_step = self.seconds_per_step()
        if per_step is None or self.status is not None:
            return None
        return max(0, self.steps_total - self.step) * per_step


class RunFollower:
    """Follows one run folder: new event records and new trainer-log lines, reading only what
    was appended since the last poll (the caller keeps the RunHistory, e.g. on another
    thread)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.offset = 0
        self.log_offset = 0
        self._log_partial = b""

    def poll(self, limit: int | None = 4 << 20) -> tuple[list[dict], list[str]]:
        """(new complete event records, new complete log lines), each at most about `limit`
        bytes; call again while `caught_up` is False."""
        lines = self._poll_log(limit)
        path = self.run_dir / EVENTS_FILE
        try:
            if path.stat().st_size <= self.offset:
                return [], lines
        except FileNotFoundError:
            return [], lines
        records, self.offset = tail_records(path, self.offset, limit)
        return records, lines

    def _poll_log(self, limit: int | None) -> list[str]:
        path = self.run_dir / LOG_FILE
        try:
            with open(path, "rb") as fh:
                fh.seek(self.log_offset)
                data = fh.read() if limit is None else fh.read(limit)
        except FileNotFoundError:
            return []
        self.log_offset += len(data)
        *lines, self._log_partial = (self._log_partial + data).split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    @property
    def caught_up(self) -> bool:
        def size(name: str) -> int:
            try:
                return (self.run_dir / name).stat().st_size
            except FileNotFoundError:
                return 0

        return size(EVENTS_FILE) <= self.offset and size(LOG_FILE) <= self.log_offset


# -- a run in the history table -----------------------------------------------------------------
@dataclass
class RunSummary:
    run_dir: Path
    history: RunHistory
    launch: LaunchRecord | None
    log_tail: list[str]

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def status(self, running: bool = False) -> str:
        return run_status(self.history, self.launch, running)[0]


def run_status(history: RunHistory, launch: LaunchRecord | None, running: bool = False
               ) -> tuple[str, str]:
    """(status, why): running, done, stopped, failed or incomplete, and a one-line reason for
    failed and incomplete runs. The events' own status counts when it was written after the
    Studio's last launch of the run (a resume that failed before its first event must not show
    the earlier segment's "stopped")."""
    if running:
        return "running", ""
    last = launch.last if launch is not None else None
    current = history.status is not None and (
        last is None or (history.status_time or 0.0) >= last.started - 1.0)
    if current:
        if history.status == "failed":
            return "failed", history.message or "the trainer reported a failure"
        return str(history.status), ""
    if last is not None and last.ended is not None:
        if last.stop_requested:
            return "stopped", "stopped before training began"
        return "failed", exit_reason(last)
    return "incomplete", "no end recorded: still running elsewhere, or killed"


def exit_reason(launch: Launch) -> str:
    if launch.crashed:
        name = signal_name(launch.exit_code)
        return f"the trainer was killed{f' ({name})' if name else ''}"
    return f"the trainer exited with code {launch.exit_code}"


def signal_name(code: int | None) -> str:
    try:
        return signal.Signals(code).name if code else ""
    except ValueError:
        return ""


def read_log_tail(run_dir: Path, lines: int = 40, max_bytes: int = 64 << 10) -> list[str]:
    """The last lines of a run's trainer log (reads at most its last `max_bytes`)."""
    path = Path(run_dir) / LOG_FILE
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]


def summarize_run(run_dir: Path) -> RunSummary:
    """A run's history for the table: the whole event log when it is small, else its first
    record and its last SUMMARY_TAIL_BYTES (curves then cover only the tail; status, final
    metrics and the config are still right)."""
    run_dir = Path(run_dir)
    history = RunHistory()
    path = run_dir / EVENTS_FILE
    if path.is_file():
        size = path.stat().st_size
        if size <= SUMMARY_FULL_BYTES:
            history.add(tail_records(path)[0])
        else:
            history.add(tail_records(path, 0, 64 << 10)[0][:1])
            with open(path, "rb") as fh:
                fh.seek(size - SUMMARY_TAIL_BYTES)
                skip = len(fh.readline())  # the first line of the slice is cut
            history.add(tail_records(path, size - SUMMARY_TAIL_BYTES + skip)[0])
    return RunSummary(run_dir, history, read_launch(run_dir), read_log_tail(run_dir))


def is_run_folder(path: Path) -> bool:
    path = Path(path)
    return any((path / name).is_file() for name in (EVENTS_FILE, LAUNCH_FILE, CONFIG_FILE))


def list_runs(runs: Path) -> list[Path]:
    """Run folders in `runs`, oldest first by name (ids start with their time stamp)."""
    runs = Path(runs)
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if p.is_dir() and is_run_folder(p))


def run_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, by step (step_*.safetensors in order, then last)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = sorted(folder.glob("step_*.safetensors"))
    last = folder / "last.safetensors"
    return found + ([last] if last.is_file() else [])


def run_label_store(history: RunHistory, launch: LaunchRecord | None) -> dict | None:
    """The label store a run trained on ({"path", "revision", ...}): what its trainer read (the
    latest start event's record), else what the Studio recorded when it started the run; None
    for a run on ground truth."""
    if history.label_store:
        return history.label_store
    labels = launch.labels if launch is not None else {}
    return labels if labels.get("source") == "store" else None


def store_edits_since(record: dict | None, path: Path | None, revision: int | None
                      ) -> int | None:
    """How many revisions the store at `path` (now at `revision`) moved on since a run read it
    (`record`, see run_label_store): 0 = the run trained on the current labels; None when they
    cannot be compared (a run on ground truth, on another store, or no store open)."""
    if record is None or path is None or revision is None or not record.get("path"):
        return None
    try:
        same = Path(record["path"]).resolve() == Path(path).resolve()
        trained = int(record["revision"])
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return revision - trained if same else None


def labels_text(labels: dict, config: dict, store: dict | None = None) -> str:
    """One cell: the label source of a run (the store it read, the Studio's record, else its
    config)."""
    if store is not None or labels.get("source") == "store":
        return f"label store rev {(store or labels).get('revision', '?')}"
    subjects = labels.get("subjects") or config.get("labelled_subjects") or []
    every = labels.get("every") or config.get("label_every") or 1
    text = "GT " + ("+".join(subjects) if subjects else "(split)")
    return text + (f" every {every}" if every and every != 1 else "")
