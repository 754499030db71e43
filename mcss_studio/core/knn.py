"""Fast candidate search for the embedding index: a 16-bit copy of the embeddings scanned by
faiss-cpu's scalar-quantizer flat index, split into one shard per core searched in parallel
(faiss searches one query on one thread), whose candidates the index then re-ranks exactly in
float32. Results are exact, not approximate: each scan also returns a floor under the true
Euclidean distance of every row it did not return, and the index falls back to its exact float32
scan whenever the k-th re-ranked distance is not below that floor (core/embeddings.py).

Why: a brute-force query is bound by reading the matrix; 16-bit storage halves the bytes read
(and a million 128-d rows then fit the last-level cache of the measured CPU).
benchmarks/bench_embeddings.py compares it with NumPy and torch (float32, float16, bfloat16)
and faiss's float32 flat index; see the README for the figures. faiss-cpu is optional
(`pip install mcss-studio[fast-knn]`): without it `available()` is False and every query takes
the exact float32 path, which gives the same answers, only slower. No Qt.

The floor: with storage rounding of relative size at most u per component (2^-11 for float16,
2^-8 for bfloat16), a row's stored vector e' satisfies |e' - e| <= u |e| <= u M (M: the largest
row norm), so by the triangle inequality |q - e| >= |q - e'| - u M. Every row not returned has
|q - e'| >= the largest returned scan distance D, hence |q - e| >= D - u M (less a float32
accumulation slack).
"""

from __future__ import annotations

import os

import numpy as np

KINDS = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}  # storage -> unit roundoff
SLACK = 1e-4  # relative: float32 accumulation in the scan and in the re-rank
ADD_CHUNK = 65536
MAX_SHARDS = 8
FLOAT16_MAX = 6.0e4  # below float16's largest finite value (65504), so rounding stays relative


def available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class CandidateScan:
    """A 16-bit copy of (N, D) embeddings; `candidates` scans it for the nearest rows."""

    def __init__(self, embeddings: np.ndarray, kind: str = "float16",
                 shards: int | None = None) -> None:
        import faiss

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {tuple(KINDS)}, not {kind!r}")
        n, d = embeddings.shape
        quantizer = {"float16": faiss.ScalarQuantizer.QT_fp16,
                     "bfloat16": faiss.ScalarQuantizer.QT_bf16}[kind]
        self.kind, self.unit = kind, KINDS[kind]
        parts = max(1, min(shards or os.cpu_count() or 1, MAX_SHARDS, n))
        self.index = faiss.IndexShards(d, True, True)  # threaded, ids run on across shards
        self._shards = []  # kept referenced: the shards index does not own them
        norm = 0.0
        bounds = np.linspace(0, n, parts + 1).round().astype(np.int64)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            shard = faiss.IndexScalarQuantizer(d, quantizer, faiss.METRIC_L2)
            for start in range(lo, hi, ADD_CHUNK):  # the matrix may be a memory map
                block = np.ascontiguousarray(embeddings[start:min(hi, start + ADD_CHUNK)],
                                             np.float32)
                if kind == "float16" and not np.abs(block).max(initial=0.0) < FLOAT16_MAX:
                    raise ValueError("embedding values beyond float16's range")
                shard.add(block)
                norm = max(norm, float(np.sqrt(np.einsum("nd,nd->n", block, block).max(
                    initial=0.0))))
            self._shards.append(shard)
            self.index.add_shard(shard)
        self.max_norm = norm

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def candidates(self, q: np.ndarray, count: int) -> tuple[np.ndarray, float]:
        """(rows of the `count` nearest by the 16-bit scan, floor): every row not among them
        is at least `floor` from q in exact Euclidean distance (-inf: no bound, all returned)."""
        count = min(int(count), len(self))
        d2, rows = self.index.search(np.asarray(q, np.float32).reshape(1, -1), count)
        rows = rows[0][rows[0] >= 0].astype(np.int64)
        if count >= len(self) or not len(rows):
            return rows, -np.inf
        scanned = float(np.sqrt(max(float(d2[0][len(rows) - 1]), 0.0)))
        slack = SLACK * (scanned + self.max_norm + float(np.linalg.norm(q)))
        return rows, scanned - self.unit * self.max_norm - slack
