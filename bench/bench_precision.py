"""Half precision vs fp32: how far ours sampled in fp16 / bf16 lands from the same run in fp32.

The random full-size SD1.5 checkpoint is loaded once per compute dtype by core's checkpoint loader
(``model_options["dtype"]``), the random full-size v2 motion module is loaded by the pack and its weights converted
to that dtype; all runs share the noise, sigmas and sampler. The frames are decoded by one VAE (core's choice of
dtype), so the VAE's own error is common to all runs. Goal (GPU): decoded frames within 35 dB PSNR of fp32, i.e.
PSNR >= 35 dB. Quality of random weights is out of scope; this checks that half precision computes the same
animation, not a nice one.

    python bench/bench_precision.py --device cuda --size 512 --steps 8
    python bench/bench_precision.py --tiny                                     # CPU smoke run, tiny models
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import torch  # noqa: E402

GOAL_PSNR_DB = 35.0


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def models_for(host: h.Host, args, dtype: torch.dtype):
    """(MODEL with our module attached, positive, negative, VAE or None) computing in ``dtype``."""
    attach = host.glue("attach")
    if args.tiny:
        base, motion, positive, negative = h.tiny_models(args.seed)
        base.model.diffusion_model.to(dtype)
        base.model.diffusion_model.dtype = dtype  # what BaseModel casts the input to
        vae = None
    else:
        base, clip, vae = h.load_full_sd15(dtype)
        positive, negative = h.encode(clip, h.POSITIVE), h.encode(clip, h.NEGATIVE)
        motion = h.load_full_motion(host, h.place_motion_file(host, "fp16"))
    motion.patcher.model.to(dtype)
    return attach.attach(base, motion), positive, negative, vae


def sample(model, positive, negative, args) -> torch.Tensor:
    """The denoised latent of one seeded run."""
    import comfy.sample

    side = args.size // 8
    latent = torch.zeros(args.frames, 4, side, side)
    noise = comfy.sample.prepare_noise(latent, args.seed)
    return comfy.sample.sample(model, noise, args.steps, args.cfg, args.sampler, args.scheduler, positive, negative,
                               latent, disable_pbar=True, seed=args.seed).float().cpu()


def main() -> None:
    parser = h.common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=64, steps=8)
    parser.add_argument("--tiny", action="store_true", help="tiny random models (develop the script, not results)")
    parser.add_argument("--dtypes", default="fp16,bf16", help="half dtypes compared against fp32")
    args = parser.parse_args()
    h.check_common(parser, args)
    h.quiet_logs(False)
    host = h.start_host(args.device, args.comfy, args.pytorch_attention)
    try:
        latents, vae = {}, None
        for name in ["fp32", *args.dtypes.split(",")]:
            model, positive, negative, vae_here = models_for(host, args, h.DTYPES[name])
            vae = vae or vae_here
            latents[name] = sample(model, positive, negative, args)
            h.log.info("%s: latent std %.4f, finite %s", name, latents[name].std(), latents[name].isfinite().all())
            del model
            host.env.unload_models()
        frames = {k: (vae.decode(v) if vae is not None else (v[:, :3] / 4 + 0.5).clamp(0, 1)) for k, v in latents.items()}
        rows, record = [], {"bench": "precision", "config": vars(args), "goal_psnr_db": GOAL_PSNR_DB, "runs": {}}
        for name in latents:
            if name == "fp32":
                continue
            diff = latents[name] - latents["fp32"]
            entry = {"psnr_db_frames": psnr(frames[name].clamp(0, 1), frames["fp32"].clamp(0, 1)),
                     "latent_rel_l2": (diff.norm() / latents["fp32"].norm()).item(),
                     "latent_max_abs_diff": diff.abs().max().item(), "finite": bool(latents[name].isfinite().all())}
            record["runs"][name] = entry
            rows.append([name, entry["psnr_db_frames"], entry["latent_rel_l2"], entry["latent_max_abs_diff"],
                         "met" if entry["psnr_db_frames"] >= GOAL_PSNR_DB else "NOT met"])
        record["environment"] = h.environment(args, host)
    finally:
        host.cleanup()
    print(f"precision · {'tiny' if args.tiny else 'full-size SD1.5 + v2'} · {args.size} px · {args.frames} frames · "
          f"{args.steps} steps {args.sampler}/{args.scheduler} cfg {args.cfg} · {args.device}")
    print(h.table(["dtype", "PSNR dB vs fp32 (frames)", "latent rel L2", "latent max |diff|", f"goal >= {GOAL_PSNR_DB} dB"],
                  rows))
    h.write_record(args, "precision", record)


if __name__ == "__main__":
    main()
