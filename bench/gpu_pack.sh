#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what bench/gpu_suite.sh needs on a GPU machine that cannot install packages:
# a ComfyUI tree (ComfyUI.tar.gz), an unpacked AnimateDiff-Evolved (evolved/) and the wheels its Python lacks
# (wheels/: Python 3.12, manylinux x86-64). Run here, where pip reaches the registry; then carry .gpu.
#
#   bash bench/gpu_pack.sh COMFYUI_TREE EVOLVED_GIT_DIR [PACKAGE ...]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tree="${1:?usage: gpu_pack.sh COMFYUI_TREE EVOLVED_GIT_DIR [PACKAGE ...]}"; evolved="${2:?EVOLVED_GIT_DIR}"
shift 2
# what the CUDA image lacks for in-process ComfyUI (torchsde, av), diffusers (the reference) and Evolved's loader
# (pydantic for comfy_config); --no-deps: the image's own torch, numpy, transformers... must stay the ones used
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(torchsde trampoline av diffusers importlib_metadata pydantic pydantic-core
                                       annotated-types typing-inspection pydantic-settings python-dotenv)
dest="$here/.gpu"
rm -rf "$dest"; mkdir -p "$dest/wheels" "$dest/evolved"
grep -qx '/.gpu/' "$here/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$here/.git/info/exclude"
tar -czf "$dest/ComfyUI.tar.gz" -C "$tree" --exclude='./tests' --exclude='./tests-unit' --exclude='./.git' \
  --exclude='./comfy_api_nodes' --exclude='./custom_nodes/*' --exclude='./models/*' --exclude='./output' .
git --git-dir="$evolved" archive HEAD | tar -x -C "$dest/evolved"
git --git-dir="$evolved" rev-parse HEAD > "$dest/evolved/COMMIT"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$dest/wheels" "${packages[@]}"
du -sh "$dest"; ls "$dest/wheels"
