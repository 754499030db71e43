"""One retrieval implementation for trainer and Studio: the trainer's names are core's code, the
per-pair figures average to the reported ones, and the Studio's figures of an index are it."""

from __future__ import annotations

import numpy as np

import trainer.metrics as trainer_metrics
from mcss_studio.core import retrieval
from mcss_studio.core.embeddings import EmbeddingIndex, SequenceInfo
from mcss_studio.gui.embedding_jobs import retrieval_figures
from trainer.evaluate import Predictions, retrieval_metrics


def test_trainer_uses_the_core_functions():
    for name in ("hit_at_k", "map_at_k", "chance_hit_at_k", "chance_map_at_k",
                 "rank_by_distance"):
        assert getattr(trainer_metrics, name) is getattr(retrieval, name)


def _data(frames: int = 6, cams: int = 3):
    rng = np.random.default_rng(0)
    poses = rng.normal(0, 300, (frames, 17, 3))
    seq = np.zeros(frames * cams, int)
    frame = np.tile(np.arange(frames), cams)
    cam = np.repeat(np.arange(cams), frames)
    emb = rng.normal(size=(frames * cams, 8)).astype(np.float32)
    return seq, frame, cam, poses[frame], emb, poses


def test_pairs_average_to_the_reported_figures_and_the_trainer_reports_them():
    seq, frame, cam, gt, emb, _ = _data()
    mean, pairs = retrieval.cross_view_retrieval(seq, frame, cam, gt, emb)
    assert len(pairs) == 6  # ordered pairs of 3 cameras
    for key in ("hit@1", "map@10", "strict_hit@10"):
        assert mean[key] == np.mean([p[key] for p in pairs.values()])
    trained = retrieval_metrics(Predictions(seq, frame, cam, gt, gt, emb))
    assert trained == mean


def test_studio_figures_of_an_index_are_the_protocol_on_its_rows():
    seq, frame, cam, gt, emb, poses = _data()
    info = SequenceInfo("s", "S1", None, 6, ("a", "b", "c"), 0, 0)
    index = EmbeddingIndex([info], emb, np.zeros((len(emb), 17, 3), np.float32),
                           gt=poses.astype(np.float32))
    report = retrieval_figures(index)
    expected, _ = retrieval.cross_view_retrieval(seq, frame, cam, poses[frame].astype(np.float32),
                                                 emb)
    assert report["instants"] == 6
    assert report["figures"] == expected
    index.gt = np.full_like(index.gt, np.nan)  # no ground truth: no figures
    assert retrieval_figures(index) is None
