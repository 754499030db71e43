"""Cross-view retrieval figures and their chance levels on a hand-made test set."""

import numpy as np
import pytest

from trainer.evaluate import Predictions, retrieval_metrics


def _bent(angle_deg: float) -> np.ndarray:
    """A 17-joint stick figure with one arm raised by `angle_deg` (distinct poses)."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 300, size=(17, 3))
    a = np.radians(angle_deg)
    base[13] = base[12] + 400 * np.array([np.cos(a), 0.0, np.sin(a)])
    base[16] = base[15] - 400 * np.array([np.cos(a), np.sin(a), 0.0])
    return base


def _predictions(embedding_of_instant) -> Predictions:
    # 4 instants of one sequence, frames 0, 10, 20, 30; instants 0 and 1 share a pose
    poses = [_bent(0), _bent(0), _bent(90), _bent(180)]
    frames = np.array([0, 10, 20, 30])
    seq, frame, cam, gt, emb = [], [], [], [], []
    for c in range(2):
        for i, f in enumerate(frames):
            seq.append(0)
            frame.append(f)
            cam.append(c)
            gt.append(poses[i])
            emb.append(embedding_of_instant(i, c))
    gt = np.array(gt)
    return Predictions(np.array(seq), np.array(frame), np.array(cam), gt, gt.copy(),
                       np.array(emb, dtype=np.float64))


def test_retrieval_chance_from_the_relevance_structure():
    m = retrieval_metrics(_predictions(lambda i, c: np.eye(4)[i]))  # perfect same-instant
    # kappa relevance: instants 0 and 1 relevant to each other (r = 2, 2, 1, 1 of G = 4)
    assert m["chance_hit@1"] == pytest.approx((2 + 2 + 1 + 1) / 4 / 4)
    assert m["chance_hit@1_kappa0.05"] == pytest.approx(0.375)
    # strict: only the same instant (frames are 10 apart, window +-2): r = 1 of 4
    assert m["chance_strict_hit@1"] == pytest.approx(0.25)
    assert m["chance_strict_hit@10"] == pytest.approx(1.0)  # k >= G finds everything
    assert m["hit@1"] == 1.0 and m["strict_hit@1"] == 1.0 and m["map@10"] == pytest.approx(1.0)
    # mAP chance, query with r = 2 of 4 at k = 10: E[AP] = (1/2 + (1/2 + 1/6)/2 + (1/2 + 2/6)/3
    # + (1/2 + 3/6)/4) / 2; with r = 1: (1/4)(1 + 1/2 + 1/3 + 1/4)
    r2 = (0.5 + (0.5 + 1 / 6) / 2 + (0.5 + 2 / 6) / 3 + (0.5 + 3 / 6) / 4) / 2
    r1 = 0.25 * (1 + 1 / 2 + 1 / 3 + 1 / 4)
    assert m["chance_map@10"] == pytest.approx((2 * r2 + 2 * r1) / 4)


def test_retrieval_of_a_view_dependent_embedding():
    # camera 1 sees the instants in reverse embedding order: nearest is the wrong instant
    m = retrieval_metrics(_predictions(lambda i, c: np.eye(4)[i if c == 0 else 3 - i]))
    # query i (camera 0) retrieves gallery instant 3 - i first: relevant only for none of
    # 0->3, 1->2, 2->1, 3->0 (poses differ); both pairs (0,1) and (1,0) directions alike
    assert m["hit@1"] == 0.0 and m["strict_hit@1"] == 0.0
    assert m["chance_hit@1"] == pytest.approx(0.375)  # chance does not depend on the model
