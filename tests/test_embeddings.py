"""The embedding index: exact kNN with each filter on a hand-made index, PCA, GT judging."""

from __future__ import annotations

import numpy as np
import pytest

from mcss_studio.core.embeddings import (
    EmbeddingIndex,
    NeighbourFilter,
    SequenceInfo,
    pca_2d,
    points_in_polygon,
)

FRAMES, CAMS = 5, 3
# sequence -> (subject, offset of its first embedding coordinate)
SEQS = {"A": ("S1", 0.0), "B": ("S2", 100.0), "C": ("S1", 10.0)}


def hand_index() -> EmbeddingIndex:
    """Embedding of (seq, cam, frame) = (offset + frame, 0.1 * cam): distances by hand."""
    infos, rows = [], []
    for i, (name, (subject, offset)) in enumerate(SEQS.items()):
        infos.append(SequenceInfo(name, subject, "walk", FRAMES, ("c0", "c1", "c2"),
                                  i * FRAMES * CAMS, i * FRAMES))
        rows += [[offset + t, 0.1 * c] for c in range(CAMS) for t in range(FRAMES)]
    emb = np.asarray(rows, np.float32)
    return EmbeddingIndex(infos, emb, np.zeros((len(emb), 17, 3), np.float32))


def keys(index, found):
    return [index.key(r) for r in found.rows]


def test_row_layout_is_sequence_camera_frame():
    index = hand_index()
    assert index.row("B", 2, 3) == FRAMES * CAMS + 2 * FRAMES + 3
    assert index.key(index.row("C", 1, 4)) == ("C", 1, 4)
    with pytest.raises(KeyError):
        index.row("A", 3, 0)


def test_default_is_other_cameras_nearest_first_without_the_query():
    index = hand_index()
    found = index.query(index.row("A", 0, 2), k=4)
    assert keys(index, found)[:2] == [("A", 1, 2), ("A", 2, 2)]
    assert set(keys(index, found)[2:]) == {("A", 1, 1), ("A", 1, 3)}
    np.testing.assert_allclose(found.distances, [0.1, 0.2, np.sqrt(1.01), np.sqrt(1.01)],
                               rtol=1e-4)


def test_same_camera_allowed_when_other_cameras_is_off():
    index = hand_index()
    found = index.query(index.row("A", 0, 2), 4, NeighbourFilter(other_cameras=False))
    assert keys(index, found)[:2] == [("A", 1, 2), ("A", 2, 2)]
    assert set(keys(index, found)[2:]) == {("A", 0, 1), ("A", 0, 3)}  # distance 1.0


def test_min_dt_excludes_close_frames_of_the_same_sequence_only():
    index = hand_index()
    found = index.query(index.row("A", 0, 2), 3, NeighbourFilter(min_dt=2))
    assert set(keys(index, found)[:2]) == {("A", 1, 0), ("A", 1, 4)}  # |dt| = 2, cam 1
    assert all(abs(f - 2) >= 2 for s, _c, f in keys(index, found) if s == "A")


def test_sequence_and_subject_scopes():
    index = hand_index()
    q = index.row("A", 0, 2)
    other_seq = keys(index, index.query(q, 3, NeighbourFilter(sequence="other")))
    assert other_seq[0] == ("C", 1, 0)  # C starts at 10: nearer than B at 100
    same_seq = keys(index, index.query(q, 30, NeighbourFilter(sequence="same")))
    assert {s for s, _c, _f in same_seq} == {"A"} and len(same_seq) == 10  # 2 cameras x 5
    other_subject = keys(index, index.query(q, 30, NeighbourFilter(subject="other")))
    assert {s for s, _c, _f in other_subject} == {"B"}
    same_subject = keys(index, index.query(q, 3, NeighbourFilter(subject="same",
                                                                 sequence="other")))
    assert {s for s, _c, _f in same_subject} == {"C"}


def test_least_similar_returns_the_farthest_first():
    index = hand_index()
    found = index.query(index.row("A", 0, 2), 2, NeighbourFilter(least_similar=True))
    assert keys(index, found) == [("B", 2, 4), ("B", 1, 4)]
    assert found.distances[0] > found.distances[1]


def test_fewer_results_when_the_filters_allow_fewer():
    index = hand_index()
    found = index.query(index.row("A", 0, 2), 50, NeighbourFilter(sequence="same", min_dt=2))
    assert len(found.rows) == 4  # frames 0 and 4 of cameras 1 and 2
    assert np.isfinite(found.distances).all()


def test_query_reads_the_matrix_in_place():
    index = hand_index()
    index.embeddings.flags.writeable = False  # a copy-on-write would raise, a copy is not used
    index.query(index.row("A", 0, 2), 3)
    assert index.embeddings.base is not None or index.embeddings.flags.owndata


