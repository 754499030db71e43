#!/usr/bin/env bash
# Reproduce mcss_studio/assets/bench_backbone.safetensors, the encoder that the bench's standard
# and full presets start every row from (mcss_studio/core/train_presets.py BENCH_BACKBONE):
# render the pretraining corpus (seeds 1000-1005: people and rooms no benchmark seed has) and
# train the bench's CPU-sized encoder on its 2D keypoints only, one thread, so that the same
# command writes the same bytes on one machine. About 10 min to render (2 processes) and 20 min
# to train on a 2-core CPU. WORK keeps the corpus for a rerun.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
PY="$ROOT/.venv/bin/python"
SEEDS=(1000 1001 1002 1003 1004 1005)
cd "$ROOT"
PYTHONPATH="$ROOT" "$PY" benchmarks/pretrain_backbone.py "$WORK" --seeds "${SEEDS[@]}" \
    --render-only --workers 2
PYTHONPATH="$ROOT" "$PY" benchmarks/pretrain_backbone.py "$WORK" --seeds "${SEEDS[@]}" \
    --steps 6000 --threads 1 --out "$ROOT/mcss_studio/assets/bench_backbone.safetensors"
