"""The label store: a project's hand-made (and imported) labels in one SQLite file, never lost.

`labels.sqlite` in the project folder holds one row per labelled (sequence, frame): the 2D
joints in each camera with their visibility, the 3D joints, where every joint came from
(clicked, triangulated, model, detector, imported), each view's reprojection error, who made
the last edit and when, and the store revision that edit produced.

What it guarantees:

- Every edit (`put`, `delete`) is one committed transaction (WAL journal, synchronous=FULL):
  a process killed at any moment (SIGKILL) loses at most the edit in progress, and the file
  reopens with every committed label.
- A store revision that increases with every edit: a training run records the revision it read.
- Opening checks before anything is written: a file that is not SQLite, an SQLite file that is
  not ours (application_id), a newer schema than this code knows, or a failed integrity check
  each raise one UserInputError naming the file, and the file is left byte for byte as it was.
- An older schema is migrated, after a backup copy of the file is written beside it.
- One writer per store: the writer holds an exclusive lock on `labels.sqlite.lock` (released by
  the kernel when the process dies, so a killed Studio never leaves a stale lock); a second
  opener gets the store read-only, with `read_only_reason` saying why, and writes raise.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import UserInputError
from .joints import NUM_JOINTS

LABELS_FILE = "labels.sqlite"
APPLICATION_ID = 0x4D435353  # "MCSS": marks an SQLite file as our label store
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"

# where a joint came from; the index is what the store keeps
SOURCES: tuple[str, ...] = ("", "clicked", "triangulated", "model", "detector", "imported")
# a joint in one view: not labelled, seen there, or marked hidden there by the user
NOT_LABELLED, VISIBLE, OCCLUDED = 0, 1, 2

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE frames (
    sequence TEXT NOT NULL,
    frame INTEGER NOT NULL,
    subject TEXT NOT NULL,
    cameras TEXT NOT NULL,        -- camera names, one per line, in the order of the arrays
    joints INTEGER NOT NULL,
    points2d BLOB NOT NULL,       -- float64 (C, J, 2) native pixels, NaN = none
    visibility BLOB NOT NULL,     -- uint8 (C, J): 0 not labelled, 1 visible, 2 occluded
    source2d BLOB NOT NULL,       -- uint8 (C, J) index into SOURCES
    joints3d BLOB NOT NULL,       -- float64 (J, 3) mm world, NaN = none
    source3d BLOB NOT NULL,       -- uint8 (J,)
    error2d BLOB NOT NULL,        -- float64 (C, J) px reprojection error per view, NaN = none
    author TEXT NOT NULL,
    modified REAL NOT NULL,       -- seconds since the epoch
    revision INTEGER NOT NULL,    -- the store revision this row was written at
    PRIMARY KEY (sequence, frame)
);
"""

# schema version n -> the function that turns a version-n store into version n + 1 (inside
# one transaction, after the file was backed up). Version 1 is the first one released.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


