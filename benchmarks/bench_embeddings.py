"""Embedding index benchmark: which kNN backend and precision, does it scale, and the
embedding throughput.

On N random unit vectors (default 1,000,000 x 128), with the thread count pinned (--threads,
set for BLAS, OpenMP and torch before they load), rounds interleave the backends so that load
from other processes hits them alike; medians are printed side by side as ratios to the time to
read the float32 matrix once (a bandwidth-bound reduction: the physical limit of any brute-force
query). Backends: NumPy float32 matrix-vector product + argpartition (what core/embeddings.py
does), torch float32 / float16 / bfloat16 matrix-vector product + topk, faiss-cpu IndexFlatIP
and its scalar-quantizer flat index on float16 / bfloat16 / 8-bit min-max / scaled int8 codes
(the last what core/knn.py scans), top-256 candidates, one thread (when importable;
--faiss-path adds a folder to sys.path). Top-10 agreement of the reduced precisions with exact
float64 ranking is measured on --agree queries. Then the real EmbeddingIndex.query, exact
float32 scan, float16 and int8 candidates + exact re-rank (core/knn.py; two shards searched in
parallel) side by side, with and without filters, checked to return the same rows; its memory;
the PCA map projection. The map's redraw and pick (--map-points) and the embedding throughput
(--throughput) follow. The load average (`uptime`) is printed first and last: the machine is
shared.

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/bench_embeddings.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _pin_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--agree", type=int, default=200, help="queries for the top-10 agreement")
    ap.add_argument("--faiss-path", default=None)
    ap.add_argument("--map-points", type=int, default=100_000,
                    help="points of the map redraw/pick test (0: skip it)")
    ap.add_argument("--throughput", nargs=2, metavar=("DATA", "CKPT"),
                    help="also embed dataset DATA with CKPT (or 'default': a randomly "
                    "initialised model of the default size, 128 px crops): crops/s vs the bare "
                    "forward pass")
    ap.add_argument("--throughput-sequences", type=int, default=0,
                    help="only the first N sequences of DATA (0: all)")
    ap.add_argument("--throughput-rounds", type=int, default=8)
    ap.add_argument("--skip-knn", action="store_true",
                    help="only the map and throughput parts")
    args = ap.parse_args()
    print("load at start:", _uptime())
    _pin_threads(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    if args.faiss_path:
        sys.path.append(args.faiss_path)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        faiss = None

    rng = np.random.default_rng(0)
    if not args.skip_knn:
        bench_knn(args, faiss)
    if args.map_points:
        e = rng.standard_normal((args.map_points, args.dim), dtype=np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        bench_map(e, args.map_points, args.rounds)
    if args.throughput:
        bench_throughput(*args.throughput, args.throughput_sequences, args.throughput_rounds)
    print("load at end:", _uptime())


def bench_knn(args, faiss) -> None:
    """The kNN backends on random unit vectors, then EmbeddingIndex.query's paths."""
    import numpy as np
    import torch

    from mcss_studio.core.embeddings import EmbeddingIndex, SequenceInfo

    rng = np.random.default_rng(0)
    n, d, k = args.rows, args.dim, 10
    base_rss = _rss_mib()
    e = rng.standard_normal((n, d), dtype=np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    queries = rng.integers(0, n, args.rounds)
    et = torch.from_numpy(e)
    eh, eb = et.half(), et.bfloat16()
    backends = {
        "read matrix once (sum)": lambda q: et.sum(),
        "numpy f32 matvec+argpartition": lambda q: np.argpartition(-(e @ e[q]), k)[:k],
        "torch f32 matvec+topk": lambda q: torch.topk(et @ et[q], k),
        "torch f16 matvec+topk": lambda q: torch.topk((eh @ eh[q]).float(), k),
        "torch bf16 matvec+topk": lambda q: torch.topk((eb @ eb[q]).float(), k),
    }
    if faiss is not None:
        flat = faiss.IndexFlatIP(d)
        flat.add(e)
        backends["faiss IndexFlatIP search"] = lambda q: flat.search(e[q:q + 1], k)
        for name, kind in (("float16", faiss.ScalarQuantizer.QT_fp16),
                           ("bfloat16", faiss.ScalarQuantizer.QT_bf16),
                           ("8-bit min-max", faiss.ScalarQuantizer.QT_8bit)):
            sq = faiss.IndexScalarQuantizer(d, kind, faiss.METRIC_L2)
            sq.train(np.stack([e.min(0), e.max(0)]))  # min-max: no-op for the floats
            sq.add(e)
            backends[f"faiss SQ {name} L2, 256 cand."] = (
                lambda q, sq=sq: sq.search(e[q:q + 1], 256))
        # what core/knn.py scans: integers x * s, s = 127 / max |x|, the query scaled alike
        scale = np.float32(127 / np.abs(e).max())
        sq8 = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit_direct_signed,
                                         faiss.METRIC_L2)
        sq8.add_sa_codes((np.rint(e * scale) + 128).astype(np.uint8))
        backends["faiss SQ int8 scaled L2, 256 cand."] = (
            lambda q: sq8.search(e[q:q + 1] * scale, 256))
    times = {name: [] for name in backends}
    for q in queries:
        for name, fn in backends.items():
            start = time.perf_counter()
            fn(int(q))
            times[name].append(time.perf_counter() - start)
    read = float(np.median(times["read matrix once (sum)"]))
    print(f"{n} x {d} float32 ({n * d * 4 / 2**20:.0f} MiB), {args.threads} threads, "
          f"{args.rounds} interleaved rounds, top-{k}")
    print(f"{'backend':34s} {'median ms':>10s} {'x read':>8s}")
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"{name:34s} {med * 1e3:10.1f} {med / read:8.2f}")

    exact_q = rng.integers(0, n, args.agree)
    agree = {"f16": 0, "bf16": 0}
    for q in exact_q:
        # exact float64 top-k: re-rank float32's top 100 (far more than rounding could move)
        shortlist = torch.topk(et @ et[q], 100).indices.numpy()
        scores64 = e[shortlist].astype(np.float64) @ e[q].astype(np.float64)
        exact = set(shortlist[np.argsort(-scores64)[:k]].tolist())
        agree["f16"] += len(exact & set(torch.topk((eh @ eh[q]).float(), k).indices.tolist()))
        agree["bf16"] += len(exact & set(torch.topk((eb @ eb[q]).float(), k).indices.tolist()))
    for name, hits in agree.items():
        print(f"top-{k} agreement with exact float64, {name}: {hits / (k * len(exact_q)):.4f} "
              f"({len(exact_q)} queries)")

    cams, frames = 4, n // 4 // 250  # 250 sequences of 4 cameras
    infos = [SequenceInfo(f"s{i}", f"S{i % 7}", None, frames, tuple("abcd"), i * frames * cams,
                          i * frames) for i in range(250)]
    rows = frames * cams * 250
    poses = np.broadcast_to(np.zeros((1, 17, 3), np.float32), (rows, 17, 3))  # not queried
    index = EmbeddingIndex(infos, e[:rows], poses)
    extra = sum(a.nbytes for a in (index.seq_id, index.camera, index.frame, index.subject_id,
                                   index.half_norm2)) / 2**20
    bench_index_query(index, lambda: et.sum(), args.rounds, k)
    print(f"index bookkeeping {extra:.0f} MiB beside the {rows * d * 4 / 2**20:.0f} MiB matrix "
          f"(process RSS {_rss_mib():.0f} MiB, {base_rss:.0f} at start)")
    start = time.perf_counter()
    index.projection()
    print(f"PCA map projection of {rows} rows: {time.perf_counter() - start:.2f} s")


