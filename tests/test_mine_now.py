""""Mine now" (core/mine_now.py): the batch it mines, the rules it reads, and that its triplets
are exactly those of the trainer's own mining function on the same embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcss_studio.core.embeddings import EmbeddingIndex, SequenceInfo
from mcss_studio.core.mine_now import (
    IndexCrops,
    MiningRules,
    checkpoint_step,
    mine_now,
    mining_batch,
)


def hand_index(frames=(12, 5, 7), cameras=2, dim=8, seed=0) -> EmbeddingIndex:
    infos, row, instant = [], 0, 0
    for i, n in enumerate(frames):
        infos.append(SequenceInfo(f"s{i}", f"S{i % 2}", None, n,
                                  tuple(f"c{c}" for c in range(cameras)), row, instant))
        row, instant = row + n * cameras, instant + n
    rng = np.random.default_rng(seed)
    gt = rng.normal(size=(instant, 17, 3)).astype(np.float32)
    return EmbeddingIndex(infos, rng.normal(size=(row, dim)).astype(np.float32),
                          np.zeros((row, 17, 3), np.float32), gt)


def test_rules_default_to_the_trainers_and_read_a_runs_config():
    from trainer.config import TrainConfig

    trainer = TrainConfig()
    rules = MiningRules()
    for name in ("tau", "tau_max", "mining", "cross_sequence_negatives", "margin"):
        assert getattr(rules, name) == getattr(trainer, name), name
    read = MiningRules.from_config({"tau": 3, "tau_max": 9, "mining": "semihard",
                                    "cross_sequence_negatives": False, "margin": 1})
    assert read == MiningRules(3, 9, "semihard", False, 1.0)
    assert MiningRules.from_config({"tau": "x", "margin": None}) == MiningRules()
    assert MiningRules.from_config({"mining": "nonsense", "tau": 2}) == MiningRules()


def test_the_batch_is_the_window_of_the_query_sequence_plus_other_instants():
    index = hand_index()
    row = index.row("s0", 1, 5)  # sequence s0: rows 0..11 camera 0, 12..23 camera 1
    own = mining_batch(index, row, MiningRules(cross_sequence_negatives=False), frames=2)
    assert own.tolist() == [3, 4, 5, 6, 7, 15, 16, 17, 18, 19]
    edge = mining_batch(index, index.row("s0", 0, 0), MiningRules(cross_sequence_negatives=False),
                        frames=2)
    assert edge.tolist() == [0, 1, 2, 12, 13, 14]
    # other sequences: s1 (5 frames, rows 24..33) and s2 (7 frames, rows 34..47); 3 instants
    # spread over their 12 instants: 0 (s1 frame 0), 6 (s2 frame 1), 11 (s2 frame 6); camera 1
    # of s2 starts at row 41
    both = mining_batch(index, row, MiningRules(), frames=2, others=3)
    assert both.tolist() == own.tolist() + [24, 29, 35, 40, 42, 47]


@pytest.mark.parametrize("rules", [MiningRules(tau=2), MiningRules(tau=2, tau_max=4),
                                   MiningRules(tau=3, mining="semihard"),
                                   MiningRules(tau=2, cross_sequence_negatives=False),
                                   MiningRules(tau=2, mining="random")])
def test_mine_now_returns_what_the_trainers_function_returns(rules):
    from trainer.mining import mine_triplets  # the function trainer/train.py calls

    index = hand_index(seed=3)
    row = index.row("s0", 1, 6)
    rows = mining_batch(index, row, rules)
    emb = torch.from_numpy(np.asarray(index.embeddings[rows]))
    key = [torch.from_numpy(a[rows].astype(np.int64)) for a in
           (index.seq_id, index.frame, index.camera)]
    t = mine_triplets(emb, *key, rules.tau, rules.mining, torch.Generator().manual_seed(0),
                      rules.tau_max, rules.cross_sequence_negatives)
    expected = []
    for k in range(len(t)):
        a, p, n = (int(rows[int(x[k])]) for x in (t.anchor, t.positive, t.negative))
        if index.key(a)[0] == "s0" and index.key(a)[2] == 6:
            expected.append((index.key(a), index.key(p), index.key(n),
                             float(t.d_ap[k]) - float(t.d_an[k]) + rules.margin))
    expected.sort(key=lambda e: -e[3])
    records = mine_now(index, row, rules)
    key_of = lambda r: (r["sequence"], r["camera_index"], r["frame"])  # noqa: E731
    got = [(key_of(r["anchor"]), key_of(r["positive"]), key_of(r["negative"]), r["violation"])
           for r in records]
    assert len(got) == 2 == len(expected)  # 2 cameras: (0 -> 1) and (1 -> 0)
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    assert np.allclose([g[3] for g in got], [e[3] for e in expected])
    for r in records:  # the trainer's rules hold on what comes back
        a, n = r["anchor"], r["negative"]
        assert a["sequence"] != n["sequence"] or abs(a["frame"] - n["frame"]) >= rules.tau
        if not rules.cross_sequence_negatives:
            assert n["sequence"] == "s0"
        gap = abs(a["frame"] - n["frame"])
        if rules.tau_max and n["sequence"] == a["sequence"]:
            assert gap <= rules.tau_max
        e = np.asarray(index.embeddings)
        assert np.isclose(r["d_an"], np.linalg.norm(
            e[index.row(a["sequence"], a["camera_index"], a["frame"])]
            - e[index.row(n["sequence"], n["camera_index"], n["frame"])]), atol=1e-5)


def test_index_crops_give_true_pose_distances_from_the_index():
    index = hand_index()
    crops = IndexCrops(index)
    values, problem = crops.pose_distance(["s0", "s1", "gone"], np.array([0, 0, 0]),
                                          np.array([2, 2, 2]), np.array([0, 1, 2]),
                                          np.array([2, 3, 1]))
    assert problem == "" and values[0] < 1e-9 and values[1] > 0.1 and np.isnan(values[2])


def test_rules_of_a_checkpoint_are_its_training_config(tmp_path):
    from tests.gui_fixtures import make_checkpoint

    trained = make_checkpoint(tmp_path / "a.safetensors", meta={"train_config": {
        "tau": 4, "mining": "semihard", "margin": 0.5, "steps": 10}})
    assert MiningRules.of_checkpoint(trained) == MiningRules(tau=4, mining="semihard",
                                                             margin=0.5)
    plain = make_checkpoint(tmp_path / "b.safetensors")
    assert MiningRules.of_checkpoint(plain) == MiningRules()
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    assert MiningRules.of_checkpoint(tmp_path / "junk.safetensors") == MiningRules()


def test_mine_now_records_carry_the_checkpoints_training_step(tmp_path):
    import torch

    from mcss_studio.core.checkpoint import save_checkpoint
    from mcss_studio.core.model import MCSSModel, ModelConfig

    model = MCSSModel(ModelConfig(width=8, embedding_dim=16, pose_hidden=32,
                                  orientation_hidden=16))
    saved = save_checkpoint(tmp_path / "a.safetensors", model,
                            training_state={"step": 370, "torch_rng": torch.get_rng_state()})
    assert checkpoint_step(saved) == 370
    plain = save_checkpoint(tmp_path / "b.safetensors", model)  # weights only: no step
    assert checkpoint_step(plain) is None
    kept = save_checkpoint(tmp_path / "c.safetensors", model, {"trained_steps": 600})
    assert checkpoint_step(kept) == 600  # weights only, with the step it was saved at
    odd = save_checkpoint(tmp_path / "d.safetensors", model, {"trained_steps": "600"})
    assert checkpoint_step(odd) is None
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    assert checkpoint_step(tmp_path / "junk.safetensors") is None
    index = hand_index(seed=3)
    records = mine_now(index, index.row("s0", 1, 6), MiningRules(tau=2), step=370)
    assert records and {r["step"] for r in records} == {370}
