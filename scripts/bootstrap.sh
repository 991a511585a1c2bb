#!/usr/bin/env bash
# Create (once) and print the path of the Python environment the tests and the demo run in.
# Installs torch 2.14.1 + torchvision 0.29.1 (local wheels), the requirements of the ComfyUI found
# (oldest first, so one venv serves 0.3.64 and 0.8.0), and the dev tools (pytest, diffusers, hypothesis).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${KINEMA_VENV:-$HOME/.cache/kinema/venv}"
trees="$("$here/scripts/find_comfy.sh")"
first_tree="$(printf '%s\n' "$trees" | head -n 1)"

stamp_src="$(cat "$here/scripts/bootstrap.sh" "$here/pyproject.toml"; [ -n "$first_tree" ] && cat "$first_tree/requirements.txt" || true)"
stamp="$(printf '%s' "$stamp_src" | sha256sum | cut -c1-16)"
if [ -f "$venv/.kinema-stamp" ] && [ "$(cat "$venv/.kinema-stamp")" = "$stamp" ]; then
  echo "$venv"; exit 0
fi

echo "bootstrap: building $venv" >&2
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
constraints="$(mktemp)"; printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$constraints"
"${pip[@]}" torch==2.14.1 torchvision==0.29.1 >&2
if [ -n "$first_tree" ]; then
  grep -v -E '^(torch|torchvision|torchaudio)\s*$' "$first_tree/requirements.txt" > "$constraints.req"
  "${pip[@]}" -r "$constraints.req" -c "$constraints" >&2
fi
"${pip[@]}" -c "$constraints" einops "safetensors>=0.4.2" numpy pytest hypothesis diffusers ruff >&2
rm -f "$constraints" "$constraints.req"
echo "$stamp" > "$venv/.kinema-stamp"
echo "$venv"