@dataclass
class FrameLabel:
    """The labels of one synchronised frame of one sequence; arrays in `cameras` order."""

    sequence: str
    frame: int
    cameras: tuple[str, ...]
    points2d: np.ndarray  # (C, J, 2) float64 px, NaN = not placed
    visibility: np.ndarray  # (C, J) uint8 NOT_LABELLED / VISIBLE / OCCLUDED
    source2d: np.ndarray  # (C, J) uint8 index into SOURCES
    joints3d: np.ndarray  # (J, 3) float64 mm, NaN = none
    source3d: np.ndarray  # (J,) uint8
    error2d: np.ndarray  # (C, J) float64 px, NaN = none
    subject: str = ""
    author: str = ""
    modified: float = 0.0
    revision: int = 0
    extra: dict = field(default_factory=dict, compare=False)  # not stored (e.g. outliers)

    @classmethod
    def empty(cls, sequence: str, frame: int, cameras: list[str] | tuple[str, ...],
              subject: str = "", joints: int = NUM_JOINTS) -> FrameLabel:
        c = len(cameras)
        return cls(sequence, int(frame), tuple(cameras),
                   np.full((c, joints, 2), np.nan), np.zeros((c, joints), np.uint8),
                   np.zeros((c, joints), np.uint8), np.full((joints, 3), np.nan),
                   np.zeros(joints, np.uint8), np.full((c, joints), np.nan), subject)

    @property
    def num_joints(self) -> int:
        return int(self.joints3d.shape[0])

    def copy(self) -> FrameLabel:
        return replace(self, points2d=self.points2d.copy(), visibility=self.visibility.copy(),
                       source2d=self.source2d.copy(), joints3d=self.joints3d.copy(),
                       source3d=self.source3d.copy(), error2d=self.error2d.copy(),
                       extra=dict(self.extra))

    def same_content(self, other: FrameLabel | None) -> bool:
        """Equal labels (positions bit for bit, NaN equal to NaN), whoever made them when."""
        if other is None:
            return False
        arrays = ("points2d", "visibility", "source2d", "joints3d", "source3d", "error2d")
        return (self.sequence, self.frame, self.cameras, self.subject) == (
            other.sequence, other.frame, other.cameras, other.subject) and all(
            np.array_equal(getattr(self, a), getattr(other, a), equal_nan=a in (
                "points2d", "joints3d", "error2d")) for a in arrays)

    @property
    def is_empty(self) -> bool:
        return not (self.visibility.any() or np.isfinite(self.joints3d).any())

    @property
    def has_3d(self) -> bool:
        return bool(np.isfinite(self.joints3d).all())


@dataclass(frozen=True)
class StoreSummary:
    """What a training run would read from a store now: its revision, labelled frames and the
    usable ones (every joint in 3D; the others are left out by the trainer)."""

    path: Path
    revision: int
    frames: int
    usable: int


def default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return str(os.getuid())


