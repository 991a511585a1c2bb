"""ControlNet under context windows: time per step with windows over the same without, 48 frames, in one run.

Four samplings of the same 48 latents, interleaved: a ControlNet (one hint per frame, core's Apply ControlNet)
with and without context windows, and no ControlNet with and without windows. Headline: ControlNet with windows
/ ControlNet without, per frame evaluated (windows of 16 with --overlap 0 evaluate each frame once; with an
overlap the raw ratio also includes the overlap's extra frames, so the table prints both). Goal <= 1.10: the
per-window hint slicing must not cost more than the windows themselves; the same ratio without a ControlNet is
printed next to it. Tiny SD1.5-shaped UNet and ControlNet, tiny v2 module with a 64-frame PE (so 48 frames also
run without windows), all random.

    python bench/bench_control.py                      # CPU fp32, 64 px, 48 frames, windows 16 / overlap 0
    python bench/bench_control.py --overlap 4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import torch  # noqa: E402

GOAL = 1.10


def models(host: h.Host, args):
    """(windowed MODEL, plain MODEL, MOTION spec, controlled conds, plain conds), tiny and random."""
    from _tiny import conditioning, loaded_motion, motion_state_dict, tiny_controlnet, tiny_sd15_patcher
    from kinema.motion_modules import standard_spec
    from kinema.sampling.context import ContextOptions

    import nodes

    spec = standard_spec("v2", widths=(32, 64, 128, 128), pe_length=64)
    model = host.glue("attach").attach(tiny_sd15_patcher(seed=args.seed), loaded_motion(spec, motion_state_dict(spec)))
    ctx = host.glue("context")
    windowed = ctx.apply_context(model, ctx.ContextPlan(ContextOptions(args.context, args.overlap)), spec)
    hint = torch.rand(args.frames, args.size, args.size, 3, generator=torch.Generator().manual_seed(args.seed))
    plain = (conditioning(0), conditioning(1))
    controlled = nodes.ControlNetApplyAdvanced().apply_controlnet(*plain, tiny_controlnet(args.seed + 1), hint,
                                                                  0.9, 0.0, 1.0)
    return windowed, model, controlled, plain


def step_time(model, conds, args) -> float:
    """Seconds per step (steps 2..N) of one sampling run of ``args.frames`` latents."""
    import comfy.sample

    latent = torch.zeros(args.frames, 4, args.size // 8, args.size // 8)
    noise = comfy.sample.prepare_noise(latent, args.seed)
    clock = h.StepClock(torch.device(args.device))
    comfy.sample.sample(model, noise, args.steps, args.cfg, args.sampler, args.scheduler, *conds, latent,
                        callback=clock.comfy_callback, disable_pbar=True, seed=args.seed)
    return clock.per_step()


def frame_evaluations(args) -> int:
    """Frames the UNet evaluates per step under the windows (the sum of window lengths)."""
    from kinema.sampling.context import ContextOptions, windows

    return sum(len(w) for w in windows(args.frames, ContextOptions(args.context, args.overlap)))


def main() -> None:
    parser = h.common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=64, steps=4)
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    parser.set_defaults(frames=48)
    args = parser.parse_args()
    h.check_common(parser, args)
    h.quiet_logs(args.verbose)
    host = h.start_host(args.device, args.comfy, args.pytorch_attention)
    try:
        windowed, model, controlled, plain = models(host, args)
        load_before = h.load_average()
        runs = h.interleaved({
            "controlnet, windows": lambda: step_time(windowed, controlled, args),
            "controlnet, no windows": lambda: step_time(model, controlled, args),
            "no controlnet, windows": lambda: step_time(windowed, plain, args),
            "no controlnet, no windows": lambda: step_time(model, plain, args),
        }, args.warmup, args.repeats)
        record = {"bench": "control", "config": vars(args), "goal": GOAL, "runs": runs,
                  "load_average_before": load_before, "load_average_after": h.load_average(),
                  "frame_evaluations": frame_evaluations(args), "environment": h.environment(args, host)}
    finally:
        host.cleanup()
    med = {k: v["median_s"] for k, v in runs.items()}
    per_frame = args.frames / record["frame_evaluations"]
    ratio = med["controlnet, windows"] / med["controlnet, no windows"]
    plain_ratio = med["no controlnet, windows"] / med["no controlnet, no windows"]
    record.update(ratio=ratio, ratio_per_frame=ratio * per_frame, plain_ratio_per_frame=plain_ratio * per_frame)
    print(f"{args.frames} frames · windows {args.context} / overlap {args.overlap} ({record['frame_evaluations']} "
          f"frame evaluations per step) · {args.size} px · tiny models · {args.sampler} cfg {args.cfg} · "
          f"{args.device} {args.dtype} · {torch.get_num_threads()} threads · load "
          f"{load_before[0]:.2f} -> {record['load_average_after'][0]:.2f}")
    print(h.table(["run", "ms/step (median)", "spread"],
                  [[k, 1e3 * v["median_s"], f"{100 * v['spread']:.1f}%"] for k, v in runs.items()]))
    print(f"\nControlNet, windows / no windows: {ratio:.3f} raw, {ratio * per_frame:.3f} per frame evaluated "
          f"(goal <= {GOAL}: {'met' if ratio * per_frame <= GOAL else 'NOT met'}); without a ControlNet "
          f"{plain_ratio * per_frame:.3f} per frame evaluated")
    h.write_record(args, "control", record)


if __name__ == "__main__":
    main()
