#!/usr/bin/env bash
# Print the ComfyUI trees to test against, one per line, oldest version first:
# $COMFYUI_PATHS (colon-separated), else $COMFYUI_PATH, else the ComfyUI enclosing this pack,
# else ~/comfy/ComfyUI and ~/comfy/ComfyUI-0.8 where present. Prints nothing when none is found.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
valid() { [ -f "$1/main.py" ] && [ -f "$1/comfy/model_patcher.py" ]; }
candidates=()
if [ -n "${COMFYUI_PATHS:-}" ]; then IFS=: read -r -a candidates <<< "$COMFYUI_PATHS"
elif [ -n "${COMFYUI_PATH:-}" ]; then candidates=("$COMFYUI_PATH")
elif [ "$(basename "$(dirname "$here")")" = "custom_nodes" ]; then candidates=("$(dirname "$(dirname "$here")")")
else candidates=("$HOME/comfy/ComfyUI" "$HOME/comfy/ComfyUI-0.8")
fi
for t in "${candidates[@]}"; do
  [ -n "$t" ] && valid "$t" && (cd "$t" && pwd)
done
exit 0
