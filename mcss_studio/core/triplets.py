"""The hard-negative inspector's data, without Qt: a training run's mined triplets and per-step
miner statistics, read incrementally from its logs (core/runlog.py, docs/FORMATS.md).

Guarantees:

- `RunFollower.poll` reads only the bytes appended to `events.jsonl` and `triplets.jsonl` since
  its last poll, at most `chunk_bytes` of each per poll, so following a run with a million
  logged triplets costs the new lines, never the whole file again; a last line still being
  written waits for the next poll.
- Triplets are held in columns (numpy arrays, `TripletColumns`) and sorted and filtered with
  numpy (`triplet_order`): a million rows sort in a fraction of a second, and a poll parses
  into a separate chunk that the reader's thread appends (`RunData.apply`), so a worker thread
  can poll while the UI thread reads.
- A damaged line, or a triplet record without the fields the inspector needs (an older or
  foreign log), stops following that log with one line naming the file, the byte and the
  field; every record before it is kept.
- A log that shrank or was replaced by another file is read again from its start.
- A run resumed from an earlier checkpoint logs some steps again: a step that goes back drops
  what was logged from that step on, so each step's figures are those of the resumed run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserInputError
from .runlog import EVENTS_FILE, TRIPLETS_FILE, follow_records

CHUNK_BYTES = 8 << 20  # per log and poll: a few hundred thousand lines at most
# per-step miner statistics of the trainer's "step" events (trainer/train.py train_step):
# triplets = triplets mined; active_triplets = the fraction violating the margin
# (d_ap - d_an + margin > 0); d_ap_mean / d_an_mean = mean positive / negative distance;
# anchors_with_negative, negatives_per_anchor = what in-sequence mining could choose from
STAT_FIELDS = ("triplets", "active_triplets", "d_ap_mean", "d_an_mean",
               "anchors_with_negative", "negatives_per_anchor")
ROLES = ("anchor", "positive", "negative")
SORT_KEYS = ("step", "anchor", "positive", "negative", "d_ap", "d_an", "violation", "dt",
             "pose")
KAPPA = 0.1  # unit-scale Procrustes pose distance under which two poses are the same (DESIGN.md)


class _Columns:
    """Named 1-D numpy columns of equal length that grow by doubling (amortised appends)."""

    DTYPES: dict[str, type] = {}

    def __init__(self) -> None:
        self._data = {name: np.empty(0, dtype) for name, dtype in self.DTYPES.items()}
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def col(self, name: str) -> np.ndarray:
        """The column's first n values (a view: do not keep it across appends)."""
        return self._data[name][: self.n]

    def _append(self, columns: dict[str, np.ndarray]) -> None:
        added = len(next(iter(columns.values()))) if columns else 0
        if self.n + added > len(self._data[next(iter(self.DTYPES))]):
            capacity = max(1024, 2 * (self.n + added))
            for name, old in self._data.items():
                grown = np.empty(capacity, old.dtype)
                grown[: self.n] = old[: self.n]
                self._data[name] = grown
        for name, values in columns.items():
            self._data[name][self.n: self.n + added] = values
        self.n += added

    def truncate(self, n: int) -> None:
        self.n = min(self.n, max(0, n))

    ROWS_PER_STEP_ONE = False  # True: one row per step, so a step seen again starts again

    def _extend_rows(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows in log order. Where the steps go back (a run resumed from an earlier
        checkpoint logs them again), the rows from that step on are dropped first. The rows
        of one step may come in two polls, so only a step before the last one starts again
        (or the last one itself, where each step has one row)."""
        step = columns["step"]
        back = np.diff(step) <= 0 if self.ROWS_PER_STEP_ONE else np.diff(step) < 0
        bounds = [0, *(np.flatnonzero(back) + 1).tolist(), len(step)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            first = int(step[a])
            if self.n:
                last = int(self.col("step")[-1])
                if first < last or (first == last and self.ROWS_PER_STEP_ONE):
                    self.truncate(int(np.searchsorted(self.col("step"), first, side="left")))
            self._append({name: values[a:b] for name, values in columns.items()})


class StepStats(_Columns):
    """Per-step miner statistics; NaN where a step's event lacks a figure (older runs)."""

    DTYPES = {"step": np.int64, **{name: np.float64 for name in STAT_FIELDS}}
    ROWS_PER_STEP_ONE = True

    @classmethod
    def from_events(cls, records: list[dict]) -> StepStats:
        stats = cls()
        steps = [r for r in records if r.get("event") == "step" and _is_int(r.get("step"))]
        if steps:
            stats._append({"step": np.array([r["step"] for r in steps], np.int64),
                           **{name: np.array([_number(r.get(name)) for r in steps], np.float64)
                              for name in STAT_FIELDS}})
        return stats

    def extend(self, other: StepStats) -> None:
        if len(other):
            self._extend_rows({name: other.col(name) for name in self.DTYPES})


class TripletColumns(_Columns):
    """Logged triplets as columns. Names (sequences, cameras, mining) are codes into `names`."""

    DTYPES = {
        "step": np.int64, "d_ap": np.float64, "d_an": np.float64, "margin": np.float64,
        "mining": np.int32,
        "pose": np.float64,  # anchor-negative ground-truth pose distance; NaN until known
        **{f"{role[0]}_{part}": dtype for role in ROLES
           for part, dtype in (("seq", np.int32), ("cam", np.int32), ("camname", np.int32),
                               ("frame", np.int64))},
    }

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        found = self._codes.get(name)
        if found is None:
            found = self._codes[name] = len(self.names)
            self.names.append(name)
        return found

    def extend(self, other: TripletColumns) -> None:
        """Append `other`'s rows (a chunk from a poll), dropping rows of the steps it logs again."""
        if not len(other):
            return
        remap = np.array([self.code(name) for name in other.names] or [0], np.int32)
        coded = {"mining"} | {f"{r[0]}_{p}" for r in ROLES for p in ("seq", "camname")}
        self._extend_rows({name: remap[other.col(name)] if name in coded else other.col(name)
                           for name in self.DTYPES})

    # -- derived --------------------------------------------------------------------------------
    def violation(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """d_ap - d_an + margin (of `rows`): > 0 means the triplet violates the margin."""
        return self.col("d_ap")[rows] - self.col("d_an")[rows] + self.col("margin")[rows]

    def dt(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Negative frame minus anchor frame (of `rows`); NaN when the negative is of another
        sequence."""
        same = self.col("a_seq")[rows] == self.col("n_seq")[rows]
        frames = self.col("n_frame")[rows] - self.col("a_frame")[rows]
        return np.where(same, frames.astype(np.float64), np.nan)

    def ref(self, row: int, role: str) -> FrameRef:
        """(sequence, camera, camera index, frame) of the anchor, positive or negative of a row."""
        r = role[0]
        return FrameRef(self.names[int(self.col(f"{r}_seq")[row])],
                        self.names[int(self.col(f"{r}_camname")[row])],
                        int(self.col(f"{r}_cam")[row]), int(self.col(f"{r}_frame")[row]))


@dataclass(frozen=True)
class FrameRef:
    """One crop a triplet names: camera_index is -1 when the log does not say."""

    sequence: str
    camera: str
    camera_index: int
    frame: int


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> float:
    """A logged number; null (a non-finite value) and absent become NaN."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else float("nan")


def parse_triplets(
    records: list[dict], starts: list[int], path: str | os.PathLike[str]
) -> tuple[TripletColumns, UserInputError | None]:
    """Columns of the records up to the first one the inspector cannot use, and the one-line
    error naming that record's byte and field (None when all are usable)."""
    out = TripletColumns()
    rows: dict[str, list] = {name: [] for name in TripletColumns.DTYPES}
    error = None
    for record, at in zip(records, starts):
        try:
            row = _triplet_row(record, out)
        except KeyError as exc:
            error = UserInputError(path, f"triplet record at byte {at} has no usable "
                                   f"{exc.args[0]} (not a log of this trainer's format)")
            break
        for name, value in row.items():
            rows[name].append(value)
    if rows["step"]:
        out._append({name: np.array(values, TripletColumns.DTYPES[name])
                     for name, values in rows.items()})
    return out, error


def _triplet_row(record: dict, names: TripletColumns) -> dict[str, object]:
    """One record as column values; KeyError(field) names what is missing or malformed."""
    if not _is_int(record.get("step")):
        raise KeyError("'step'")
    row: dict[str, object] = {"step": record["step"]}
    for role in ROLES:
        ref = record.get(role)
        if not isinstance(ref, dict):
            raise KeyError(f"'{role}'")
        seq, frame, cam = ref.get("sequence"), ref.get("frame"), ref.get("camera")
        if not isinstance(seq, str) or not _is_int(frame):
            raise KeyError(f"'{role}.sequence' or '{role}.frame'")
        index = ref.get("camera_index")
        r = role[0]
        row[f"{r}_seq"] = names.code(seq)
        row[f"{r}_frame"] = frame
        row[f"{r}_cam"] = index if _is_int(index) else -1
        row[f"{r}_camname"] = names.code(str(cam) if cam is not None else "?")
    d_ap, d_an = _number(record.get("d_ap")), _number(record.get("d_an"))
    if "d_ap" not in record or "d_an" not in record:
        raise KeyError("'d_ap' or 'd_an'")
    margin = _number(record.get("margin"))
    if np.isnan(margin):  # older records: the margin follows from the violation
        margin = _number(record.get("violation")) - d_ap + d_an
    mining = names.code(str(record.get("mining") or ""))
    row.update(d_ap=d_ap, d_an=d_an, margin=margin, mining=mining, pose=float("nan"))
    return row


# -- following a run ----------------------------------------------------------------------------
class _LogCursor:
    """Where the reading of one log stands; it stops for good at damage (until it is replaced)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.identity: tuple[int, int] | None = None
        self.error: str | None = None

    def read(self, max_bytes: int) -> tuple[list[dict], list[int], bool, bool]:
        """(records, their byte offsets, reset: read again from the start, more left to read)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], [], False, False  # not written yet (a run without metric loss has none)
        reset = False
        identity = (st.st_dev, st.st_ino)
        if self.identity is not None and (identity != self.identity or st.st_size < self.offset):
            self.offset, self.error, reset = 0, None, True
        self.identity = identity
        if self.error is not None:
            return [], [], reset, False
        try:
            tail = follow_records(self.path, self.offset, max_bytes)
        except OSError as exc:
            self.error = str(UserInputError(self.path, f"cannot read ({exc.strerror or exc})"))
            return [], [], reset, False
        self.offset = tail.offset
        if tail.damage is not None:
            self.error = str(tail.damage)
        more = tail.damage is None and tail.offset < st.st_size and bool(tail.records)
        return tail.records, tail.starts, reset, more

    def stop_at(self, offset: int, error: UserInputError) -> None:
        self.offset, self.error = offset, str(error)


@dataclass
class RunChunk:
    """What one poll read: new statistics and triplets, the latest start and status events."""

    stats: StepStats = field(default_factory=StepStats)
    triplets: TripletColumns = field(default_factory=TripletColumns)
    start: dict | None = None
    status: dict | None = None
    reset_events: bool = False
    reset_triplets: bool = False
    errors: list[str] = field(default_factory=list)  # new one-line errors
    more: bool = False  # a poll limit was hit: poll again at once


class RunFollower:
    """Reads what a run folder's logs gained since the last poll (call it from one thread)."""

    def __init__(self, run_dir: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES) -> None:
        self.run_dir = Path(run_dir)
        self.chunk_bytes = int(chunk_bytes)
        self.events = _LogCursor(self.run_dir / EVENTS_FILE)
        self.triplets = _LogCursor(self.run_dir / TRIPLETS_FILE)

    def poll(self) -> RunChunk:
        chunk = RunChunk()
        had = (self.events.error, self.triplets.error)
        records, _starts, chunk.reset_events, more_events = self.events.read(self.chunk_bytes)
        chunk.stats = StepStats.from_events(records)
        for record in records:
            if record.get("event") == "start":
                chunk.start = record
            elif record.get("event") == "status":
                chunk.status = record
        records, starts, chunk.reset_triplets, more_triplets = self.triplets.read(
            self.chunk_bytes)
        chunk.triplets, error = parse_triplets(records, starts, self.triplets.path)
        if error is not None:
            self.triplets.stop_at(starts[len(chunk.triplets)], error)
            more_triplets = False
        chunk.more = more_events or more_triplets
        chunk.errors = [e for e, old in zip((self.events.error, self.triplets.error), had)
                        if e is not None and e != old]
        return chunk


@dataclass
class RunData:
    """Everything read of one run so far (owned by one thread: the panel's)."""

    run_dir: Path
    stats: StepStats = field(default_factory=StepStats)
    triplets: TripletColumns = field(default_factory=TripletColumns)
    start: dict | None = None
    status: dict | None = None
    errors: list[str] = field(default_factory=list)

    def apply(self, chunk: RunChunk) -> bool:
        """Add a poll's chunk; True when rows already shown changed (a reset or a resumed run
        dropped some), False when rows were only appended."""
        if chunk.reset_events:
            self.stats, self.start, self.status = StepStats(), None, None
        before = len(self.triplets)
        if chunk.reset_triplets:
            self.triplets = TripletColumns()
        self.stats.extend(chunk.stats)
        self.triplets.extend(chunk.triplets)
        self.start = chunk.start or self.start
        self.status = chunk.status or self.status
        self.errors.extend(chunk.errors)
        kept = len(self.triplets) - len(chunk.triplets)
        return chunk.reset_triplets or kept < before

    @property
    def config(self) -> dict:
        """The training settings of the run's (latest) start event; {} before it is read."""
        config = (self.start or {}).get("config")
        return config if isinstance(config, dict) else {}

    def data_folder(self) -> Path | None:
        """The dataset the run trained on, resolved as the trainer saw it (relative paths from
        the folder the trainer ran in), or None when the run names none that exists."""
        return resolve_run_path(self.run_dir, (self.start or {}).get("run_dir"),
                                self.config.get("data"))

    def cache_folder(self) -> Path | None:
        """The run's crop caches (its cache_dir, else <data>/cache)."""
        given = resolve_run_path(self.run_dir, (self.start or {}).get("run_dir"),
                                 self.config.get("cache_dir"))
        data = self.data_folder()
        return given or (data / "cache" if data is not None else None)


def resolve_run_path(run_dir: Path, recorded_run_dir: object, value: object) -> Path | None:
    """A path from a run's config as the trainer meant it, or None (unset or not found).

    A relative path was relative to the trainer's working folder, which the recorded run_dir
    (e.g. "runs/r1", relative to the same folder) locates above the run folder found now; the
    run's parent folders and the current folder are tried after it."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    if path.is_absolute():
        return path if path.exists() else None
    here = Path(run_dir).resolve()
    candidates = []
    recorded = Path(recorded_run_dir) if isinstance(recorded_run_dir, str) else None
    if recorded is not None and not recorded.is_absolute() and len(recorded.parts) <= len(
            here.parents):
        candidates.append(here.parents[len(recorded.parts) - 1] / path)
    candidates += [parent / path for parent in here.parents[:3]] + [Path.cwd() / path]
    return next((c for c in candidates if c.exists()), None)


def newest_run(folder: str | os.PathLike[str]) -> Path | None:
    """The run with the newest event log among `folder`'s runs (a project or a runs/ folder, or
    a run folder itself), or None."""
    folder = Path(folder)
    if (folder / EVENTS_FILE).is_file() or (folder / TRIPLETS_FILE).is_file():
        return folder
    runs = folder / "runs" if (folder / "runs").is_dir() else folder
    found = [p.parent for p in runs.glob(f"*/{EVENTS_FILE}")]
    return max(found, key=lambda p: (p / EVENTS_FILE).stat().st_mtime, default=None)


def find_run(folder: str | os.PathLike[str]) -> Path:
    """A run folder itself, or the newest run of a project or runs/ folder; UserInputError in
    one line when there is none."""
    if not Path(folder).is_dir():
        raise UserInputError(folder, "no such folder")
    run = newest_run(folder)
    if run is None:
        raise UserInputError(folder, f"no training run here (no {EVENTS_FILE} or "
                             f"{TRIPLETS_FILE}, nor runs/<id>/ holding one)")
    return run


# -- the table's order --------------------------------------------------------------------------
class TripletView:
    """The table's rows: indices of the triplets with lo <= step <= hi (None: open), sorted by
    `key`: step, d_ap, d_an, violation, dt (by |dt|), pose (the anchor-negative ground-truth
    pose distance), or anchor / positive / negative (by
    sequence name, camera, frame). Ties keep log order; rows without a value (dt of a negative
    from another sequence, a null distance) come last in either direction.

    Triplets appended to the log are merged in (`add`): only the new ones are sorted, so a poll
    of a live million-row log costs milliseconds where a full sort would cost a third of a
    second (the name orders re-sort all, as a new name can move every rank).
    """

    def __init__(self, key: str = "step", descending: bool = False,
                 steps: tuple[int | None, int | None] = (None, None)) -> None:
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}, expected one of {SORT_KEYS}")
        self.key, self.descending, self.steps = key, bool(descending), steps
        self.order = np.empty(0, np.int64)
        self._sorted = np.empty(0, np.float64)  # the order's sort values, ascending

    def copy(self) -> TripletView:
        """The same view, to merge into while the original is still shown (arrays are never
        changed in place, so they are shared)."""
        view = TripletView(self.key, self.descending, self.steps)
        view.order, view._sorted = self.order, self._sorted
        return view

    def rebuild(self, triplets: TripletColumns) -> np.ndarray:
        """Order every triplet afresh; returns the order."""
        rows = self._kept(triplets, 0)
        if self.key in ROLES:
            self.order = rows[_role_order(triplets, self.key[0], rows, self.descending)]
            self._sorted = np.empty(0, np.float64)
            return self.order
        values = self._values(triplets, rows)
        ordered = np.argsort(values, kind="stable")
        self.order, self._sorted = rows[ordered], values[ordered]
        return self.order

    def add(self, triplets: TripletColumns, start: int) -> np.ndarray:
        """Merge triplets start.. (just appended) into the order; returns where each new row
        went in the new order (all >= the old length: they were appended at the end)."""
        if self.key in ROLES:
            old = set(self.order.tolist())
            self.rebuild(triplets)
            return np.flatnonzero([i not in old for i in self.order.tolist()])
        rows = self._kept(triplets, start)
        values = self._values(triplets, rows)
        ordered = np.argsort(values, kind="stable")
        rows, values = rows[ordered], values[ordered]
        at = np.searchsorted(self._sorted, values, side="right")  # after equal, older rows
        self.order = np.insert(self.order, at, rows)
        self._sorted = np.insert(self._sorted, at, values)
        return at + np.arange(len(at))

    def _kept(self, triplets: TripletColumns, start: int) -> np.ndarray:
        step = triplets.col("step")[start:]
        keep = np.ones(len(step), bool)
        lo, hi = self.steps
        if lo is not None:
            keep &= step >= lo
        if hi is not None:
            keep &= step <= hi
        return np.flatnonzero(keep) + start

    def _values(self, t: TripletColumns, rows: np.ndarray) -> np.ndarray:
        """Values whose ascending order is the wanted order: negated when descending, missing
        ones (NaN) as +inf."""
        values = {"step": lambda: t.col("step")[rows].astype(np.float64),
                  "d_ap": lambda: t.col("d_ap")[rows], "d_an": lambda: t.col("d_an")[rows],
                  "violation": lambda: t.violation(rows),
                  "dt": lambda: np.abs(t.dt(rows)),
                  "pose": lambda: t.col("pose")[rows]}[self.key]()
        values = -values if self.descending else values.copy()
        values[np.isnan(values)] = np.inf
        return values


def triplet_order(
    triplets: TripletColumns, key: str = "step", descending: bool = False,
    steps: tuple[int | None, int | None] = (None, None),
) -> np.ndarray:
    """Row indices of the triplets in steps lo..hi sorted by `key` (see TripletView)."""
    return TripletView(key, descending, steps).rebuild(triplets)


def _role_order(t: TripletColumns, r: str, rows: np.ndarray, descending: bool) -> np.ndarray:
    rank = np.empty(max(1, len(t.names)), np.int64)
    rank[np.argsort(np.array(t.names or [""]), kind="stable")] = np.arange(len(rank))
    parts = [rank[t.col(f"{r}_seq")[rows]], rank[t.col(f"{r}_camname")[rows]],
             t.col(f"{r}_frame")[rows]]
    if descending:
        parts = [-p for p in parts]
    return np.lexsort(parts[::-1])
