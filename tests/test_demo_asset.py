"""The shipped demo model loads through the safe loader and predicts on crops of its size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcss_studio.core.checkpoint import load_checkpoint
from mcss_studio.core.inference import Predictor

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo_model.safetensors"


def test_demo_model_loads_and_predicts():
    model, meta = load_checkpoint(DEMO)
    size = int(meta["crop_size"])
    assert "run_dir" not in meta  # no local paths shipped
    crops = np.random.default_rng(0).integers(0, 255, (4, size, size, 3), dtype=np.uint8)
    out = Predictor(DEMO, device="cpu").predict(crops)
    assert out["pose_cam"].shape == (4, 17, 3) and np.isfinite(out["pose_cam"]).all()
    assert DEMO.stat().st_size < 8 * 2**20
