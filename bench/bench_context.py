"""Context windows: per-step time and peak memory against clip length, and the seam metric per fuse method.

1. Linearity: for N frames at context 16 / overlap 4 (standard_static), time per sampling step divided by
   (windows(N) x time per step of one 16-frame window); 1.0 = exactly linear (goal 0.95-1.05).
2. Memory: extra peak memory of one sampling run at N frames over that at 16 (goal <= 1.05 at 256), each N in
   a fresh child process (CPU: rise of the RSS high-water mark VmHWM above the RSS before sampling; CUDA:
   torch.cuda.max_memory_allocated above what was allocated before).
3. Seams: a 64-frame clip per fuse method x FreeNoise on/off (tiny model, static windows), seam_metric of the
   output latent with the windows used (1.0 = seams change no more than the frames inside windows).

Everything runs the pack's real path: ``attach`` + ``apply_context`` (core's IndexListContextHandler subclass)
and ComfyUI's own sampling; the seam clips go through ``sample_animation`` (the Sample Animation node's glue).
Default models are the tiny SD1.5-shaped UNet and a tiny v2 module (random, CPU-friendly); ``--full`` uses the
random full-size SD1.5 checkpoint and full-size v2 module for parts 1-2.

    python bench/bench_context.py --memory-size 256                        # CPU, tiny models, 64 px timing
    python bench/bench_context.py --full --device cuda --dtype fp16 --size 512
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import torch  # noqa: E402

FUSES = ("flat", "pyramid", "overlap-linear", "gaussian")
GOALS = {"linearity": (0.95, 1.05), "memory_ratio_256_over_16": 1.05}


def options(args, fuse: str = "pyramid"):
    """ContextOptions for --context/--overlap, standard_static."""
    from kinema.sampling.context import ContextOptions, ContextSchedule, FuseMethod

    return ContextOptions(args.context, args.overlap, ContextSchedule.STANDARD_STATIC, FuseMethod(fuse))


def models(host: h.Host, args, full: bool):
    """(base MODEL, MOTION_MODULE, positive, negative) tiny or full size."""
    if not full:
        return h.tiny_models(args.seed)
    base, clip, _vae = h.load_full_sd15(h.DTYPES[args.dtype])
    positive, negative = h.encode(clip, h.POSITIVE), h.encode(clip, h.NEGATIVE)
    del clip, _vae
    return base, h.load_full_motion(host, h.place_motion_file(host, "fp16")), positive, negative


def windowed(host: h.Host, base, motion, args, fuse: str = "pyramid"):
    """``base`` with ``motion`` attached and context windows installed (the Apply Motion Module path)."""
    model = host.glue("attach").attach(base, motion)
    return host.glue("context").apply_context(model, host.glue("context").ContextPlan(options(args, fuse)),
                                              motion.spec)


def step_time(model, frames: int, positive, negative, args, steps: int | None = None, size: int | None = None):
    """Seconds per step of one sampling run of ``frames`` latents (callback timestamps; None for 1 step)."""
    import comfy.sample

    side = (size or args.size) // 8
    latent = torch.zeros(frames, 4, side, side)
    noise = comfy.sample.prepare_noise(latent, args.seed)
    clock = h.StepClock(torch.device(args.device))
    comfy.sample.sample(model, noise, steps or args.steps, args.cfg, args.sampler, args.scheduler, positive,
                        negative, latent, callback=clock.comfy_callback, disable_pbar=True, seed=args.seed)
    return clock.per_step() if len(clock.stamps) > 1 else None


def linearity(host: h.Host, args) -> dict:
    """Per-step time for every N, interleaved; ratio to windows x the 16-frame time."""
    from kinema.sampling.context import windows

    base, motion, positive, negative = models(host, args, args.full)
    model = windowed(host, base, motion, args)
    runs = {n: (lambda n=n: step_time(model, n, positive, negative, args)) for n in args.frames_list}
    timings = h.interleaved(runs, args.warmup, args.repeats)
    one = timings[args.context]["median_s"]
    out = {}
    for n, t in timings.items():
        count = len(windows(n, options(args)))
        out[n] = {**t, "windows": count, "linearity": t["median_s"] / (count * one)}
    return out


def memory_worker(args) -> dict:
    """In a fresh process: extra peak memory of one sampling run at ``args.worker_frames`` frames."""
    host = h.start_host(args.device, args.comfy, args.pytorch_attention)
    try:
        base, motion, positive, negative = models(host, args, args.full)
        model = windowed(host, base, motion, args)
        size = args.memory_size or args.size
        step_time(model, args.context, positive, negative, args, 1, size)  # load + one-time allocations
        h.release_freed()
        with h.PeakMemory(torch.device(args.device)) as memory:  # one step: the peak is the same every step
            step_time(model, args.worker_frames, positive, negative, args, 1, size)
        return {"frames": args.worker_frames, "size": size, "peak_extra_mib": memory.mib, "base_mib": memory.base_mib}
    finally:
        host.cleanup()


def memory(args) -> dict:
    """Run one child process per N and collect its figures."""
    results = {}
    for n in args.frames_list:
        argv = [sys.executable, __file__, "--worker-frames", str(n), "--device", args.device, "--dtype", args.dtype,
                "--size", str(args.size), "--memory-size", str(args.memory_size or args.size),
                "--steps", str(args.steps), "--context", str(args.context),
                "--overlap", str(args.overlap), "--threads", str(args.threads), "--seed", str(args.seed)]
        argv += ["--full"] if args.full else []
        argv += ["--comfy", str(args.comfy)] if args.comfy else []
        argv += ["--pytorch-attention"] if args.pytorch_attention else []
        h.log.info("memory child for %d frames", n)
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"the memory worker for {n} frames failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        results[n] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def seams(host: h.Host, args) -> list[dict]:
    """Seam metric of a 64-frame tiny clip per fuse method x FreeNoise."""
    from kinema.sampling.context import windows
    from kinema.sampling.seams import seam_metric

    sample = host.glue("sample")
    base, motion, positive, negative = h.tiny_models(args.seed)
    side = args.seam_size // 8
    latent = {"samples": torch.zeros(args.seam_frames, 4, side, side)}
    rows = []
    for fuse in FUSES:
        for freenoise in (False, True):
            plan = host.glue("context").ContextPlan(options(args, fuse))
            out = sample.sample_animation(base, motion, positive, negative, latent, args.seed, args.seam_steps,
                                          args.cfg, args.sampler, args.scheduler, context=plan,
                                          use_freenoise=freenoise)["samples"]
            used = windows(args.seam_frames, plan.options)
            rows.append({"fuse": fuse, "freenoise": freenoise, "seam_metric": seam_metric(out.float().cpu(), used),
                         "windows": used})
            h.log.info("seams %s freenoise=%s: %.4f", fuse, freenoise, rows[-1]["seam_metric"])
    return rows


def report(args, r: dict) -> None:
    """Print the three tables."""
    size = "full-size SD1.5 + v2 module" if args.full else "tiny SD1.5-shaped UNet + tiny v2 module (random)"
    print(f"context {args.context} / overlap {args.overlap}, standard_static · {size} · {args.size} px "
          f"({args.size // 8}x{args.size // 8} latent) · {args.sampler}/{args.scheduler} cfg {args.cfg} · "
          f"{args.device} {args.dtype} · {h.torch.get_num_threads()} threads · attention {r['attention_backend']} · "
          f"load {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}")
    lin, mem = r.get("linearity") or {}, r.get("memory") or {}
    if lin or mem:
        base_mem = mem.get(args.context, {}).get("peak_extra_mib")
        msize = next(iter(mem.values()), {}).get("size", args.size)
        rows = []
        for n in args.frames_list:
            t, m = lin.get(n), mem.get(n, {}).get("peak_extra_mib")
            timing = [t["windows"], 1e3 * t["median_s"], f"{100 * t['spread']:.1f}%", t["linearity"]] if t else \
                ["-"] * 4
            rows.append([n, *timing, f"{m:.1f}" if m is not None else "-",
                         f"{m / base_mem:.3f}" if m is not None and base_mem else "-"])
        print(h.table(["frames", "windows", "ms/step (median)", "spread", "step / (windows x 16-frame step)",
                       f"peak extra MiB ({msize} px)", "peak / peak@16"], rows))
        lo, hi = GOALS["linearity"]
        print(f"\nlinearity goal {lo}-{hi}; memory goal at {max(args.frames_list)} frames <= "
              f"{GOALS['memory_ratio_256_over_16']} x the 16-frame peak")
    if r.get("seams"):
        print(f"\nseam metric, {args.seam_frames} frames, tiny model, {args.seam_steps} steps, {args.seam_size} px, "
              f"windows {[w[0] for w in r['seams'][0]['windows']]} (starts, length {args.context})")
        print(h.table(["fuse", "FreeNoise off", "FreeNoise on"],
                      [[f, *(s["seam_metric"] for s in r["seams"] if s["fuse"] == f)] for f in FUSES]))


def main() -> None:
    parser = h.common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=64, steps=4)
    parser.add_argument("--full", action="store_true", help="full-size SD1.5 + v2 module for timing and memory")
    parser.add_argument("--frames-list", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32, 64, 128, 256])
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--seam-frames", type=int, default=64)
    parser.add_argument("--seam-steps", type=int, default=4)
    parser.add_argument("--memory-size", type=int, default=None,
                        help="px for the memory children (default --size; activations must dominate to mean much)")
    parser.add_argument("--seam-size", type=int, default=64, help="px of the seam clips (tiny model)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: timing,memory,seams")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--worker-frames", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    h.check_common(parser, args)
    if args.context not in args.frames_list:
        parser.error(f"--frames-list must include the context length {args.context}, but got {args.frames_list}")
    h.quiet_logs(args.verbose)
    if args.worker_frames:
        print(json.dumps(memory_worker(args)))
        return
    skip = set(filter(None, args.skip.split(",")))
    host = h.start_host(args.device, args.comfy, args.pytorch_attention)
    try:
        record = {"bench": "context", "config": vars(args), "goals": GOALS, "attention_backend": h.attention_backend(),
                  "models": "full" if args.full else "tiny", "load_average_before": h.load_average()}
        record["linearity"] = None if "timing" in skip else linearity(host, args)
        record["memory"] = None if "memory" in skip else memory(args)
        record["seams"] = None if "seams" in skip else seams(host, args)
        record["load_average_after"] = h.load_average()
        record["environment"] = h.environment(args, host)
    finally:
        host.cleanup()
    report(args, record)
    h.write_record(args, "context", record)


if __name__ == "__main__":
    main()
