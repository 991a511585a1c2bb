#!/usr/bin/env bash
# Main job: run an example workflow headless on the ComfyUI found, and write the animation.
#   bash scripts/run_example.sh [--workflow NAME] [--size PX] [--steps N] [--out DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(bash "$here/scripts/bootstrap.sh")"
exec "$venv/bin/python" "$here/scripts/run_example.py" "$@"
