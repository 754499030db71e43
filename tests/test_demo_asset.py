"""The shipped demo model loads through the safe loader and predicts on crops of its size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcss_studio.core.checkpoint import checkpoint_digest, load_checkpoint
from mcss_studio.core.inference import Predictor
from mcss_studio.core.mine_now import checkpoint_step
from mcss_studio.core.train_presets import BENCH_BACKBONE

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo_model.safetensors"


def test_demo_model_loads_and_predicts():
    model, meta = load_checkpoint(DEMO)
    size = int(meta["crop_size"])
    assert "run_dir" not in meta  # no local paths shipped
    crops = np.random.default_rng(0).integers(0, 255, (4, size, size, 3), dtype=np.uint8)
    out = Predictor(DEMO, device="cpu").predict(crops)
    assert out["pose_cam"].shape == (4, 17, 3) and np.isfinite(out["pose_cam"]).all()
    assert DEMO.stat().st_size < 8 * 2**20


def test_demo_model_has_the_bench_recipe_and_no_local_paths():
    _, meta = load_checkpoint(DEMO)
    assert "training_state" not in meta  # weights only: no optimiser state shipped
    # but the step it was saved at, which "Mine now" shows ("ckpt 600")
    assert checkpoint_step(DEMO) == meta["train_config"]["steps"] == 600
    config = meta["train_config"]
    assert not any(isinstance(v, str) and v.startswith("/") for v in config.values())
    # made from the shipped backbone at the bench's recipe (assets/make_demo_checkpoint.sh)
    assert meta["init_checkpoint"]["digest"] == checkpoint_digest(BENCH_BACKBONE)
    assert meta["init_checkpoint"]["path"] == "mcss_studio/assets/bench_backbone.safetensors"
    assert (config["lr"], config["rotation_weight"]) == (5e-4, 0.1)
