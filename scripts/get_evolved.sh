#!/usr/bin/env bash
# Get AnimateDiff-Evolved (pinned) for the side-by-side host tests (tests/host/test_beside_evolved.py).
#
#   bash scripts/get_evolved.sh
#
# Clones github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved at $KINEMA_EVOLVED_REF (default: the commit the tests
# were written against) into ~/.cache/kinema/ComfyUI-AnimateDiff-Evolved, never into the repo or a ComfyUI tree.
# Idempotent and never fatal: prints one line and exits 0; without it those tests skip with one line.
set -uo pipefail
url="https://github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved"
ref="${KINEMA_EVOLVED_REF:-d8d163cd90b1111f6227495e3467633676fbb346}"
dir="$HOME/.cache/kinema/ComfyUI-AnimateDiff-Evolved"

if [ "$(git -C "$dir" rev-parse HEAD 2>/dev/null)" = "$ref" ]; then
  echo "get_evolved: $dir is at $ref"; exit 0
fi
mkdir -p "$dir"
if git -C "$dir" init -q && { git -C "$dir" remote get-url origin >/dev/null 2>&1 || git -C "$dir" remote add origin "$url"; } \
   && git -C "$dir" fetch -q --depth 1 origin "$ref" && git -C "$dir" checkout -q --detach FETCH_HEAD; then
  echo "get_evolved: $dir at $ref"
else
  echo "get_evolved: could not fetch $url at $ref; the side-by-side tests will skip"
fi
exit 0
