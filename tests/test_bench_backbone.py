"""The shipped bench backbone: the standard and full presets start from it, it fits their
network, and it was made without any benchmark person or 3D label (issue 10's pretraining
rules); the quick preset still starts from random weights (its README tables stay
reproducible)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mcss_studio.core.checkpoint import checkpoint_digest, load_encoder, read_metadata
from mcss_studio.core.model import MCSSModel
from mcss_studio.core.train_presets import BENCH_BACKBONE, BENCH_CONFIGS, studio_presets
from trainer.config import TrainConfig
from trainer.train import model_config

BENCHMARK_SEEDS = set(range(6))  # tuned on 0-2, measured on 3-5


def test_standard_and_full_presets_start_from_the_shipped_file():
    assert Path(BENCH_BACKBONE).is_file()
    assert Path(BENCH_BACKBONE).stat().st_size < 8 * 2**20
    for name in ("standard", "full"):
        assert BENCH_CONFIGS[name]["init_checkpoint"] == BENCH_BACKBONE
        assert BENCH_CONFIGS[name]["lr"] == 5e-4 and BENCH_CONFIGS[name]["rotation_weight"] == 0.1
    assert "init_checkpoint" not in BENCH_CONFIGS["quick"]
    # the Studio's bench presets carry it too, so its "bench standard" runs are the bench's
    assert studio_presets()["bench standard: mcss"]["init_checkpoint"] == BENCH_BACKBONE


def test_the_backbone_fits_the_preset_network_and_changes_it():
    config = TrainConfig(**BENCH_CONFIGS["standard"])
    torch.manual_seed(0)
    model = MCSSModel(model_config(config))
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    record = load_encoder(config.init_checkpoint, model)
    assert record["digest"] == checkpoint_digest(BENCH_BACKBONE)
    assert (record["arch"], record["width"]) == (config.arch, config.width)
    after = model.encoder.state_dict()
    conv = [k for k in after if k.endswith("conv1.weight")]
    assert conv and all(not torch.equal(before[k], after[k]) for k in conv)


def test_the_backbone_saw_no_benchmark_person_and_no_3d_label():
    meta = read_metadata(BENCH_BACKBONE)
    assert meta["contents"] == "encoder"
    assert meta["recipe"] == "benchmarks/pretrain_backbone.py"
    assert not set(meta["corpus_seeds"]) & BENCHMARK_SEEDS
    recipe = meta["train_config"]
    assert recipe["pose_weight"] == 0 and recipe["rotation_weight"] == 0
    assert recipe["lambda_metric"] == 0 and recipe["keypoint_weight"] > 0
    assert recipe["init_checkpoint"] == ""  # from random weights, not from itself
    assert "run_dir" not in recipe  # no local paths shipped


@pytest.mark.parametrize("name", ["standard", "full"])
def test_preset_crop_and_network_match_the_backbone(name):
    recipe = read_metadata(BENCH_BACKBONE)["train_config"]
    for key in ("crop_size", "arch", "width", "stem", "crop_margin"):
        assert recipe[key] == TrainConfig(**BENCH_CONFIGS[name]).to_dict()[key], key