def test_pca_puts_the_main_direction_first():
    t = np.arange(10, dtype=np.float64)
    x = np.stack([t, 0.01 * (t % 2), np.zeros(10)], axis=1)
    xy = pca_2d(x, chunk=3)  # chunks must not change the answer
    np.testing.assert_allclose(np.abs(xy[:, 0]), np.abs(t - t.mean()), atol=1e-3)
    assert np.ptp(xy[:, 1]) < 0.05


def test_judge_marks_by_kappa_with_p_mpjpe_in_mm():
    index = hand_index()
    rng = np.random.default_rng(0)
    base = rng.normal(0, 300, (17, 3))
    gt = np.repeat(base[None], 3 * FRAMES, 0).astype(np.float32)
    gt[FRAMES:2 * FRAMES] = rng.normal(0, 300, (FRAMES, 17, 3))  # B: other poses
    gt[2 * FRAMES] = np.nan  # C frame 0: no ground truth
    index.gt = gt
    q = index.row("A", 0, 2)
    judged = index.judge(q, [index.row("A", 1, 2), index.row("B", 0, 0), index.row("C", 0, 0)],
                         kappa=0.1)
    assert judged[0][0] and judged[0][1] == pytest.approx(0.0, abs=1e-3)
    assert not judged[1][0] and judged[1][1] > 50
    assert judged[2][0] is False and np.isnan(judged[2][1])


def test_points_in_polygon_hand_cases():
    # an L shape (concave): the notch at x, y in (1, 2) is outside
    ell = np.array([(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)], float)
    pts = np.array([(0.5, 0.5), (1.5, 0.5), (0.5, 1.5), (1.5, 1.5), (3, 0.5), (-0.1, 1),
                    (0.5, 2.5)], float)
    assert points_in_polygon(pts, ell).tolist() == [True, True, True, False, False, False,
                                                     False]
    # a bow tie crossing itself: each lobe is inside, beyond the tips is not
    tie = np.array([(0, 0), (2, 2), (2, 0), (0, 2)], float)
    assert points_in_polygon(np.array([(0.2, 1.0), (1.8, 1.0), (1.0, 0.2), (2.5, 1.0)]),
                             tie).tolist() == [True, True, False, False]
    # fewer than three vertices enclose nothing; no points, no answer
    assert not points_in_polygon(pts, ell[:2]).any()
    assert points_in_polygon(np.zeros((0, 2)), ell).shape == (0,)


def _random_index(rows_per_camera=40, sequences=30, dim=16, seed=0) -> EmbeddingIndex:
    infos = [SequenceInfo(f"s{i}", f"S{i % 3}", None, rows_per_camera, ("a", "b", "c"),
                          i * rows_per_camera * 3, i * rows_per_camera) for i in range(sequences)]
    n = rows_per_camera * 3 * sequences
    e = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return EmbeddingIndex(infos, e, np.zeros((n, 17, 3), np.float32))


FILTERS = [NeighbourFilter(), NeighbourFilter(other_cameras=False),
           NeighbourFilter(min_dt=5, subject="other"),
           NeighbourFilter(sequence="other", subject="same"),
           NeighbourFilter(sequence="same"), NeighbourFilter(least_similar=True)]


@pytest.mark.parametrize("kind", ["int8", "float16"])
def test_compact_candidates_give_the_exact_scans_answers(kind):
    pytest.importorskip("faiss")
    index = _random_index()
    assert index.enable_fast_search(kind, min_rows=1)
    scan = index._scan
    for q in range(0, len(index), 29):
        for filt in FILTERS:
            fast = index.query(q, 10, filt)
            index._scan = None
            exact = index.query(q, 10, filt)
            index._scan = scan
            assert fast.rows.tolist() == exact.rows.tolist()
            np.testing.assert_allclose(fast.distances, exact.distances, atol=1e-5)
    # nearest-first queries over more than one sequence took the candidates
    assert index.fast_answers >= 4 * len(range(0, len(index), 29))


@pytest.mark.parametrize("kind", ["int8", "float16"])
def test_the_floor_bounds_every_row_the_scan_left_out(kind):
    pytest.importorskip("faiss")
    from mcss_studio.core.knn import CandidateScan

    e = _random_index(dim=8).embeddings
    scan = CandidateScan(e, kind, shards=3)
    for q in (0, 17, 500):
        rows, floor = scan.candidates(e[q], 50)
        left = np.setdiff1d(np.arange(len(e)), rows)
        d2 = np.sum((e - e[q]) ** 2, axis=1)
        assert len(rows) == 50 and d2[left].min() >= floor
        assert floor > np.sort(d2[rows])[9]  # provable here


