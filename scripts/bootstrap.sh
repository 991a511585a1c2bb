#!/usr/bin/env bash
# Create (once) and print the path of the Python environment for one ComfyUI tree.
#
#   scripts/bootstrap.sh [TREE]      # default: the first tree scripts/find_comfy.sh finds (none: no host packages)
#
# One environment per ComfyUI version (~/.cache/kinema/venv-<version>), so each tree runs with its own
# requirements (0.8.0: frontend 1.35.x and comfy-kitchen; 0.3.64: frontend 1.27.x). Each gets torch 2.14.1 +
# torchvision 0.29.1 (local wheels, pinned as constraints so no requirement pulls another torch), the tree's
# requirements.txt and the dev tools (pytest, diffusers, hypothesis, ruff). Rebuilt when any of those inputs change.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tree="${1:-$("$here/scripts/find_comfy.sh" | awk 'NR == 1')}"  # awk reads all: no SIGPIPE under pipefail
version="none"
if [ -n "$tree" ]; then
  version="$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' "$tree/comfyui_version.py" 2>/dev/null | head -n 1)"
  version="${version:-unknown}"
fi
venv="${KINEMA_VENV_BASE:-$HOME/.cache/kinema}/venv-$version"

stamp_src="$(cat "$here/scripts/bootstrap.sh" "$here/pyproject.toml"; [ -n "$tree" ] && cat "$tree/requirements.txt" || true)"
stamp="$(printf '%s' "$stamp_src" | sha256sum | cut -c1-16)"
if [ -f "$venv/.kinema-stamp" ] && [ "$(cat "$venv/.kinema-stamp")" = "$stamp" ]; then
  echo "$venv"; exit 0
fi

echo "bootstrap: building $venv (ComfyUI $version)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
constraints="$(mktemp)"; printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$constraints"
"${pip[@]}" torch==2.14.1 torchvision==0.29.1 >&2
if [ -n "$tree" ]; then
  grep -v -E '^(torch|torchvision|torchaudio)\s*$' "$tree/requirements.txt" > "$constraints.req"
  "${pip[@]}" -r "$constraints.req" -c "$constraints" >&2
fi
"${pip[@]}" -c "$constraints" einops "safetensors>=0.4.2" numpy pytest hypothesis diffusers ruff >&2
rm -f "$constraints" "$constraints.req"
echo "$stamp" > "$venv/.kinema-stamp"
echo "$venv"
