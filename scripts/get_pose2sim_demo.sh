#!/usr/bin/env bash
# Fetch the Pose2Sim demo recordings (BSD-3, inside the pose2sim 0.10.49 wheel on PyPI) into DIR
# (default data/pose2sim): Demo_SinglePerson, Demo_MultiPerson, Demo_Batch. Four 1080/1088x1920
# portrait cameras at 60 fps, 100 frames each, Qualisys calibration. Used by
# benchmarks/bench_boxes.py; nothing in the Studio downloads anything at run time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/data/pose2sim}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
WHEEL="${WHEEL:-}"  # a pose2sim-0.10.49 wheel already downloaded: no download
if [ -z "$WHEEL" ]; then
    "$PY" -m pip download --no-deps --quiet --dest "$TMP" pose2sim==0.10.49
    WHEEL="$TMP/pose2sim-0.10.49-py3-none-any.whl"
fi
mkdir -p "$OUT"
"$PY" - "$WHEEL" "$OUT" <<'PYEOF'
import sys, zipfile
from pathlib import Path
wheel, out = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        parts = Path(name).parts
        if len(parts) > 2 and parts[0] == "Pose2Sim" and parts[1].startswith("Demo_"):
            wanted = (parts[-2] == "videos" and parts[-1].endswith(".mp4")) or (
                parts[-2] == "calibration" and parts[-1].endswith(".qca.txt")) or (
                parts[-1] == "Config.toml")
            if wanted:
                target = out.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
print(f"Pose2Sim demo recordings in {out}")
PYEOF
