#!/usr/bin/env bash
# Reproduce assets/demo_model.safetensors: render the demo dataset (seed 0, the same one
# `mcss-studio --demo` opens), train a small MCSS model on it with our trainer, and keep the
# weights and metadata only (no optimiser state, no local paths). About 3 min on a 2-core CPU.
# The recipe is the bench's (mcss_studio/core/train_presets.py PRETRAINED): the encoder starts
# from the shipped bench backbone (2D-pretrained on other people), lr 5e-4, rotation_weight 0.1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
PY="$ROOT/.venv/bin/python"
[ -f "$WORK/demo/manifest.json" ] || "$ROOT/.venv/bin/mcss-data" synth "$WORK/demo" --preset demo --seed 0
"$PY" -m trainer.cli fit --data "$WORK/demo" --run-dir "$WORK/runs" --run-id demo \
    --crop-size 64 --width 16 --embedding-dim 64 --pose-hidden 256 --orientation-hidden 128 \
    --train-subjects S1,S9 --labelled-subjects S1,S9 --test-subjects S9 \
    --init-checkpoint "$ROOT/mcss_studio/assets/bench_backbone.safetensors" --lr 5e-4 \
    --rotation-weight 0.1 --steps 600 --seed 0 --device cpu --progress off
"$PY" - "$WORK/runs/demo/checkpoints/last.safetensors" "$ROOT/assets/demo_model.safetensors" <<'PYEOF'
import sys

from mcss_studio.core.checkpoint import load_checkpoint, save_checkpoint

model, meta = load_checkpoint(sys.argv[1])
# no local paths and no optimiser state: the folders of this run mean nothing elsewhere; the
# step it was saved at stays (what "Mine now" shows as its triplets' step)
meta["trained_steps"] = meta["training_state"]["step"]
for key in ("run_dir", "training_state"):
    meta.pop(key, None)
config = meta["train_config"]
for key in ("data", "cache_dir", "run_dir"):
    config[key] = ""
backbone = "mcss_studio/assets/bench_backbone.safetensors"
config["init_checkpoint"] = backbone
meta["init_checkpoint"] = dict(meta["init_checkpoint"], path=backbone)
meta["note"] = "MCSS Studio demo model: trained on the synthetic demo (S1, S9); for display only"
save_checkpoint(sys.argv[2], model, meta)
print("wrote", sys.argv[2])
PYEOF
