"""torch.compile vs eager for one motion module (the Load Motion Module ``compile`` option's effect), no ComfyUI.

One full-width v2 motion module (random weights) at a UNet level's input ``(batch*frames, C, s, s)``; reports the
eager and compiled median pass times, their ratio, the first (compiling) call's wall time and the max output
difference. The option's gain grows with the spatial size: at tiny latents the module is bound by its weight reads.

    python bench/bench_compile.py                       # CPU fp32, C=320, s=32 (a 256 px clip's top level)
    python bench/bench_compile.py --device cuda --dtype fp16 --side 64
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from motion_modules.model import MotionCall, MotionModule  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def timed(fn, device: torch.device, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--channels", type=int, default=320)
    parser.add_argument("--side", type=int, default=32, help="spatial side of the level's input")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2, help="clips per call (2 = cond + uncond)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    module = MotionModule(args.channels, 8, 32).to(device, dtype).eval().requires_grad_(False)
    x = torch.randn(args.batch * args.frames, args.channels, args.side, args.side, device=device, dtype=dtype)
    call = MotionCall(args.frames)
    with torch.inference_mode():
        reference = module(x, call)
        eager = timed(lambda: module(x, call), device, args.repeats)
        compiled_module = torch.compile(module)
        first = timed(lambda: compiled_module(x, call), device, 1)[0]
        compiled = timed(lambda: compiled_module(x, call), device, args.repeats)
        diff = (compiled_module(x, call) - reference).abs().max().item()
    record = {"bench": "compile", "config": {k: str(v) for k, v in vars(args).items()},
              "eager_s": eager, "compiled_s": compiled, "first_call_s": first, "max_abs_diff": diff,
              "ratio_compiled_eager": statistics.median(compiled) / statistics.median(eager),
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(f"motion module C={args.channels} at {args.side}x{args.side}, {args.batch}x{args.frames} frames, "
          f"{args.device} {args.dtype}: eager {1e3 * statistics.median(eager):.0f} ms, compiled "
          f"{1e3 * statistics.median(compiled):.0f} ms (ratio {record['ratio_compiled_eager']:.3f}), first call "
          f"{first:.1f} s, max |diff| {diff:.1e}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compile-{args.device.replace(':', '')}-{args.dtype}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