def bench_index_query(index, read_matrix, rounds: int, k: int) -> None:
    """EmbeddingIndex.query: the exact float32 scan, the float16 and the int8 candidate copies
    (when faiss is importable) on the same queries, interleaved with a read of the matrix
    (`read_matrix`, the ratios' base), with no filter and with three; each copy's rows must be
    the exact scan's."""
    import numpy as np

    from mcss_studio.core.embeddings import NeighbourFilter

    scans, built = {}, {}
    for kind in ("float16", "int8"):
        start = time.perf_counter()
        index._scan = None
        if index.enable_fast_search(kind):
            scans[kind], built[kind] = index._scan, time.perf_counter() - start
    paths = {"exact float32 scan": None} | {f"{kind} candidates + re-rank": scan
                                            for kind, scan in scans.items()}
    filters = {"no filter": NeighbourFilter(other_cameras=False),
               "other cameras + |dt|>=5 + other subject": NeighbourFilter(
                   other_cameras=True, min_dt=5, subject="other")}
    rng = np.random.default_rng(2)
    times: dict[str, list[float]] = {}
    same = {kind: 0 for kind in scans}
    fell_back = {kind: 0 for kind in scans}
    reads = []
    for q in rng.integers(0, len(index), rounds):
        t0 = time.perf_counter()
        read_matrix()
        reads.append(time.perf_counter() - t0)
        for label, filt in filters.items():
            answers = {}
            for path, scan in paths.items():
                index._scan = scan
                exact_before = index.exact_answers
                t0 = time.perf_counter()
                answers[path] = index.query(int(q), k, filt).rows
                times.setdefault(f"{path}, {label}", []).append(time.perf_counter() - t0)
                if scan is not None:
                    fell_back[scan.kind] += index.exact_answers - exact_before
            for kind in scans:
                same[kind] += int(np.array_equal(answers[f"{kind} candidates + re-rank"],
                                                 answers["exact float32 scan"]))
    index._scan = scans.get("int8")
    read = float(np.median(reads))
    print(f"EmbeddingIndex.query rounds: reading the matrix once, median {read * 1e3:.1f} ms")
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"EmbeddingIndex.query, {name}: median {med * 1e3:.1f} ms ({med / read:.2f} x "
              f"read; spread {min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f})")
    for kind, scan in scans.items():
        print(f"{kind} candidates: identical rows to the exact scan in {same[kind]}/"
              f"{rounds * len(filters)} queries, {fell_back[kind]} fell back to the exact scan; "
              f"copy built in {built[kind]:.2f} s, largest reconstruction error "
              f"{scan.max_error:.2e} (row norms up to {scan.max_norm:.3f})")
    if not scans:
        print("no candidate copies: faiss not importable, or fewer rows than "
              "embeddings.FAST_MIN_ROWS")


