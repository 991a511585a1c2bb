"""FreeInit: time per iteration over plain sampling time, in one run (goal <= 1.02: the filter is negligible).

The same 16 latents sampled plainly and with FreeInit (``--iterations``, butterworth), interleaved, through
``comfy.sample.sample`` after Apply Motion Module's ``attach`` (tiny SD1.5-shaped UNet, tiny v2 module, random).
Time per step comes from the sampler's per-step callback over the whole run, ``(t_last - t_first) / (steps - 1)``:
for FreeInit that span also holds each re-initialisation (re-noise, 3-D FFT mix, noise inversion) and the
sampler's restart between iterations, so FreeInit's per-step time / plain per-step time is the cost of one
iteration over one plain run, with model loading (paid once either way) left out. The re-initialisation alone
is also timed and printed in milliseconds.

    python bench/bench_freeinit.py --threads 1            # CPU fp32, 64 px, 16 frames, 2 iterations
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import torch  # noqa: E402

GOAL = 1.02


def models(host: h.Host, args):
    """(plain MODEL, FreeInit MODEL, conds, options), tiny and random."""
    from _tiny import conditioning, loaded_motion, motion_state_dict, tiny_sd15_patcher
    from kinema.motion_modules import standard_spec
    from kinema.sampling.freeinit import FreeInitOptions

    spec = standard_spec("v2", widths=(32, 64, 128, 128))
    plain = host.glue("attach").attach(tiny_sd15_patcher(seed=args.seed), loaded_motion(spec, motion_state_dict(spec)))
    options = FreeInitOptions(args.iterations)
    return plain, host.glue("freeinit").with_freeinit(plain, options), (conditioning(0), conditioning(1)), options


def step_time(model, conds, args, expected_steps: int) -> float:
    """Seconds per step over one whole sampling run (all FreeInit iterations) of ``args.frames`` latents."""
    import comfy.sample

    latent = torch.zeros(args.frames, 4, args.size // 8, args.size // 8)
    noise = comfy.sample.prepare_noise(latent, args.seed)
    clock = h.StepClock(torch.device(args.device))
    comfy.sample.sample(model, noise, args.steps, args.cfg, args.sampler, args.scheduler, *conds, latent,
                        callback=clock.comfy_callback, disable_pbar=True, seed=args.seed)
    if len(clock.stamps) != expected_steps:
        raise RuntimeError(f"expected {expected_steps} steps, but the sampler reported {len(clock.stamps)}")
    return clock.per_step()


def reinit_ms(host: h.Host, model, options, args) -> float:
    """Median milliseconds of one re-initialisation at this clip size (re-noise, mix, inversion)."""
    fi = host.glue("freeinit")
    ms = model.get_model_object("model_sampling")
    shape = (args.frames, 4, args.size // 8, args.size // 8)
    x, noise, fresh = (torch.randn(shape, device=args.device) for _ in range(3))
    times = []
    for _ in range(20):
        start = time.perf_counter()
        fi.reinitialised_noise(ms, ms.sigma_max, True, x, torch.zeros_like(x), noise, fresh, options)
        h.synchronize(torch.device(args.device))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = h.common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=64, steps=4)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    h.check_common(parser, args)
    h.quiet_logs(args.verbose)
    host = h.start_host(args.device, args.comfy, args.pytorch_attention)
    try:
        plain, freeinit, conds, options = models(host, args)
        load_before = h.load_average()
        runs = h.interleaved({
            "plain": lambda: step_time(plain, conds, args, args.steps),
            f"FreeInit x{args.iterations}": lambda: step_time(freeinit, conds, args, args.steps * args.iterations),
        }, args.warmup, args.repeats)
        reinit = reinit_ms(host, plain, options, args)
        record = {"bench": "freeinit", "config": vars(args), "goal": GOAL, "runs": runs, "reinit_ms": reinit,
                  "load_average_before": load_before, "load_average_after": h.load_average(),
                  "environment": h.environment(args, host)}
    finally:
        host.cleanup()
    med = {k: v["median_s"] for k, v in runs.items()}
    ratio = med[f"FreeInit x{args.iterations}"] / med["plain"]
    record["ratio"] = ratio
    print(f"{args.frames} frames · {args.size} px · {args.steps} steps · FreeInit x{args.iterations} · tiny models · "
          f"{args.sampler} cfg {args.cfg} · {args.device} {args.dtype} · {torch.get_num_threads()} threads · load "
          f"{load_before[0]:.2f} -> {record['load_average_after'][0]:.2f}")
    print(h.table(["run", "ms/step (median)", "spread"],
                  [[k, 1e3 * v["median_s"], f"{100 * v['spread']:.1f}%"] for k, v in runs.items()]))
    print(f"\nre-initialisation alone: {reinit:.2f} ms ({reinit / (1e3 * med['plain'] * args.steps) * 100:.2f}% of a "
          f"plain run)\nFreeInit time per iteration / plain sampling time: {ratio:.3f} "
          f"(goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'})")
    h.write_record(args, "freeinit", record)


if __name__ == "__main__":
    main()
