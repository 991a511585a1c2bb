#!/usr/bin/env bash
# Run the test suite: the core tier once, then the host tier once per ComfyUI tree.
#
#   scripts/run_tests.sh [extra pytest args...]
#
# Trees: $COMFYUI_PATHS (colon-separated) if set, else what `tests/host/_comfy.py --all` finds:
# $COMFYUI_PATH, else the ComfyUI enclosing this pack, else ~/comfy/ComfyUI and ~/comfy/ComfyUI-0.8
# where present. Python: ${KINEMA_PYTHON:-python}.
# Exits non-zero if any run failed. Pytest's exit 5 (no tests collected) is accepted only for the host
# tier when no ComfyUI exists; a listed tree that is not a ComfyUI tree is a failure.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
py="${KINEMA_PYTHON:-python}"
cd "$root" || exit 2

summary=()
failed=0

version_of() {  # version string from <tree>/comfyui_version.py
  sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' "$1/comfyui_version.py" 2>/dev/null | head -n 1
}

record() {  # record <label> <exit code> [ok-if-5]
  local label="$1" rc="$2" allow5="${3:-}"
  if [ "$rc" -eq 0 ] || { [ "$rc" -eq 5 ] && [ -n "$allow5" ]; }; then
    summary+=("$label: passed")
  else
    summary+=("$label: FAILED (pytest exit $rc)")
    failed=1
  fi
  echo "== ${summary[-1]}"
}

echo "== core tier"
"$py" -m pytest tests/core -q "$@"
record "core" $?

trees=()
if [ -n "${COMFYUI_PATHS:-}" ]; then
  IFS=: read -r -a trees <<< "$COMFYUI_PATHS"
else
  if found="$("$py" tests/host/_comfy.py --all 2>&1)"; then
    mapfile -t trees <<< "$found"
  elif [ -n "${COMFYUI_PATH:-}" ]; then
    summary+=("host: FAILED ($found)"); failed=1
    echo "== ${summary[-1]}"
  else
    echo "== host tier: $found"
    COMFYUI_PATH="" "$py" -m pytest tests/host -q "$@"
    record "host (no ComfyUI; skipped)" $? allow5
  fi
fi

for tree in "${trees[@]}"; do
  [ -z "$tree" ] && continue
  if [ ! -f "$tree/main.py" ] || [ ! -f "$tree/comfy/model_patcher.py" ]; then
    summary+=("host $tree: FAILED (not a ComfyUI tree: needs main.py and comfy/model_patcher.py)"); failed=1
    echo "== ${summary[-1]}"
    continue
  fi
  label="host ComfyUI $(version_of "$tree") ($tree)"
  echo "== $label"
  COMFYUI_PATH="$tree" "$py" -m pytest tests/host -q "$@"
  record "$label" $?
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
