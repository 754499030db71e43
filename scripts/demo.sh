#!/usr/bin/env bash
# Set everything up and open MCSS Studio on the built-in demo (generated on first use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    echo "no display: set DISPLAY, or use --screenshot FILE to render the window into a PNG" >&2
    exec xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/mcss-studio --demo "$@"
fi
exec .venv/bin/mcss-studio --demo "$@"