def bench_map(e, points: int, rounds: int) -> None:
    """The embedding map with `points` crops in an offscreen window of 1200 x 700: a new index
    drawn, recolouring (camera / sequence alternately, each painted), a repaint alone, and the
    pick (nearest point to the pointer)."""
    import numpy as np

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from mcss_studio.core.embeddings import EmbeddingIndex, SequenceInfo
    from mcss_studio.gui.embedding_map import EmbeddingMapPanel
    from mcss_studio.gui.state import StudioState

    app = QApplication.instance() or QApplication([])
    frames = points // 4 // 100
    infos = [SequenceInfo(f"s{i}", f"S{i % 7}", f"a{i % 15}", frames, tuple("abcd"),
                          i * frames * 4, i * frames) for i in range(100)]
    n = frames * 400
    index = EmbeddingIndex(infos, e[:n], np.broadcast_to(np.zeros((1, 17, 3), np.float32),
                                                         (n, 17, 3)))
    index.projection()
    state = StudioState()
    panel = EmbeddingMapPanel(state)
    panel.resize(1200, 700)
    panel.show()
    state.set_embedding_index(index)
    app.processEvents()
    start = time.perf_counter()
    panel.redraw()  # a new index: every point placed, the colouring computed
    panel.plot.grab()
    first = time.perf_counter() - start
    recolour, paint, pick = [], [], []
    rng = np.random.default_rng(1)
    for r in range(rounds):
        start = time.perf_counter()
        panel.colour_by.setCurrentIndex(0 if r % 2 else 2)  # camera / sequence (100 groups)
        panel.plot.grab()  # paint it
        recolour.append(time.perf_counter() - start)
        start = time.perf_counter()
        panel.plot.grab()  # a repaint alone, as panning and zooming cause
        paint.append(time.perf_counter() - start)
        x, y = index.projection()[rng.integers(0, n)]
        start = time.perf_counter()
        panel.nearest(QPointF(float(x), float(y)))
        pick.append(time.perf_counter() - start)
    print(f"map with {n} points: new index + paint {first * 1e3:.0f} ms; recolour + paint "
          f"median {np.median(recolour) * 1e3:.0f} ms (max {max(recolour) * 1e3:.0f}), repaint "
          f"{np.median(paint) * 1e3:.0f} ms, pick median {np.median(pick) * 1e3:.1f} ms")
    panel.close()