class LabelStore:
    """One project's labels; `open` it, `get`/`put`/`delete` frames, `close` it."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int | None,
                 read_only_reason: str, author: str) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self.read_only_reason = read_only_reason  # "" when writable
        self.author = author

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], read_only: bool = False,
             create: bool = True, author: str | None = None) -> LabelStore:
        """Open (or create) the store at `path` (a file, or a project folder).

        Raises UserInputError for a file that is not a label store, is damaged or is newer than
        this code; such a file is not changed. Writable unless `read_only`, the folder refuses
        writes, or another process holds the store: then `read_only_reason` says why.
        """
        path = Path(path)
        if path.is_dir():
            path = path / LABELS_FILE
        author = author or default_author()
        exists = path.exists()
        if exists:
            _check_header(path)
        elif read_only or not create:
            raise UserInputError(path, "no label store here")
        if not exists:
            lock_fd, reason = _take_lock(path)
            if reason:
                raise UserInputError(path, f"cannot create the label store: {reason}")
            return cls._create(path, lock_fd, author)
        conn = _connect(path, read_only=True)  # nothing is written before the checks pass
        lock_fd, reason = None, "opened read-only" if read_only else ""
        try:
            version = _check_store(path, conn)
            if not reason:
                lock_fd, reason = _take_lock(path)
            if reason and version < SCHEMA_VERSION:
                raise UserInputError(path, f"schema {version} needs an upgrade, which a "
                                           f"read-only store cannot get ({reason})")
            if not reason:
                conn.close()
                if version < SCHEMA_VERSION:
                    _migrate(path, version)
                conn = _connect(path, read_only=False)
        except BaseException:
            conn.close()
            _release(lock_fd)
            raise
        return cls(path, conn, lock_fd, reason, author)

    @classmethod
    def _create(cls, path: Path, lock_fd: int | None, author: str) -> LabelStore:
        try:
            conn = _connect(path, read_only=False)
            with conn:
                conn.executescript(_SCHEMA)
                conn.execute("INSERT INTO meta VALUES ('revision', '0')")
                conn.execute("INSERT INTO meta VALUES ('created', ?)", (repr(time.time()),))
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            _release(lock_fd)
            raise _sqlite_error(path, exc, "cannot create the label store") from None
        return cls(path, conn, lock_fd, "", author)

    @property
    def read_only(self) -> bool:
        return bool(self.read_only_reason)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        _release(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise UserInputError(self.path, "the label store is closed")
        return self._conn

    @property
    def revision(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return int(row[0])

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0])

    def keys(self, sequence: str | None = None) -> list[tuple[str, int]]:
        """(sequence, frame) of every labelled frame (of one sequence), sorted."""
        sql, args = "SELECT sequence, frame FROM frames", ()
        if sequence is not None:
            sql, args = sql + " WHERE sequence = ?", (sequence,)
        return [(s, int(f)) for s, f in self.conn.execute(sql + " ORDER BY sequence, frame",
                                                          args)]

    def get(self, sequence: str, frame: int) -> FrameLabel | None:
        row = self.conn.execute("SELECT * FROM frames WHERE sequence = ? AND frame = ?",
                                (sequence, int(frame))).fetchone()
        return None if row is None else self._decode(row)

    def labels(self, sequence: str | None = None, subject: str | None = None
               ) -> Iterator[FrameLabel]:
        """Every stored label (of one sequence and/or subject), by sequence and frame."""
        where, args = [], []
        if sequence is not None:
            where.append("sequence = ?")
            args.append(sequence)
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        sql = "SELECT * FROM frames" + (" WHERE " + " AND ".join(where) if where else "")
        for row in self.conn.execute(sql + " ORDER BY sequence, frame", args):
            yield self._decode(row)

    def snapshot(self, sequence: str | None = None) -> tuple[int, list[FrameLabel]]:
        """(revision, labels) read in one transaction: the labels are exactly that revision's,
        even while another process keeps editing (what a training run records)."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            return self.revision, list(self.labels(sequence))
        finally:
            conn.execute("COMMIT")

    def subject_joints3d(self, subject: str, exclude: tuple[str, int] | None = None
                         ) -> np.ndarray:
        """(N, J, 3) 3D joints of the subject's labelled frames (but `exclude`), NaN where a
        joint has none: the reference of the bone-length check. Reads one column only."""
        rows = self.conn.execute("SELECT sequence, frame, joints, joints3d FROM frames WHERE "
                                 "subject = ?", (subject,)).fetchall()
        out = [np.frombuffer(blob, np.float64).reshape(int(j), 3) for s, f, j, blob in rows
               if (s, int(f)) != exclude and len(blob) == int(j) * 24]
        return np.stack(out) if out else np.zeros((0, NUM_JOINTS, 3))

    def training_summary(self) -> StoreSummary:
        """Revision, labelled frames and usable frames (all joints in 3D: what
        `mcss-train fit --labels` trains on), read in one transaction so the counts are exactly
        that revision's. Reads the 3D column only."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            revision = self.revision
            rows = conn.execute("SELECT joints, joints3d FROM frames").fetchall()
        finally:
            conn.execute("COMMIT")
        usable = sum(len(blob) == int(j) * 24 and bool(np.isfinite(
            np.frombuffer(blob, np.float64)).all()) for j, blob in rows)
        return StoreSummary(self.path, revision, len(rows), usable)

    def info(self) -> dict:
        """What `mcss-data labels info` prints: counts per sequence, revision, schema."""
        rows = self.conn.execute(
            "SELECT sequence, COUNT(*), MIN(frame), MAX(frame), MAX(modified) FROM frames "
            "GROUP BY sequence ORDER BY sequence").fetchall()
        complete = self.conn.execute("SELECT joints3d FROM frames").fetchall()
        with_3d = sum(bool(np.isfinite(np.frombuffer(r[0], np.float64)).all())
                      for r in complete)
        return {
            "path": str(self.path), "schema": SCHEMA_VERSION, "revision": self.revision,
            "frames": len(complete), "frames_with_3d": with_3d,
            "read_only": self.read_only_reason or None,
            "sequences": {s: {"frames": n, "first": lo, "last": hi, "modified": m}
                          for s, n, lo, hi, m in rows},
        }

    def _decode(self, row: tuple) -> FrameLabel:
        (sequence, frame, subject, cameras, joints, p2, vis, s2, p3, s3, err, author,
         modified, revision) = row
        names = tuple(cameras.split("\n")) if cameras else ()
        c, j = len(names), int(joints)
        try:
            return FrameLabel(
                sequence, int(frame), names,
                _array(p2, np.float64, (c, j, 2)), _array(vis, np.uint8, (c, j)),
                _array(s2, np.uint8, (c, j)), _array(p3, np.float64, (j, 3)),
                _array(s3, np.uint8, (j,)), _array(err, np.float64, (c, j)),
                subject, author, float(modified), int(revision))
        except ValueError as exc:
            raise UserInputError(self.path, f"label of {sequence} frame {frame} is damaged "
                                            f"({exc})") from None

    # -- writing ------------------------------------------------------------------------------
    def _writable(self) -> sqlite3.Connection:
        if self.read_only:
            raise UserInputError(self.path, f"the label store is read-only: "
                                            f"{self.read_only_reason}")
        return self.conn

    def _next_revision(self, conn: sqlite3.Connection) -> int:
        revision = self.revision + 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (str(revision),))
        return revision

    def put(self, label: FrameLabel) -> FrameLabel:
        """Store `label` (replacing that frame's) in one transaction; the stored label, with
        author, time and the new store revision, is returned. An empty label deletes."""
        if label.is_empty:
            self.delete(label.sequence, label.frame)
            return label
        _validate(self.path, label)
        conn = self._writable()
        try:
            with conn:
                revision = self._next_revision(conn)
                stored = replace(label.copy(), author=self.author, modified=time.time(),
                                 revision=revision)
                conn.execute("INSERT OR REPLACE INTO frames VALUES "
                             "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _encode(stored))
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc, "cannot save the label") from None
        return stored

    def put_many(self, labels: list[FrameLabel]) -> int:
        """Store many labels in one transaction (imports); the new revision."""
        for label in labels:
            _validate(self.path, label)
        conn = self._writable()
        try:
            with conn:
                revision = self._next_revision(conn)
                now = time.time()
                conn.executemany(
                    "INSERT OR REPLACE INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "?, ?)", (_encode(replace(lab, author=self.author, modified=now,
                                              revision=revision)) for lab in labels))
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc, "cannot save the labels") from None
        return revision

    def delete(self, sequence: str, frame: int) -> int:
        """Remove one frame's labels (one transaction); the new revision."""
        conn = self._writable()
        try:
            with conn:
                revision = self._next_revision(conn)
                conn.execute("DELETE FROM frames WHERE sequence = ? AND frame = ?",
                             (sequence, int(frame)))
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc, "cannot delete the label") from None
        return revision


