#!/usr/bin/env bash
# Set up MCSS Studio in ./.venv on Debian/Ubuntu: system libraries for Qt/OpenGL (and Xvfb when
# there is no display), torch (the 2.13.0 pin first where no torch is present), then the package.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again (it skips what is done).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"

"$PY" - <<'PYEOF' || { echo "MCSS Studio needs Python >= 3.10 (found $("$PY" --version 2>&1))" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PYEOF

# --- system packages (Debian/Ubuntu) -----------------------------------------------------------
apt_pkgs=(libgl1 libegl1 libgl1-mesa-dri libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0
          libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
          libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libfontconfig1 libdbus-1-3)
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    apt_pkgs+=(xvfb xauth)
fi
if command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    missing=()
    for p in "${apt_pkgs[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        echo "installing system packages: ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
fi

# --- Python environment ------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    # the pinned build first: a bare `torch` would pull gigabytes of CUDA packages on CPU machines
    "$VPY" -m pip install -q "torch==2.13.0"
fi
stamp=".venv/.mcss-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VPY" -m pip install -q -e ".[test,fast-knn]"  # fast-knn: faiss-cpu, optional at run time
    touch "$stamp"
fi
