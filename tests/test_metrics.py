"""Hand-made cases for the pose and retrieval metrics."""

import numpy as np
import pytest

from trainer.metrics import (
    hit_at_k,
    map_at_k,
    mpjpe,
    n_mpjpe,
    p_mpjpe,
    per_sample_p_mpjpe,
    procrustes_align,
)


def _pose(seed: int = 0, n: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 300, size=(n, 17, 3))


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_mpjpe_hand_case():
    gt = np.zeros((1, 2, 3))
    pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]])
    assert mpjpe(pred, gt) == pytest.approx((5.0 + 2.0) / 2)


def test_mpjpe_zero_and_shape_check():
    gt = _pose()
    assert mpjpe(gt, gt) == 0.0
    with pytest.raises(ValueError):
        mpjpe(gt[:, :5], gt)


def test_n_mpjpe_removes_scale_only():
    gt = _pose(1)
    assert n_mpjpe(gt * 0.7, gt) == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(gt * 0.7, gt) > 10
    rotated = gt @ _rotation(0.5).T
    assert n_mpjpe(rotated, gt) > 10  # a rotation is not forgiven


def test_n_mpjpe_hand_case():
    # pred = (1,0,0) and (0,1,0); gt = (2,0,0) and (0,0,0): optimal s = 2/2 = 1
    pred = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    gt = np.array([[[2.0, 0, 0], [0, 0, 0]]])
    assert n_mpjpe(pred, gt) == pytest.approx(1.0)


def test_p_mpjpe_removes_similarity_transform():
    gt = _pose(2)
    pred = 1.3 * gt @ _rotation(1.1).T + np.array([10.0, -40.0, 7.0])
    assert p_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(procrustes_align(pred, gt), gt, atol=1e-6)


def test_p_mpjpe_does_not_allow_reflection():
    gt = _pose(3)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert p_mpjpe(mirrored, gt) > 1.0


def test_per_sample_p_mpjpe_scores_each_sample_alone():
    gt = np.concatenate([_pose(2, n=1), _pose(3, n=1)])
    moved = 1.3 * gt[:1] @ _rotation(1.1).T + np.array([10.0, -40.0, 7.0])  # similarity: 0
    mirrored = gt[1:] * np.array([-1.0, 1.0, 1.0])  # no reflection allowed: > 0
    pred = np.concatenate([moved, mirrored])
    each = per_sample_p_mpjpe(pred, gt)
    assert each.shape == (2,) and each[0] == pytest.approx(0.0, abs=1e-6)
    assert each[1] == pytest.approx(p_mpjpe(mirrored, gt[1:])) and each[1] > 1.0
    assert p_mpjpe(pred, gt) == pytest.approx(each.mean())


def test_metric_ordering_on_noise():
    gt = _pose(4, n=20)
    pred = gt + np.random.default_rng(5).normal(0, 20, size=gt.shape)
    assert p_mpjpe(pred, gt) <= n_mpjpe(pred, gt) + 1e-9 <= mpjpe(pred, gt) + 2e-9


def test_hit_at_k_hand_case():
    relevant = np.array([[False, True, False], [False, False, False], [True, False, False]])
    assert hit_at_k(relevant, 1) == pytest.approx(1 / 3)
    assert hit_at_k(relevant, 2) == pytest.approx(2 / 3)
    ranking = np.array([[1, 0, 2], [0, 1, 2], [1, 2, 0]])
    assert hit_at_k(relevant, 1, ranking=ranking) == pytest.approx(1 / 3)  # only query 0


def test_map_at_k_hand_case():
    # relevant at ranks 1 and 3 of 4, two relevant in total: AP = (1/1 + 2/3) / 2
    relevant = np.array([[True, False, True, False]])
    assert map_at_k(relevant, 4) == pytest.approx((1 + 2 / 3) / 2)
    # k = 2: only rank 1 counts, normaliser min(k, 2) = 2
    assert map_at_k(relevant, 2) == pytest.approx(0.5)
    assert map_at_k(np.zeros((2, 3), dtype=bool), 3) == 0.0