def bench_throughput(data: str, ckpt: str, first: int = 0, rounds: int = 5) -> None:
    """Crops/s of the whole index build (crop cache ready: opening the sequences, the pipeline's
    crops and rays, chunk files, the final files) vs the bare model forward pass on the same
    crops and rays at the same batch size, for a build in a fresh process whose cache folder
    knows the videos (as every crop-cache build now leaves it) and one whose folder does not
    (a crop cache from before the video indexes were kept, core/video_index.py: every video
    demuxed once), in `rounds` adjacent triples whose order rotates (load that drifts
    hits all alike); the ratio of each triple, its median and spread."""
    import shutil
    import tempfile

    import numpy as np

    from mcss_studio.core import embedding_store, open_dataset, video_index
    from mcss_studio.core.cache import build_cache
    from mcss_studio.core.checkpoint import checkpoint_digest
    from mcss_studio.core.media import MediaAccess
    from mcss_studio.core.pipeline import PosePipeline
    from mcss_studio.core.video_index import forget_video_indexes

    dataset = open_dataset(data)
    if first:
        dataset.sequences = dataset.sequences[:first]
    with tempfile.TemporaryDirectory() as cache:
        if ckpt == "default":
            from mcss_studio.core.checkpoint import save_checkpoint
            from mcss_studio.core.model import MCSSModel, ModelConfig

            ckpt = str(save_checkpoint(Path(cache) / "default.safetensors",
                                       MCSSModel(ModelConfig()), meta={"crop_size": 128}))
        pipeline = PosePipeline.load(ckpt, "cpu")
        size, margin = pipeline.contract.crop_size, pipeline.contract.crop_margin
        batches, rows = [], 0
        for name in dataset.names:
            with dataset.open(name) as seq:
                build_cache(seq, cache, crop_size=size, margin=margin, proxies=False)
                media = MediaAccess(seq, cache)
                media.attach_caches()
                for t in range(0, seq.num_frames, embedding_store.CHUNK_FRAMES):
                    cut = pipeline.cut_frames(
                        media, range(t, min(seq.num_frames, t + embedding_store.CHUNK_FRAMES)))
                    batches.append((cut.crops, cut.rays))
                rows += seq.num_frames * len(seq.cameras)
                media.crop_cache.close()
        pipeline.predictor.predict(*batches[0])  # warm-up at the batch size of a chunk
        folder = embedding_store.index_folder(cache, checkpoint_digest(ckpt))

        def forward() -> float:
            start = time.perf_counter()
            for crops, rays in batches:
                pipeline.predictor.predict(crops, rays=rays)
            return time.perf_counter() - start

        def build(videos_known: bool) -> float:
            shutil.rmtree(folder, ignore_errors=True)
            forget_video_indexes()  # a fresh process
            if not videos_known:
                (Path(cache) / video_index.FILE_NAME).unlink(missing_ok=True)
            start = time.perf_counter()
            embedding_store.build_index(dataset, cache, ckpt, pipeline=pipeline)
            return time.perf_counter() - start

        runs = {"forward": forward, "first": lambda: build(False), "known": lambda: build(True)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(rounds):  # adjacent triples, order rotating: drift hits all alike
            names = list(runs)[r % 3:] + list(runs)[:r % 3]
            for name in names:
                times[name].append(runs[name]())
    forward_s = np.array(times["forward"])
    print(f"embedding throughput, {Path(ckpt).name} on {data} ({rows} crops, {rounds} "
          f"adjacent triples): bare forward {rows / np.median(forward_s):.0f} crops/s")
    for name, what in (("first", "videos unknown to the cache folder"),
                       ("known", "videos known to the cache folder")):
        ratios = forward_s / np.array(times[name])  # per triple: build rate / forward rate
        q1, q3 = np.percentile(ratios, [25, 75])
        print(f"  index build, {what}: {rows / np.median(times[name]):.0f} crops/s; ratio "
              f"build / forward per triple: median {np.median(ratios):.2f}, quartiles "
              f"{q1:.2f}-{q3:.2f}, range {ratios.min():.2f}-{ratios.max():.2f}")


if __name__ == "__main__":
    main()
