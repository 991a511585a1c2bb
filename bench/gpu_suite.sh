#!/usr/bin/env bash
# The GPU numbers in one prepared run (issue 17): every bench at the sizes GPU users choose by, fp16, the host's
# default attention, random full-size weights made here by the benches themselves (cached per machine).
#
#   bash bench/gpu_suite.sh                 # on a CUDA machine: all parts, ~8 min on one H200
#   bash bench/gpu_suite.sh --smoke         # anywhere: the same parts at tiny sizes on the CPU (catches typos)
#   bash bench/gpu_suite.sh --only overhead,precision
#
# Parts, in order: vs_incumbent (plain ComfyUI / ours / AnimateDiff-Evolved / diffusers, SD1.5, 16 frames, 512 px,
# CFG, warm repeats), overhead (16 frames vs 16 images, FLOPs, a torch.profiler table of ours), precision (fp16 and
# bf16 vs fp32, PSNR of decoded frames), sdxl (ours vs plain, SDXL + AnimateDiff-SDXL beta, 1024 px), context
# (16/64/256 frames in 16-frame windows: time linearity, peak memory), decode (Decode Frames vs core VAE Decode
# peak), compile (the compile option on one motion module). Each part runs under its own time limit; one that fails
# or times out is reported and the suite goes on; $KINEMA_SUITE_BUDGET (seconds) caps the whole run.
#
# Every JSON goes to $OUT (else bench/results/gpu-<time>); stdout ends with the summary table (bench/gpu_summary.py).
# ComfyUI: $COMFYUI_PATH, else the host tests' search. AnimateDiff-Evolved: $KINEMA_EVOLVED (bare git dir or an
# unpacked tree). On a machine that cannot install packages, bench/gpu_pack.sh (run where pip works) fills .gpu/
# with a ComfyUI tree, Evolved and the missing wheels; this script then uses them from there.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here" || exit 2

smoke=""; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --only) only="$2"; shift ;;
    *) echo "gpu_suite.sh: unknown argument '$1' (expected --smoke or --only PART[,PART])" >&2; exit 2 ;;
  esac
  shift
done

out="${OUT:-$here/bench/results/gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
py="${KINEMA_PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# carried dependencies (bench/gpu_pack.sh): wheels, a ComfyUI tree, AnimateDiff-Evolved
if ls "$here"/.gpu/wheels/*.whl >/dev/null 2>&1 && ! "$py" -c 'import av, torchsde, diffusers' 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kinema-site \
    "$here"/.gpu/wheels/*.whl && export PYTHONPATH="/tmp/kinema-site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -z "${COMFYUI_PATH:-}" ] && [ -f "$here/.gpu/ComfyUI.tar.gz" ]; then
  mkdir -p /tmp/kinema-comfy && tar -xzf "$here/.gpu/ComfyUI.tar.gz" -C /tmp/kinema-comfy && export COMFYUI_PATH=/tmp/kinema-comfy
fi
if [ -z "${KINEMA_EVOLVED:-}" ] && [ -d "$here/.gpu/evolved" ]; then export KINEMA_EVOLVED="$here/.gpu/evolved"; fi
export KINEMA_MODEL_CACHE="${KINEMA_MODEL_CACHE:-$HOME/.cache/kinema/models}"

comfy=(); [ -n "${COMFYUI_PATH:-}" ] && comfy=(--comfy "$COMFYUI_PATH")
evolved=(); [ -n "${KINEMA_EVOLVED:-}" ] && evolved=(--evolved-git "$KINEMA_EVOLVED")

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
             torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")'
  echo "ComfyUI ${COMFYUI_PATH:-(host tests search)}; Evolved ${KINEMA_EVOLVED:-(bench default)}"
} | tee "$out/environment.txt"

if [ -n "$smoke" ]; then
  gpu=(--device cpu --dtype fp32 --threads 1)  # tiny models: a thread pool only adds overhead
  declare -A part=(
    [vs_incumbent]="bench/bench_vs_incumbent.py ${gpu[*]} --size 64 --steps 3 --warmup 1 --repeats 1 --skip memory"
    [overhead]="bench/bench_overhead.py ${gpu[*]} --tiny --frames 4 --size 64 --steps 3 --warmup 1 --repeats 1 --profile"
    [precision]="bench/bench_precision.py --device cpu --tiny --frames 4 --size 64 --steps 3"
    [sdxl]="bench/bench_overhead.py ${gpu[*]} --tiny --sdxl --frames 4 --size 64 --steps 3 --warmup 1 --repeats 1"
    [context]="bench/bench_context.py ${gpu[*]} --frames-list 16,32 --skip seams --steps 3 --warmup 1 --repeats 1"
    [decode]="bench/bench_decode.py --device cpu --latent 8 --batches 4"
    [compile]="bench/bench_compile.py --device cpu --channels 64 --side 8 --repeats 1"
  )
  declare -A limit=([vs_incumbent]=900 [overhead]=300 [precision]=300 [sdxl]=300 [context]=300 [decode]=300 [compile]=300)
else
  gpu=(--device cuda --dtype fp16)
  declare -A part=(
    [vs_incumbent]="bench/bench_vs_incumbent.py ${gpu[*]} --size 512 --steps 6 --warmup 2 --repeats 5"
    [overhead]="bench/bench_overhead.py ${gpu[*]} --size 512 --steps 6 --warmup 2 --repeats 5 --profile"
    [precision]="bench/bench_precision.py --device cuda --size 512 --steps 6"
    [sdxl]="bench/bench_overhead.py ${gpu[*]} --sdxl --size 1024 --steps 4 --warmup 1 --repeats 3"
    [context]="bench/bench_context.py --full ${gpu[*]} --size 512 --frames-list 16,64,256 --skip seams --steps 4 --warmup 1 --repeats 2"
    [decode]="bench/bench_decode.py --device cuda --latent 64 --batches 4,8"
    [compile]="bench/bench_compile.py ${gpu[*]} --channels 320 --side 64 --repeats 5"
  )
  # seconds per part (SD1.5 and SDXL checkpoints are built by the first part that needs them: ~1 and ~2 min)
  declare -A limit=([vs_incumbent]=200 [overhead]=80 [precision]=70 [sdxl]=150 [context]=100 [decode]=40 [compile]=60)
fi
budget="${KINEMA_SUITE_BUDGET:-3600}"  # the whole suite: parts get what is left, and none starts with < 20 s
order=(vs_incumbent overhead precision sdxl context decode compile)

status=()
for name in "${order[@]}"; do
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  extra=("${comfy[@]}")
  [ "$name" = compile ] && extra=()
  [ "$name" = vs_incumbent ] && extra+=("${evolved[@]}")
  left=$(( budget - SECONDS ))
  if [ "$left" -lt 20 ]; then status+=("$name: not run (suite budget ${budget}s spent)"); continue; fi
  own=${limit[$name]}; [ "$own" -gt "$left" ] && own=$left
  echo "== $name (limit ${own}s): ${part[$name]}"
  start=$(date +%s)
  # shellcheck disable=SC2086  # the part's command line is split on purpose
  timeout "$own" "$py" ${part[$name]} "${extra[@]}" --out "$out" 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  status+=("$name: exit $rc in $(( $(date +%s) - start )) s")
  echo "== ${status[-1]}"
done

echo "== parts"
printf '%s\n' "${status[@]}" | tee "$out/parts.txt"
echo "== summary ($out)"
"$py" bench/gpu_summary.py "$out" | tee "$out/summary.md"
