"""Speed and memory of our full-size motion modules against diffusers' MotionAdapter, same weights, same inputs.

One pass runs every motion module of a v2 SD1.5 set (21 modules) once, each on its own level's input:
(batch * frames, C, s, s) with s = latent / 2**level. Timing runs both implementations in this process,
repeats interleaved so background load hits both alike; peak memory is measured for each in its own child
process so the two do not share an allocator. Weights come from the same seed everywhere.

    python bench/bench_motion_module.py                                   # CPU, fp32, all threads
    python bench/bench_motion_module.py --device cuda --dtype fp16 --latent 64
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from motion_modules.model import MotionCall, MotionModel  # noqa: E402
from motion_modules.spec import standard_spec  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GOALS = {"cpu": 1.0, "cuda": 0.8}  # ours / diffusers, lower is better
SEED = 0


def module_inputs(model: MotionModel, latent: int, batch: int, frames: int) -> dict[str, tuple[int, ...]]:
    """Input shape of every motion module: its level's channels and side (down i: latent/2^i; up i mirrors)."""
    levels = len(model.down_blocks)
    shapes = {}
    for name in model.module_names():
        seat, index = name.split(".")[0], int(name.split(".")[1]) if name.startswith(("down", "up")) else 0
        level = {"down_blocks": index, "mid_block": levels - 1, "up_blocks": levels - 1 - index}[seat]
        channels = model.get_submodule(name).temporal_transformer.proj_in.in_features
        shapes[name] = (batch * frames, channels, latent >> level, latent >> level)
    return shapes


def build_weights() -> tuple[object, dict[str, torch.Tensor]]:
    """The v2 SD1.5 spec and seeded random weights in the original key layout."""
    spec = standard_spec("v2")
    torch.manual_seed(SEED)
    return spec, MotionModel(spec).state_dict()


def build_ours(spec, sd, device, dtype):
    """Our MotionModel with the weights; returns name -> callable(x)."""
    model = MotionModel(spec, device=device, dtype=dtype)
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model, lambda name, frames: (lambda x: model.get_submodule(name)(x, MotionCall(frames)))


def build_diffusers(spec, sd, device, dtype):
    """diffusers' MotionAdapter from the same weights through its own single-file conversion (local config)."""
    from diffusers import MotionAdapter
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its fp32 `.to(dtype)` notice is noise here
    with tempfile.TemporaryDirectory() as config_dir:
        config = {"_class_name": "MotionAdapter", "block_out_channels": list(spec.widths),
                  "motion_layers_per_block": 2, "motion_mid_block_layers_per_block": 1,
                  "motion_num_attention_heads": spec.heads, "motion_norm_num_groups": 32,
                  "motion_max_seq_length": spec.pe_length, "use_motion_mid_block": spec.has_mid_block}
        Path(config_dir, "config.json").write_text(json.dumps(config))
        adapter = MotionAdapter.from_single_file(sd, config=config_dir, local_files_only=True)
    adapter.to(device=device, dtype=dtype).eval()
    return adapter, lambda name, frames: (lambda x: adapter.get_submodule(name)(x, num_frames=frames))


def _rss_kib(field: str) -> int:
    """A VmRSS / VmHWM figure of this process in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """Extra memory a block needs at its peak: CUDA allocator stats, or RSS high-water mark on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mib = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:  # writing 5 resets VmHWM to the current RSS (Linux >= 4.0)
                Path("/proc/self/clear_refs").write_text("5")
                self.base = _rss_kib("VmRSS") * 1024
            except OSError:
                self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            try:
                peak = _rss_kib("VmHWM") * 1024
            except (OSError, KeyError):
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.mib = (peak - self.base) / 2**20


