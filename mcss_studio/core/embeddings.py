"""The embedding index in memory: one row per (sequence, camera, frame) crop, exact k-nearest-
neighbour queries with the filters of cross-view retrieval, and a 2D projection for the map.

Rows are laid out sequence by sequence, camera by camera, frame by frame: row = first row of the
sequence + camera * frames + frame. So a sequence, and one camera's frames of it, are contiguous
slices, and the filters "same sequence" and "|dt| < tau in the same sequence" are slice writes,
never a scan.

Queries are exact. The exact scan: one matrix-vector product over the rows in question (the
matrix is used in place, read-only, often a memory map; never copied per query), the filters
written into the score vector as +-inf, then np.argpartition for the k best. With
`enable_fast_search` (faiss-cpu installed, at least FAST_MIN_ROWS rows), a nearest-first query
over more than one sequence first scans an int8 copy (or a float16 one) for CANDIDATES rows
(core/knn.py), filters and re-ranks them in float32 with the same formula, and keeps the answer
only when the k-th squared distance is provably below that of every row not scanned in; else it
scans once more for RETRY_CANDIDATES rows, and then runs the exact scan. So both give the same
rows. benchmarks/bench_embeddings.py measures the float32 scan, the float16 and the int8 copies
side by side on 1,000,000 x 128 embeddings; see the README. Distances are Euclidean, as the
trainer ranks: the score q.e - |e|^2 / 2 orders rows like -|q - e|^2.
No Qt; a query reads shared arrays only, so any thread may run one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import knn
from .geometry import paired_pose_distance, procrustes_align

SCOPES = ("any", "same", "other")
FAST_MIN_ROWS = 100_000  # below this the exact scan takes a few ms: no compact copy is made
CANDIDATES = 256  # rows the compact copy's scan returns per query (at least 8 k)
RETRY_CANDIDATES = 4096  # the second scan's, when the first cannot prove its answer


@dataclass(frozen=True)
class NeighbourFilter:
    """Which rows a query may return besides itself (the query row never comes back).

    other_cameras: only rows of another camera than the query's.
    min_dt: exclude rows of the query's sequence with |frame - query frame| < min_dt (0: none).
    sequence / subject: "any", "same" (as the query's) or "other". Sequences without a subject
    share the subject "unknown".
    least_similar: the k farthest rows instead of the k nearest.
    """

    other_cameras: bool = True
    min_dt: int = 0
    sequence: str = "any"
    subject: str = "any"
    least_similar: bool = False

    def __post_init__(self) -> None:
        for name in ("sequence", "subject"):
            if getattr(self, name) not in SCOPES:
                raise ValueError(f"{name} must be one of {SCOPES}, not {getattr(self, name)!r}")
        if self.min_dt < 0:
            raise ValueError("min_dt must be >= 0")


@dataclass(frozen=True)
class SequenceInfo:
    """One sequence of the index: where its rows and ground-truth instants start."""

    name: str
    subject: str | None
    action: str | None
    frames: int
    cameras: tuple[str, ...]
    first_row: int
    first_instant: int  # into the (instants, J, 3) ground-truth array
    crops: str | None = None  # the crop-cache folder its crops were cut into
    crop_size: int = 0

    @property
    def rows(self) -> int:
        return self.frames * len(self.cameras)


@dataclass
class Neighbours:
    """The answer to one query: rows best first and their Euclidean embedding distances."""

    query: int
    rows: np.ndarray
    distances: np.ndarray
    filter: NeighbourFilter = field(default_factory=NeighbourFilter)


class EmbeddingIndex:
    """Embeddings (N, D), predicted camera-frame poses (N, J, 3) and ground truth per instant."""

    def __init__(
        self, sequences: Sequence[SequenceInfo], embeddings: np.ndarray, poses: np.ndarray,
        gt: np.ndarray | None = None, checkpoint: str = "",
    ) -> None:
        self.sequences = list(sequences)
        self.embeddings = embeddings  # used in place: a memory map when read from disk
        self.poses = poses
        n = sum(s.rows for s in self.sequences)
        if embeddings.shape[0] != n or poses.shape[0] != n:
            raise ValueError(f"{n} rows expected, embeddings {embeddings.shape}, poses "
                             f"{poses.shape}")
        self.gt = gt
        self.checkpoint = checkpoint  # digest of the checkpoint that computed it
        self._by_name = {s.name: i for i, s in enumerate(self.sequences)}
        self.seq_id, self.camera, self.frame = _row_keys(self.sequences)
        subjects = {s: i for i, s in enumerate(dict.fromkeys(q.subject for q in self.sequences))}
        self.subject_id = np.repeat(
            np.array([subjects[s.subject] for s in self.sequences], np.int32),
            [s.rows for s in self.sequences])
        self.half_norm2 = _half_norms(embeddings)
        self._projection: np.ndarray | None = None
        self._pose_errors: np.ndarray | None = None
        self._scan: knn.CandidateScan | None = None
        self.fast_answers = self.exact_answers = 0  # queries answered by each path

    # -- rows -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def sequence_index(self, name: str) -> int:
        return self._by_name[name]

    def row(self, sequence: str, camera: int, frame: int) -> int:
        """Row of a (sequence, camera, frame); KeyError when the index has no such crop."""
        s = self.sequences[self._by_name[sequence]]
        if not (0 <= camera < len(s.cameras) and 0 <= frame < s.frames):
            raise KeyError((sequence, camera, frame))
        return s.first_row + camera * s.frames + frame

    def rows_of(self, keys) -> list[int]:
        """Rows of (sequence, camera, frame) keys, skipping those the index lacks."""
        rows = []
        for key in keys:
            try:
                rows.append(self.row(*key))
            except KeyError:
                continue
        return rows

    def key(self, row: int) -> tuple[str, int, int]:
        """(sequence name, camera index, frame) of a row."""
        return (self.sequences[self.seq_id[row]].name, int(self.camera[row]),
                int(self.frame[row]))

    def info(self, row: int) -> SequenceInfo:
        return self.sequences[self.seq_id[row]]

    def instants(self, rows: np.ndarray) -> np.ndarray:
        """Index into `gt` of each row's (sequence, frame)."""
        first = np.array([s.first_instant for s in self.sequences], np.int64)
        return first[self.seq_id[rows]] + self.frame[rows]

    def gt_pose(self, row: int) -> np.ndarray | None:
        """(J, 3) ground-truth world pose of the row's instant, None without one."""
        if self.gt is None:
            return None
        s = self.info(row)
        pose = np.asarray(self.gt[s.first_instant + int(self.frame[row])], np.float64)
        return pose if np.isfinite(pose).all() else None

    # -- queries --------------------------------------------------------------------------------
    def enable_fast_search(self, kind: str = "int8", min_rows: int = FAST_MIN_ROWS) -> bool:
        """Make the compact copy for the candidate scan (core/knn.py; 1 byte per value for
        "int8", 2 for "float16", beside the matrix, built once in a second or so per million
        rows) when faiss-cpu is installed and the index has at least min_rows rows; whether
        queries now use it."""
        if self._scan is None and len(self) >= max(1, min_rows) and knn.available():
            try:
                self._scan = knn.CandidateScan(self.embeddings, kind)
            except ValueError:  # values beyond float16's range, or not finite: the exact scan
                return False
        return self._scan is not None

    def query(self, row: int, k: int = 10, filt: NeighbourFilter | None = None) -> Neighbours:
        """The k rows nearest (or farthest) to `row` that `filt` allows, best first; fewer when
        fewer are allowed."""
        filt = filt or NeighbourFilter()
        if self._scan is not None and filt.sequence != "same" and not filt.least_similar:
            for count in (max(CANDIDATES, 8 * int(k)), max(RETRY_CANDIDATES, 16 * int(k))):
                found = self._query_candidates(row, int(k), filt, count)
                if found is not None:
                    self.fast_answers += 1
                    return found
        self.exact_answers += 1
        return self._query_exact(row, k, filt)

    def _query_candidates(
        self, row: int, k: int, filt: NeighbourFilter, count: int
    ) -> Neighbours | None:
        """The answer from the compact scan's `count` candidates re-ranked in float32, or None
        when it cannot be proven exact (too few allowed candidates, or the k-th squared
        distance not below the floor of every row left out)."""
        q = np.asarray(self.embeddings[row], np.float32)
        rows, floor = self._scan.candidates(q, count)
        rows = np.sort(rows[self._allowed(rows, row, filt)])
        if k <= 0 or (len(rows) < k and floor != -np.inf):
            return None
        scores = np.asarray(self.embeddings[rows], np.float32) @ q - self.half_norm2[rows]
        best = np.argsort(-scores, kind="stable")[:k]
        d2 = 2.0 * (float(self.half_norm2[row]) - scores[best])
        if len(best) and floor != -np.inf and not float(d2[-1]) < floor:
            return None
        distances = np.sqrt(np.maximum(d2, 0.0)).astype(np.float32)
        return Neighbours(row, rows[best].astype(np.int64), distances, filt)

    def _allowed(self, rows: np.ndarray, row: int, filt: NeighbourFilter) -> np.ndarray:
        """Which of `rows` the filter allows for the query `row` (_exclude's rules, per row)."""
        ok = rows != row
        if filt.other_cameras:
            ok &= self.camera[rows] != self.camera[row]
        same_seq = self.seq_id[rows] == self.seq_id[row]
        if filt.sequence != "any":
            ok &= same_seq if filt.sequence == "same" else ~same_seq
        if filt.subject != "any":
            same = self.subject_id[rows] == self.subject_id[row]
            ok &= same if filt.subject == "same" else ~same
        if filt.min_dt > 0:
            close = np.abs(self.frame[rows].astype(np.int64) - int(self.frame[row])) < filt.min_dt
            ok &= ~(same_seq & close)
        return ok

    def _query_exact(self, row: int, k: int, filt: NeighbourFilter) -> Neighbours:
        s = self.info(row)
        lo, hi = (s.first_row, s.first_row + s.rows) if filt.sequence == "same" else (0, len(self))
        q = np.asarray(self.embeddings[row], np.float32)
        scores = np.asarray(self.embeddings[lo:hi]) @ q  # no copy of the matrix, one new vector
        scores -= self.half_norm2[lo:hi]
        worst = np.float32(np.inf if filt.least_similar else -np.inf)
        self._exclude(scores, lo, row, filt, worst)
        allowed = int(np.count_nonzero(scores != worst))
        k = min(int(k), allowed)
        if k <= 0:
            return Neighbours(row, np.zeros(0, np.int64), np.zeros(0, np.float32), filt)
        order = scores if filt.least_similar else -scores
        best = np.argpartition(order, k - 1)[:k]
        best = best[np.argsort(order[best], kind="stable")]
        d2 = 2.0 * (float(self.half_norm2[row]) - scores[best])  # |q|^2 - 2 q.e + |e|^2
        return Neighbours(row, (best + lo).astype(np.int64),
                          np.sqrt(np.maximum(d2, 0.0)).astype(np.float32), filt)

    def _exclude(
        self, scores: np.ndarray, lo: int, row: int, filt: NeighbourFilter, worst: np.float32
    ) -> None:
        """Write `worst` into the scores of rows the filter forbids (rows lo.. of the index)."""
        hi = lo + len(scores)
        s = self.info(row)
        scores[row - lo] = worst
        if filt.other_cameras:
            scores[self.camera[lo:hi] == self.camera[row]] = worst
        if filt.sequence == "other":
            scores[s.first_row - lo:s.first_row + s.rows - lo] = worst
        if filt.subject != "any":
            same = self.subject_id[lo:hi] == self.subject_id[row]
            scores[same if filt.subject == "other" else ~same] = worst
        if filt.min_dt > 0:
            t = int(self.frame[row])
            start, stop = max(0, t - filt.min_dt + 1), min(s.frames, t + filt.min_dt)
            for c in range(len(s.cameras)):
                first = s.first_row + c * s.frames - lo
                scores[first + start:first + stop] = worst

    # -- ground truth ----------------------------------------------------------------------------
    def judge(self, query: int, rows: Sequence[int], kappa: float) -> list[tuple[bool, float]]:
        """Per row: (correct by the retrieval criterion, P-MPJPE in mm) of its ground-truth pose
        against the query's; an empty list when the query has no ground truth and
        (False, nan) for a row without one."""
        ref = self.gt_pose(query)
        if ref is None:
            return []
        out: list[tuple[bool, float]] = []
        for r in rows:
            other = self.gt_pose(int(r))
            if other is None:
                out.append((False, float("nan")))
                continue
            distance = float(paired_pose_distance(ref[None], other[None])[0])
            out.append((distance <= kappa, p_mpjpe_one(other, ref)))
        return out

    # -- the map --------------------------------------------------------------------------------
    def projection(self, chunk: int = 65536) -> np.ndarray:
        """(N, 2) float32 PCA projection of the embeddings (computed once, in chunks)."""
        if self._projection is None:
            self._projection = pca_2d(self.embeddings, chunk)
        return self._projection


    def pose_errors(self, chunk: int = 8192) -> np.ndarray:
        """(N,) float32 P-MPJPE (mm) of each row's predicted pose to its instant's ground truth,
        NaN without one (computed once, in chunks)."""
        if self._pose_errors is None:
            out = np.full(len(self), np.nan, np.float32)
            for start in range(0, len(self) if self.gt is not None else 0, chunk):
                rows = np.arange(start, min(len(self), start + chunk))
                gt = np.asarray(self.gt[self.instants(rows)], np.float64)
                ok = np.isfinite(gt).all(axis=(1, 2))
                if ok.any():
                    aligned = procrustes_align(np.asarray(self.poses[rows[ok]], np.float64), gt[ok])
                    out[rows[ok]] = np.linalg.norm(aligned - gt[ok], axis=-1).mean(axis=-1)
            self._pose_errors = out
        return self._pose_errors


def p_mpjpe_one(pose: np.ndarray, ref: np.ndarray) -> float:
    """Mean per-joint distance (mm) of `pose` to `ref` after Procrustes alignment with scale."""
    ref = np.asarray(ref, np.float64)
    aligned = procrustes_align(np.asarray(pose, np.float64)[None], ref[None])
    return float(np.linalg.norm(aligned[0] - ref, axis=-1).mean())


def _row_keys(sequences: Sequence[SequenceInfo]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: sequence index (int32), camera (int16), frame (int32)."""
    parts = [[], [], []]
    for i, s in enumerate(sequences):
        parts[0].append(np.full(s.rows, i, np.int32))
        parts[1].append(np.repeat(np.arange(len(s.cameras), dtype=np.int16), s.frames))
        parts[2].append(np.tile(np.arange(s.frames, dtype=np.int32), len(s.cameras)))
    if not sequences:
        return np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int32)
    return tuple(np.concatenate(p) for p in parts)  # type: ignore[return-value]


def _half_norms(embeddings: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """|e|^2 / 2 per row, float32, read in chunks (the matrix may be a memory map)."""
    out = np.empty(len(embeddings), np.float32)
    for start in range(0, len(embeddings), chunk):
        e = np.asarray(embeddings[start:start + chunk], np.float32)
        out[start:start + len(e)] = 0.5 * np.einsum("nd,nd->n", e, e)
    return out


def points_in_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: which points (N, 2) lie inside the closed polygon (M, 2), by the even-odd
    rule (a lasso that crosses itself leaves its doubly-enclosed part out, as drawing tools do).
    Vectorised over the points, one pass per edge, after a bounding-box cut: a 200-vertex lasso
    over 100,000 points takes milliseconds."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    inside = np.zeros(len(xy), bool)
    if len(poly) < 3 or not len(xy):
        return inside
    lo, hi = poly.min(0), poly.max(0)
    near = np.flatnonzero(((xy >= lo) & (xy <= hi)).all(axis=1))
    px, py = xy[near, 0], xy[near, 1]
    odd = np.zeros(len(near), bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0)):
        if y1 == y2:
            continue  # a horizontal edge crosses no horizontal ray
        crosses = (y1 > py) != (y2 > py)
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        odd ^= crosses & (px < x_at)
    inside[near] = odd
    return inside


def pca_2d(x: np.ndarray, chunk: int = 65536, sample: int = 50_000) -> np.ndarray:
    """(N, 2) float32 coordinates on the two principal axes of the rows of x.

    The axes come from the covariance of at most `sample` evenly spread rows (two axes of a
    128-d cloud are settled long before a million rows), then every row is projected in float32
    chunks: nothing of x's size is allocated besides the output.
    """
    n, d = x.shape
    if n == 0:
        return np.zeros((0, 2), np.float32)
    picked = np.unique(np.linspace(0, n - 1, min(n, sample)).round().astype(np.int64))
    total = np.zeros(d)
    scatter = np.zeros((d, d))
    for start in range(0, len(picked), chunk):
        e = np.asarray(x[picked[start:start + chunk]], np.float64)
        total += e.sum(0)
        scatter += e.T @ e
    mean = total / len(picked)
    cov = scatter / len(picked) - np.outer(mean, mean)
    _values, vectors = np.linalg.eigh(cov)
    axes = vectors[:, ::-1][:, :2]
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    axes = axes * np.where(axes.sum(0) < 0, -1.0, 1.0)  # a fixed sign: the map does not flip
    axes32, offset = axes.astype(np.float32), (mean @ axes).astype(np.float32)
    out = np.empty((n, 2), np.float32)
    for start in range(0, n, chunk):
        out[start:start + chunk] = np.asarray(x[start:start + chunk], np.float32) @ axes32 - offset
    return out
