#!/usr/bin/env bash
# Run the test suite: the core tier once, then the host tier once per ComfyUI tree.
#
#   scripts/run_tests.sh [extra pytest args...]
#
# Trees: $COMFYUI_PATHS (colon-separated) if set, else what `tools/_comfy.py --all` finds:
# $COMFYUI_PATH, else the ComfyUI enclosing this pack, else ~/comfy/ComfyUI and ~/comfy/ComfyUI-0.8
# where present. Python: $KINEMA_PYTHON if set, else each tree's own environment (scripts/bootstrap.sh TREE).
# Exits non-zero if any run failed. No ComfyUI found is a failure (one line says how to get one) unless
# KINEMA_ALLOW_SKIPS=1, which runs the host tier skipped; a listed tree that is not a ComfyUI tree is a failure.
# The summary counts each tier's passed / skipped / failed tests (pytest -ra lists every skip's reason above it).
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 2
allow_skips="${KINEMA_ALLOW_SKIPS:-}"

python_for() {  # python_for [tree]: $KINEMA_PYTHON, else the tree's own environment
  if [ -n "${KINEMA_PYTHON:-}" ]; then echo "$KINEMA_PYTHON"; else echo "$(bash scripts/bootstrap.sh "$@")/bin/python"; fi
}

counts() {  # the counts from pytest's closing line in log $1, e.g. "218 passed, 2 skipped"
  tail -n 1 "$1" | grep -oE '[0-9]+ (passed|failed|skipped|errors?|xfailed|xpassed)' | paste -sd, - | sed 's/,/, /g'
}
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

summary=()
failed=0

version_of() {  # version string from <tree>/comfyui_version.py
  sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' "$1/comfyui_version.py" 2>/dev/null | head -n 1
}

record() {  # record <label> <exit code> [ok-if-5]
  local label="$1" rc="$2" allow5="${3:-}" n
  n="$(counts "$log")"
  if [ "$rc" -eq 0 ] || { [ "$rc" -eq 5 ] && [ -n "$allow5" ]; }; then
    summary+=("$label: passed (${n:-no tests})")
  else
    summary+=("$label: FAILED (pytest exit $rc; ${n:-no count})")
    failed=1
  fi
  echo "== ${summary[-1]}"
}

echo "== core tier"
"$(python_for)" -m pytest tests/core -q "$@" 2>&1 | tee "$log"
record "core" "${PIPESTATUS[0]}"

trees=()
if [ -n "${COMFYUI_PATHS:-}" ]; then
  IFS=: read -r -a trees <<< "$COMFYUI_PATHS"
else
  if found="$(python3 tools/_comfy.py --all 2>&1)"; then
    mapfile -t trees <<< "$found"
  elif [ -n "${COMFYUI_PATH:-}" ] || [ -z "$allow_skips" ]; then
    summary+=("host: FAILED ($found; unpack ComfyUI 0.3.64 at ~/comfy/ComfyUI and 0.8.0 at ~/comfy/ComfyUI-0.8, or set COMFYUI_PATHS; KINEMA_ALLOW_SKIPS=1 skips the host tier)"); failed=1
    echo "== ${summary[-1]}"
  else
    echo "== host tier: $found (KINEMA_ALLOW_SKIPS=1)"
    COMFYUI_PATH="" "$(python_for)" -m pytest tests/host -q "$@" 2>&1 | tee "$log"
    record "host (no ComfyUI; skipped, KINEMA_ALLOW_SKIPS=1)" "${PIPESTATUS[0]}" allow5
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
  COMFYUI_PATH="$tree" "$(python_for "$tree")" -m pytest tests/host -q --durations=15 "$@" 2>&1 | tee "$log"
  record "$label" "${PIPESTATUS[0]}"
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
