#!/usr/bin/env bash
# Reproduce assets/demo_model.safetensors: render the demo dataset (seed 0, the same one
# `mcss-studio --demo` opens), train a small MCSS model on it with our trainer, and keep the
# weights and metadata only (no optimiser state, no local paths). about 5 min on a 2-core CPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
PY="$ROOT/.venv/bin/python"
[ -f "$WORK/demo/manifest.json" ] || "$ROOT/.venv/bin/mcss-data" synth "$WORK/demo" --preset demo --seed 0
"$PY" -m trainer.cli fit --data "$WORK/demo" --run-dir "$WORK/runs" --run-id demo \
    --crop-size 64 --width 16 --embedding-dim 64 --pose-hidden 256 --orientation-hidden 128 \
    --train-subjects S1,S9 --labelled-subjects S1,S9 --test-subjects S9 \
    --steps 600 --seed 0 --device cpu --progress off
"$PY" - "$WORK/runs/demo/checkpoints/last.safetensors" "$ROOT/assets/demo_model.safetensors" <<'PYEOF'
import sys

from mcss_studio.core.checkpoint import load_checkpoint, save_checkpoint

model, meta = load_checkpoint(sys.argv[1])
meta.pop("run_dir", None)
meta["note"] = "MCSS Studio demo model: trained on the synthetic demo (S1, S9); for display only"
save_checkpoint(sys.argv[2], model, meta)
print("wrote", sys.argv[2])
PYEOF