def timed_pass(run, inputs: dict[str, torch.Tensor], frames: int, device: torch.device) -> dict[str, float]:
    """Seconds per module for one pass over every module."""
    seconds = {}
    for name, x in inputs.items():
        forward = run(name, frames)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        forward(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[name] = time.perf_counter() - start
    return seconds


def make_inputs(spec, args, device, dtype) -> dict[str, torch.Tensor]:
    """Seeded random input for every module at its level's shape."""
    shapes = module_inputs(MotionModel(spec, device="meta"), args.latent, args.batch, args.frames)
    generator = torch.Generator().manual_seed(SEED + 1)
    return {name: torch.randn(shape, generator=generator).to(device, dtype) for name, shape in shapes.items()}


def time_both(args) -> dict[str, dict]:
    """Warm up both implementations, then time repeats interleaved (alternating who goes first)."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    spec, sd = build_weights()
    runs = {"ours": build_ours(spec, sd, device, dtype)[1], "diffusers": build_diffusers(spec, sd, device, dtype)[1]}
    del sd
    inputs = make_inputs(spec, args, device, dtype)
    passes: dict[str, list[dict[str, float]]] = {impl: [] for impl in runs}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for run in runs.values():
                timed_pass(run, inputs, args.frames, device)
        for r in range(args.repeats):
            for impl in (("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours")):
                passes[impl].append(timed_pass(runs[impl], inputs, args.frames, device))
    return {impl: {"median_s": statistics.median(sum(p.values()) for p in done),
                   "runs_s": [sum(p.values()) for p in done],
                   "per_module_median_ms": {n: 1e3 * statistics.median(p[n] for p in done) for n in inputs},
                   "input_shapes": {n: list(x.shape) for n, x in inputs.items()}}
            for impl, done in passes.items()}


def memory_worker(args) -> dict:
    """In a fresh process: build one implementation and measure the extra peak memory of one pass."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    spec, sd = build_weights()
    run = (build_ours if args.worker == "ours" else build_diffusers)(spec, sd, device, dtype)[1]
    del sd
    inputs = make_inputs(spec, args, device, dtype)
    with torch.inference_mode(), PeakMemory(device) as memory:
        timed_pass(run, inputs, args.frames, device)
    return {"peak_extra_mib": memory.mib}


def run_child(impl: str, args) -> dict:
    """Run one implementation's memory measurement in a fresh interpreter and read its JSON line."""
    argv = [sys.executable, __file__, "--worker", impl, "--device", args.device, "--dtype", args.dtype,
            "--latent", str(args.latent), "--frames", str(args.frames), "--batch", str(args.batch),
            "--threads", str(args.threads)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the {impl} worker failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def seat_of(name: str) -> str:
    """``down_blocks.1.motion_modules.0`` -> ``down.1``."""
    parts = name.split(".")
    return "mid" if parts[0] == "mid_block" else f"{parts[0].split('_')[0]}.{parts[1]}"


def report(args, ours: dict, theirs: dict) -> dict:
    """Print the comparison and return the record written to JSON."""
    ratio = ours["median_s"] / theirs["median_s"]
    goal = GOALS[torch.device(args.device).type]
    sides = "/".join(str(args.latent >> i) for i in range(4))
    print(f"motion modules: {len(ours['per_module_median_ms'])} (SD1.5 v2 layout, 453.2M params) · latent "
          f"{args.latent} -> levels {sides} px · {args.frames} frames x batch {args.batch} · {args.device} "
          f"{args.dtype} · {args.threads} threads · {args.warmup} warm-up, median of {args.repeats}")
    print(f"{'seat':8}{'ours ms':>12}{'diffusers ms':>14}{'ratio':>8}")
    for seat in dict.fromkeys(seat_of(n) for n in ours["per_module_median_ms"]):
        a = sum(v for n, v in ours["per_module_median_ms"].items() if seat_of(n) == seat)
        b = sum(v for n, v in theirs["per_module_median_ms"].items() if seat_of(n) == seat)
        print(f"{seat:8}{a:12.1f}{b:14.1f}{a / b:8.2f}")
    for label, r in (("ours", ours), ("diffusers", theirs)):
        runs = ", ".join(f"{t:.3f}" for t in r["runs_s"])
        print(f"{label:10} median {r['median_s']:.3f} s  (runs {runs})  peak extra memory "
              f"{r['peak_extra_mib']:.0f} MiB")
    print(f"ratio ours/diffusers: {ratio:.3f}  (goal <= {goal} on {args.device}: "
          f"{'met' if ratio <= goal else 'NOT met'})")
    import diffusers

    return {"bench": "motion_module", "config": vars(args) | {"worker": None}, "ours": ours, "diffusers": theirs,
            "ratio": ratio, "goal": goal, "goal_met": ratio <= goal,
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "python": platform.python_version()},
            "machine": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
            or platform.machine(), "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--latent", type=int, default=32, help="latent side; SD1.5 512 px = 64")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2, help="clips per pass (2 = cond + uncond for CFG)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--worker", choices=("ours", "diffusers"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.latent < 8 or args.latent % 8:
        parser.error(f"--latent must be a positive multiple of 8 (four levels), but got {args.latent}")
    if args.warmup < 1 or args.repeats < 1:
        parser.error(f"--warmup and --repeats must be at least 1, but got {args.warmup} and {args.repeats}")
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(memory_worker(args)))
        return
    timings = time_both(args)
    ours, theirs = (timings[impl] | run_child(impl, args) for impl in ("ours", "diffusers"))
    record = report(args, ours, theirs)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"motion_module-{args.device.replace(':', '')}-{args.dtype}-latent{args.latent}-{stamp}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