# -- orientation ------------------------------------------------------------------------------
def test_rotation_error_hand_case():
    from trainer.metrics import rotation_error_deg

    r = np.stack([np.eye(3), _rotation(np.radians(30)), _rotation(np.radians(-170))])
    assert rotation_error_deg(r, np.stack([np.eye(3)] * 3)) == pytest.approx([0, 30, 170])
    with pytest.raises(ValueError):
        rotation_error_deg(r[:2], r)


def test_orientation_metrics_separate_rotation_from_pose():
    from mcss_studio.core.model import canonical_frame
    from trainer.metrics import orientation_metrics

    gt = _pose(6, n=3)
    gt = gt - gt[:, :1]
    r_gt, canonical = canonical_frame(gt)
    off = r_gt @ _rotation(np.radians(40))  # every prediction 40 degrees off, pose exact
    m = orientation_metrics(off, canonical, gt)
    assert m["rot_err_deg"] == pytest.approx(40.0)
    assert m["mpjpe_true_rot"] == pytest.approx(0.0, abs=1e-9)
    moved = canonical.copy()
    moved[:, 5, 0] += 17.0  # one joint of 17 off by 17 mm: 1 mm mean with the true rotation
    assert orientation_metrics(r_gt, moved, gt)["mpjpe_true_rot"] == pytest.approx(1.0)
    assert orientation_metrics(r_gt, moved, gt)["rot_err_deg"] == pytest.approx(0.0, abs=1e-6)


# -- chance levels ----------------------------------------------------------------------------
def test_chance_hit_hand_cases():
    from trainer.metrics import chance_hit_at_k

    one = np.array([[True, False, False, False]])  # r = 1 of G = 4
    assert chance_hit_at_k(one, 1) == pytest.approx(1 / 4)
    assert chance_hit_at_k(one, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    two = np.array([[True, True, False, False]])
    assert chance_hit_at_k(two, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert chance_hit_at_k(two, 3) == pytest.approx(1.0)  # only 2 irrelevant items exist
    assert chance_hit_at_k(two, 10) == pytest.approx(1.0)
    none = np.zeros((1, 4), bool)
    both = np.concatenate([one, none])
    assert chance_hit_at_k(both, 1) == pytest.approx((1 / 4 + 0) / 2)


def test_chance_map_hand_case():
    from trainer.metrics import chance_map_at_k

    # one relevant item uniformly at rank 1..4: AP@2 = 1 at rank 1, 1/2 at rank 2, else 0
    assert chance_map_at_k(np.array([[False, True, False, False]]), 2) == pytest.approx(
        1 / 4 + 1 / 8)
    assert chance_map_at_k(np.ones((2, 3), bool), 10) == pytest.approx(1.0)
    assert chance_map_at_k(np.zeros((2, 3), bool), 10) == 0.0


def test_chance_levels_equal_the_mean_over_every_ranking():
    """Exact: the average of hit@k / map@k over all G! orderings is the chance level."""
    from itertools import permutations

    from trainer.metrics import chance_hit_at_k, chance_map_at_k

    relevant = np.array([[True, False, True, False, False],
                         [False, False, False, False, True],
                         [True, True, True, False, True],
                         [False] * 5])
    orders = np.array(list(permutations(range(5))))
    for k in (1, 2, 3, 5):
        hits = [hit_at_k(relevant, k, np.broadcast_to(o, relevant.shape)) for o in orders]
        maps = [map_at_k(relevant, k, np.broadcast_to(o, relevant.shape)) for o in orders]
        assert chance_hit_at_k(relevant, k) == pytest.approx(np.mean(hits))
        assert chance_map_at_k(relevant, k) == pytest.approx(np.mean(maps))
