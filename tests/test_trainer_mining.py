"""Mining returns valid triplets: positive = same instant other camera; negative never the same
instant and never closer than tau frames inside a sequence; strategies pick what they claim."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.losses import triplet_loss
from trainer.mining import mine_triplets, triplet_masks


def _batch(seed=0, n_seq=3, instants=5, views=3, frames=60):
    rng = np.random.default_rng(seed)
    seq, time, cam = [], [], []
    for s in range(n_seq):
        for t in rng.choice(frames, instants, replace=False):
            for c in rng.choice(4, views, replace=False):
                seq.append(s)
                time.append(t)
                cam.append(c)
    gen = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(len(seq), 8, generator=gen), dim=1)
    return emb, torch.tensor(seq), torch.tensor(time), torch.tensor(cam)


@pytest.mark.parametrize("strategy", ["hardest", "semihard", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplets_are_valid(strategy, seed):
    emb, seq, time, cam = _batch(seed)
    tau = 8
    tr = mine_triplets(emb, seq, time, cam, tau, strategy, torch.Generator().manual_seed(seed))
    assert len(tr) > 0
    a, p, n = tr.anchor, tr.positive, tr.negative
    assert torch.all(seq[a] == seq[p]) and torch.all(time[a] == time[p])
    assert torch.all(cam[a] != cam[p])
    same_seq = seq[a] == seq[n]
    assert not torch.any(same_seq & ((time[a] - time[n]).abs() < tau))
    assert not torch.any(same_seq & (time[a] == time[n]))
    d = torch.cdist(emb, emb)
    assert torch.allclose(tr.d_ap, d[a, p]) and torch.allclose(tr.d_an, d[a, n])


def test_every_positive_pair_is_used_once():
    emb, seq, time, cam = _batch(3, n_seq=2, instants=4, views=3)
    tr = mine_triplets(emb, seq, time, cam, tau=1)
    # 2 sequences x 4 instants x 3 views x 2 other views
    assert len(tr) == 2 * 4 * 3 * 2


def test_hardest_is_the_closest_valid_negative():
    emb, seq, time, cam = _batch(4)
    tau = 8
    tr = mine_triplets(emb, seq, time, cam, tau, "hardest")
    _, neg = triplet_masks(seq, time, cam, tau)
    d = torch.cdist(emb, emb)
    for a, n in zip(tr.anchor.tolist(), tr.negative.tolist()):
        assert d[a, n] == pytest.approx(float(d[a][neg[a]].min()))


def test_semihard_prefers_negatives_beyond_the_positive():
    emb, seq, time, cam = _batch(5)
    tr = mine_triplets(emb, seq, time, cam, 8, "semihard")
    hard = mine_triplets(emb, seq, time, cam, 8, "hardest")
    beyond = tr.d_an > tr.d_ap
    # where a semi-hard negative exists it is chosen, and it is never closer than the hardest
    assert beyond.float().mean() > 0.5
    assert torch.all(tr.d_an >= hard.d_an - 1e-6)


def test_temporal_hard_negative_in_same_sequence():
    # one sequence only: all negatives must come from the same sequence at |dt| >= tau
    seq = torch.zeros(6, dtype=torch.long)
    time = torch.tensor([0, 0, 3, 3, 20, 20])
    cam = torch.tensor([0, 1, 0, 1, 0, 1])
    emb = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    tr = mine_triplets(emb, seq, time, cam, tau=10)
    for a, n in zip(tr.anchor.tolist(), tr.negative.tolist()):
        assert abs(int(time[a]) - int(time[n])) >= 10
    # the instant at t=3 has negatives only at t=20; t=0 likewise
    assert set(tr.anchor.tolist()) == {0, 1, 2, 3, 4, 5}


def test_no_negative_means_no_triplet_and_tau_zero_refused():
    seq = torch.zeros(4, dtype=torch.long)
    time = torch.tensor([0, 0, 2, 2])
    cam = torch.tensor([0, 1, 0, 1])
    emb = F.normalize(torch.randn(4, 4), dim=1)
    assert len(mine_triplets(emb, seq, time, cam, tau=5)) == 0
    with pytest.raises(ValueError):
        mine_triplets(emb, seq, time, cam, tau=0)


def test_triplet_loss_hand_case_and_gradient():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    seq = torch.tensor([0, 0, 1])
    time = torch.tensor([0, 0, 0])
    cam = torch.tensor([0, 1, 0])
    tr = mine_triplets(emb.detach(), seq, time, cam, tau=1)
    loss = triplet_loss(emb, tr, margin=0.2)
    # anchor 0: d_ap = sqrt2, d_an = 0 -> sqrt2 + 0.2; anchor 1: d_ap = sqrt2, d_an = sqrt2 -> 0.2
    assert float(loss.detach()) == pytest.approx((2**0.5 + 0.2 + 0.2) / 2, rel=1e-5)
    loss.backward()
    assert emb.grad.abs().sum() > 0


def test_soft_margin_and_rotation_loss_hand_cases():
    from trainer.losses import rotation_loss

    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    tr = mine_triplets(emb.detach(), torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]),
                       torch.tensor([0, 1, 0]), tau=1)
    soft = triplet_loss(emb, tr, margin=0.2, soft=True)
    expected = (np.log1p(np.exp(2**0.5)) + np.log(2.0)) / 2  # softplus(d_ap - d_an) per triplet
    assert float(soft.detach()) == pytest.approx(expected, rel=1e-5)
    eye = torch.eye(3).expand(2, 3, 3)
    half_turn = torch.diag(torch.tensor([-1.0, 1.0, -1.0])).expand(2, 3, 3)
    assert float(rotation_loss(eye, eye)) == pytest.approx(0.0, abs=1e-7)
    assert float(rotation_loss(half_turn, eye)) == pytest.approx(8**0.5, rel=1e-6)
    assert float(rotation_loss(eye[:0], eye[:0])) == 0.0


def test_metric_weight_ramps_and_mining_warmup_config():
    from trainer.config import TrainConfig
    from trainer.train import metric_weight

    config = TrainConfig(lambda_metric=0.5, metric_warmup=10)
    assert metric_weight(config, 0) == pytest.approx(0.05)
    assert metric_weight(config, 4) == pytest.approx(0.25)
    assert metric_weight(config, 9) == metric_weight(config, 500) == pytest.approx(0.5)
    assert metric_weight(TrainConfig(lambda_metric=0.5), 0) == 0.5


@pytest.mark.parametrize("strategy", ["hardest", "semihard", "random"])
def test_negative_window_and_own_sequence_only(strategy):
    emb, seq, time, cam = _batch(3, n_seq=3, instants=8, frames=80)
    tr = mine_triplets(emb, seq, time, cam, 5, strategy, torch.Generator().manual_seed(0),
                       tau_max=20, other_sequences=False)
    assert len(tr) > 0
    a, n = tr.anchor, tr.negative
    assert torch.all(seq[a] == seq[n])  # only the anchor's own sequence
    dt = (time[a] - time[n]).abs()
    assert torch.all((dt >= 5) & (dt <= 20))
    windowed = mine_triplets(emb, seq, time, cam, 5, strategy, tau_max=20)
    same = seq[windowed.anchor] == seq[windowed.negative]
    dtw = (time[windowed.anchor] - time[windowed.negative]).abs()
    assert torch.all(~same | ((dtw >= 5) & (dtw <= 20)))
    with pytest.raises(ValueError):
        triplet_masks(seq, time, cam, tau=5, tau_max=3)