# ------------------------------------------------------------------------------ encoding


def _array(blob: bytes, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.frombuffer(blob, dtype)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{arr.size} values where {int(np.prod(shape))} belong")
    return arr.reshape(shape).copy()


def _encode(label: FrameLabel) -> tuple:
    return (label.sequence, int(label.frame), label.subject, "\n".join(label.cameras),
            label.num_joints,
            np.ascontiguousarray(label.points2d, np.float64).tobytes(),
            np.ascontiguousarray(label.visibility, np.uint8).tobytes(),
            np.ascontiguousarray(label.source2d, np.uint8).tobytes(),
            np.ascontiguousarray(label.joints3d, np.float64).tobytes(),
            np.ascontiguousarray(label.source3d, np.uint8).tobytes(),
            np.ascontiguousarray(label.error2d, np.float64).tobytes(),
            label.author, float(label.modified), int(label.revision))


def _validate(path: Path, label: FrameLabel) -> None:
    """Shapes and codes that the store can keep and read back (a bug here is ours, but a bad
    import file reaches this too, so it is a user error naming the frame)."""
    c, j = len(label.cameras), label.num_joints
    shapes = {"points2d": (c, j, 2), "visibility": (c, j), "source2d": (c, j),
              "joints3d": (j, 3), "source3d": (j,), "error2d": (c, j)}
    where = f"label of {label.sequence} frame {label.frame}"
    for name, shape in shapes.items():
        if np.shape(getattr(label, name)) != shape:
            raise UserInputError(path, f"{where}: {name} has shape "
                                       f"{list(np.shape(getattr(label, name)))}, expected "
                                       f"{list(shape)}")
    if any("\n" in cam or not cam for cam in label.cameras):
        raise UserInputError(path, f"{where}: camera names must be non-empty single lines")
    if label.frame < 0:
        raise UserInputError(path, f"{where}: negative frame")
    if np.any(label.visibility > OCCLUDED) or np.any(label.source2d >= len(SOURCES)) or \
            np.any(label.source3d >= len(SOURCES)):
        raise UserInputError(path, f"{where}: unknown visibility or source code")


# ------------------------------------------------------------------------------ opening checks


def _check_header(path: Path) -> None:
    """A file that is not SQLite at all: reported before SQLite is let near it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise UserInputError(path, f"cannot read the label store ({exc.strerror})") from None
    if head != SQLITE_MAGIC:
        what = "is empty" if not head else "is not an SQLite database"
        raise UserInputError(path, f"{what}, so not a label store; left unchanged (move it "
                                   f"away to start a new store)")


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    try:
        if read_only:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                   isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk when put returns
        conn.execute("PRAGMA busy_timeout = 5000")
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc, "cannot open the label store") from None
    # explicit transactions: `with conn` commits or rolls back what BEGIN started
    conn.isolation_level = "DEFERRED"
    return conn


def _check_store(path: Path, conn: sqlite3.Connection) -> int:
    """Ours, not newer, not damaged: the schema version; else a UserInputError."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise UserInputError(path, f"an SQLite database of another program (application "
                                       f"id {app_id:#x}), not a label store; left unchanged")
        if version > SCHEMA_VERSION:
            raise UserInputError(path, f"written by a newer MCSS Studio (label schema "
                                       f"{version}; this one reads up to {SCHEMA_VERSION}); "
                                       f"left unchanged, update MCSS Studio to open it")
        if version < 1:
            raise UserInputError(path, f"unknown label schema {version}; left unchanged")
        problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise _sqlite_error(path, exc, "damaged label store") from None
    if problems != ["ok"]:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise UserInputError(path, f"damaged label store (integrity check: {problems[0]}{more}); "
                                   f"left unchanged, restore a backup")
    return int(version)


def backup_path(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.schema{version}.bak")


def _migrate(path: Path, version: int) -> None:
    """Back the store up beside itself, then bring it to SCHEMA_VERSION in one transaction."""
    backup = backup_path(path, version)
    source = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        tmp = backup.with_name(backup.name + ".tmp")
        tmp.unlink(missing_ok=True)
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)  # a consistent copy, WAL content included
        finally:
            target.close()
        os.replace(tmp, backup)
    except (OSError, sqlite3.Error) as exc:
        raise UserInputError(path, f"cannot back up the store before upgrading it ({exc}); "
                                   f"left unchanged") from None
    finally:
        source.close()
    conn = _connect(path, read_only=False)
    try:
        with conn:
            for v in range(version, SCHEMA_VERSION):
                if v not in MIGRATIONS:
                    raise UserInputError(path, f"no upgrade from label schema {v}")
                MIGRATIONS[v](conn)
                conn.execute(f"PRAGMA user_version = {v + 1}")
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc, f"upgrade failed (backup in {backup.name})") from None
    finally:
        conn.close()


def _sqlite_error(path: Path, exc: sqlite3.Error, what: str) -> UserInputError:
    text = str(exc)
    if "disk is full" in text or "database or disk is full" in text:
        text = "the disk is full; free space on it"
    elif "readonly" in text or "read-only" in text:
        text = "the file or its folder is read-only"
    elif "not a database" in text or "malformed" in text:
        text = f"{text}; left unchanged, restore a backup"
    return UserInputError(path, f"{what}: {text}")


# ------------------------------------------------------------------------------ one writer


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _take_lock(path: Path) -> tuple[int | None, str]:
    """(fd holding the exclusive lock, "") or (None, why the store must be read-only)."""
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return None, "the project folder is read-only"
        raise UserInputError(lock, f"cannot open the lock file ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        return None, f"{holder} has it open for writing"
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"MCSS Studio (pid {os.getpid()} on {os.uname().nodename})".encode(), 0)
    return fd, ""


def _release(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)  # closing the descriptor releases the flock
        except OSError:
            pass