@pytest.mark.parametrize("unit", [1.0, 0.01])
def test_int8_floor_is_the_scanned_distance_less_the_largest_measured_error(unit):
    pytest.importorskip("faiss")
    from mcss_studio.core.knn import CandidateScan

    # the largest |value| is 127 units: one unit per integer level, so (10.25, 20.4) is stored
    # as (10, 20) (error 0.25, 0.4) and (-3.4, 60) as (-3, 60); distances scale with the unit
    e = np.array([[0, 0], [127, -127], [10.25, 20.4], [-3.4, 60]], np.float32) * unit
    scan = CandidateScan(e, "int8", shards=1)
    assert scan.scale == pytest.approx(1 / unit)
    error = np.sqrt(0.25 ** 2 + 0.4 ** 2) * unit  # of row 2; its float32 rounding added
    assert error <= scan.max_error <= error * (1 + 1e-3)
    rows, floor = scan.candidates(np.zeros(2, np.float32), 2)
    assert sorted(rows.tolist()) == [0, 2]
    scanned = np.hypot(10, 20)  # the last candidate's stored distance to the query
    proven = (scanned - np.sqrt(0.2225)) ** 2 * unit ** 2
    assert floor == pytest.approx(proven, rel=1e-4)
    assert floor < proven  # less the float32 rounding, never more
    assert floor <= np.sum(e[3] ** 2)  # below the nearest row left out


def _crowded_index(gap: float, close: int = 600) -> EmbeddingIndex:
    """Query row 0 at the origin, `close` rows of other sequences on a ray at distances
    1 + gap * i (rows 200..), the other rows 10 times farther than random."""
    index = _random_index(dim=4)
    e = np.asarray(index.embeddings) * 10
    e[0] = 0.0
    e[200:200 + close] = (np.array([1.0, 0, 0, 0], np.float32)
                          * (1 + gap * np.arange(close))[:, None])
    return EmbeddingIndex(index.sequences, e, index.poses)


def test_unprovable_candidates_fall_back_to_the_exact_scan(monkeypatch):
    pytest.importorskip("faiss")
    from mcss_studio.core import embeddings

    # 600 rows 1e-5 apart, more than either scan returns: no copy can order them
    monkeypatch.setattr(embeddings, "RETRY_CANDIDATES", 300)
    for kind in ("int8", "float16"):
        index = _crowded_index(1e-5)
        assert index.enable_fast_search(kind, min_rows=1)
        found = index.query(0, 10, NeighbourFilter(sequence="other"))
        assert index.exact_answers == 1 and index.fast_answers == 0
        assert found.rows.tolist() == list(range(200, 210))


def test_the_int8_error_bound_forces_the_fallback_where_float16_proves_it(monkeypatch):
    pytest.importorskip("faiss")
    from mcss_studio.core import embeddings

    # rows 2e-4 apart, each dimension spanning about [-40, 40]: 8-bit cells of 80/255 = 0.3
    # cannot order them (the error bound, not luck, decides), float16's 2^-11 of 40 can
    monkeypatch.setattr(embeddings, "RETRY_CANDIDATES", 300)
    answers = {}
    for kind in ("int8", "float16"):
        index = _crowded_index(2e-4)
        assert index.enable_fast_search(kind, min_rows=1)
        # int8's measured error exceeds the gap between the 10th row and the 300th (0.06),
        # float16's stays under it
        assert index._scan.max_error > 0.1 if kind == "int8" else index._scan.max_error < 0.03
        answers[kind] = index.query(0, 10, NeighbourFilter(sequence="other")).rows.tolist()
        assert (index.fast_answers, index.exact_answers) == (
            (0, 1) if kind == "int8" else (1, 0))
    assert answers["int8"] == answers["float16"] == list(range(200, 210))


def test_a_second_larger_scan_answers_when_the_filter_empties_the_first(monkeypatch):
    pytest.importorskip("faiss")
    from mcss_studio.core import embeddings

    # the query's own sequence (rows 0..119) holds the 119 nearest rows: with 100 candidates
    # "other sequences" leaves too few, the retry's 400 suffice
    monkeypatch.setattr(embeddings, "CANDIDATES", 100)
    monkeypatch.setattr(embeddings, "RETRY_CANDIDATES", 400)
    index = _random_index(dim=4)
    e = np.asarray(index.embeddings) * 100
    e[0] = 0.0
    e[1:120] = np.array([0.5, 0, 0, 0], np.float32) * (1 + 1e-3 * np.arange(119))[:, None]
    e[200:210] = np.array([0, 3.0, 0, 0], np.float32) * (1 + 0.1 * np.arange(10))[:, None]
    index = EmbeddingIndex(index.sequences, e, index.poses)
    assert index.enable_fast_search("int8", min_rows=1)
    found = index.query(0, 10, NeighbourFilter(sequence="other"))
    assert (index.fast_answers, index.exact_answers) == (1, 0)
    assert found.rows.tolist() == list(range(200, 210))


def test_fast_search_needs_enough_rows():
    index = _random_index(sequences=2)
    assert not index.enable_fast_search()  # 240 rows: the float32 scan takes microseconds
