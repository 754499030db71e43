"""Fast candidate search for the embedding index: a compact copy of the embeddings (int8 codes
by default, or 16-bit floats) scanned by faiss-cpu's scalar-quantizer flat index, split into one
shard per core searched in parallel (faiss searches one query on one thread), whose candidates
the index then re-ranks exactly in float32. Results are exact, not approximate: each scan also
returns a floor under the float32 squared distance of every row it did not return, and the index
falls back to its exact float32 scan whenever the k-th re-ranked distance is not below that floor
(core/embeddings.py).

Why: a brute-force query is bound by reading the matrix; int8 codes read a quarter of the
float32 bytes (128 MB for a million 128-d rows), 16-bit floats half. The int8 copy is
x * s rounded to integers in [-127, 127], one scale s = 127 / max |x| for the whole matrix (so
distances stay Euclidean, scaled by s: the query is scaled alike), scanned by faiss's
QT_8bit_direct_signed kernel, measured 1.2 to 1.7x faster here than its per-dimension min-max
8-bit kernel. benchmarks/bench_embeddings.py compares the float32 scan, the float16 and the int8
copies and the time to read the matrix once; see the README for the figures. faiss-cpu is
optional (`pip install mcss-studio[fast-knn]`): without it `available()` is False and every
query takes the exact float32 path, which gives the same answers, only slower. No Qt.

The floor is a proof, from quantities measured when the copy is built:
- err: the largest reconstruction error |e - e'| over all rows (e' the decoded copy of row e,
  measured by decoding every row's codes, so it holds whatever the rounding);
- D: the scan's distance |q - e'| of the last candidate (divided by s); every row left out has
  |q - e'| >= D, hence |q - e| >= D - err (triangle inequality; equivalently |q.e - q.e'| <=
  |q| |e - e'| by Cauchy-Schwarz bounds each score); the scaled query's own float32 rounding
  (2^-24 |q|) is taken off too;
- float32 rounding: a sum of d products in float32 is within d 2^-24 / (1 - d 2^-24) of the sum of
  their absolute values (Higham's gamma_d), at most (|q| + M)^2 here (M the largest row norm,
  grown by err for the decoded rows); taken at twice that per evaluation, once for the scan's D,
  once for the float32 value of a left-out row, once for the k-th candidate's own value.
So floor = max(D - err, 0)^2 - slack, in squared distance, is below the float32 squared distance
of every row left out.
"""

from __future__ import annotations

import os

import numpy as np

KINDS = ("int8", "float16", "bfloat16")  # the copy's storage, 1 or 2 bytes a value
ADD_CHUNK = 65536
MAX_SHARDS = 8
FLOAT16_MAX = 6.0e4  # below float16's largest finite value (65504)


def available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def float32_slack(dim: int) -> float:
    """Relative bound (to (|q| + M)^2) on the float32 rounding of the three evaluations the
    floor covers: 2 gamma_d each, gamma_d = d u / (1 - d u), u = 2^-24."""
    u = dim * 2.0 ** -24
    return 3 * 2 * u / (1 - u)


class CandidateScan:
    """A compact copy of (N, D) embeddings; `candidates` scans it for the nearest rows."""

    def __init__(self, embeddings: np.ndarray, kind: str = "int8",
                 shards: int | None = None) -> None:
        import faiss

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        n, d = embeddings.shape
        quantizer = {"int8": faiss.ScalarQuantizer.QT_8bit_direct_signed,
                     "float16": faiss.ScalarQuantizer.QT_fp16,
                     "bfloat16": faiss.ScalarQuantizer.QT_bf16}[kind]
        self.kind, self.slack = kind, float32_slack(d)
        largest = _largest_value(embeddings)
        # a float32 number: the query is scaled by exactly this value
        self.scale = float(np.float32(127.0 / largest)) if kind == "int8" and largest > 0 else 1.0
        parts = max(1, min(shards or os.cpu_count() or 1, MAX_SHARDS, n))
        self.index = faiss.IndexShards(d, True, True)  # threaded, ids run on across shards
        self._shards = []  # kept referenced: the shards index does not own them
        self.max_norm = self.max_error = 0.0
        bounds = np.linspace(0, n, parts + 1).round().astype(np.int64)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            shard = faiss.IndexScalarQuantizer(d, quantizer, faiss.METRIC_L2)
            for start in range(lo, hi, ADD_CHUNK):  # the matrix may be a memory map
                self._add(shard, np.ascontiguousarray(
                    embeddings[start:min(hi, start + ADD_CHUNK)], np.float32))
            self._shards.append(shard)
            self.index.add_shard(shard)

    def _add(self, shard, block: np.ndarray) -> None:
        """Encode a block into the shard, measuring its rows' norms and reconstruction errors."""
        if self.kind == "float16" and not np.abs(block).max(initial=0.0) < FLOAT16_MAX:
            raise ValueError("embedding values beyond float16's range")
        if self.kind == "int8":  # rounded to the nearest integer: faiss's encoder truncates
            levels = np.clip(np.rint(block * np.float32(self.scale)), -127, 127)
            codes = (levels + 128).astype(np.uint8)
            decoded = levels / np.float32(self.scale)
        else:
            codes = shard.sa_encode(block)
            decoded = shard.sa_decode(codes)
        diff = decoded - block
        norm = np.sqrt(float(np.einsum("nd,nd->n", block, block).max(initial=0.0)))
        # float32 arithmetic here: its rounding (2^-24 of each value, 2^-23 after the division
        # and subtraction) is added back so that the bound stays a bound
        error = (np.sqrt(float(np.einsum("nd,nd->n", diff, diff).max(initial=0.0)))
                 * (1 + 2.0 ** -20) + 2.0 ** -21 * norm)
        if not (np.isfinite(error) and np.isfinite(norm)):
            raise ValueError("embeddings that are not finite")
        shard.add_sa_codes(codes)
        self.max_error, self.max_norm = max(self.max_error, error), max(self.max_norm, norm)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def candidates(self, q: np.ndarray, count: int) -> tuple[np.ndarray, float]:
        """(rows of the `count` nearest by the scan, floor): every row not among them has a
        float32 squared distance to q above `floor` (-inf: no bound, all rows returned)."""
        count = min(int(count), len(self))
        q = np.asarray(q, np.float32).reshape(1, -1)
        d2, rows = self.index.search(q * np.float32(self.scale), count)
        rows = rows[0][rows[0] >= 0].astype(np.int64)
        if count >= len(self) or not len(rows):
            return rows, -np.inf
        q_norm = float(np.linalg.norm(q))
        reach = q_norm + self.max_norm + self.max_error
        rounding = self.slack * reach * reach
        scanned = np.sqrt(max(float(d2[0][len(rows) - 1]), 0.0)) / self.scale
        scaled_query = 2.0 ** -24 * q_norm if self.scale != 1.0 else 0.0
        return rows, max(scanned - self.max_error - scaled_query, 0.0) ** 2 - rounding


def _largest_value(embeddings: np.ndarray) -> float:
    """max |x| over the matrix, read in chunks (it may be a memory map); ValueError when a
    value is not finite."""
    largest = 0.0
    for start in range(0, len(embeddings), ADD_CHUNK):
        block = np.asarray(embeddings[start:start + ADD_CHUNK], np.float32)
        largest = max(largest, float(np.abs(block).max(initial=0.0)))
    if not np.isfinite(largest):
        raise ValueError("embeddings that are not finite")
    return largest
