"""Train a motion module on synthetic Moving MNIST on top of a frozen image model, and measure what it adds.

    python scripts/moving_mnist_experiment.py [--device cpu|cuda] [--out DIR] [--quick] [--gif-dir DIR]

1. renders bouncing digits locally (train/moving_digits.py), 2. trains a tiny SD1.5-shaped ComfyUI UNet on single
frames and freezes it, 3. trains a motion module in the official v2 layout on 16-frame clips through the pack's
attach path and saves it as .safetensors, 4. reloads that file with Load Motion Module's loader and samples
held-out seeds with the image model alone and with the module, then prints a markdown table of temporal-
consistency measures (train/measures.py) beside real clips and writes one GIF of each.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import torch  # noqa: E402

log = logging.getLogger("moving_mnist")
QUICK = {"size": 16, "digit": 8, "frames": 8, "image_steps": 20, "image_batch": 16, "motion_steps": 6,
         "motion_clips": 1, "eval_seeds": 2, "sample_steps": 4}
REAL_SEED_BASE = 2**40  # held-out real clips; training draws seeds below 2**31
LOSS_TIMESTEPS = (100, 300, 500, 700, 900)  # where the held-out loss compares the module with the image model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; ``--quick`` overrides sizes and steps for a smoke run."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", type=Path, default=ROOT / "output" / "moving_mnist", help="results, module, GIFs")
    p.add_argument("--gif-dir", type=Path, default=None, help="also copy the GIFs and the table here")
    p.add_argument("--quick", action="store_true", help="tiny sizes and a few steps: a 1-2 minute smoke run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=32, help="UNet model_channels (a multiple of 32)")
    p.add_argument("--size", type=int, default=16, help="frame side in pixels")
    p.add_argument("--digit", type=int, default=10, help="digit height in pixels")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--digits", type=int, default=1, help="digits per clip (1 or 2)")
    p.add_argument("--max-speed", type=int, default=1, help="most pixels per frame along each axis")
    p.add_argument("--image-steps", type=int, default=900)
    p.add_argument("--image-batch", type=int, default=64)
    p.add_argument("--image-lr", type=float, default=2e-3)
    p.add_argument("--motion-steps", type=int, default=3000)
    p.add_argument("--motion-clips", type=int, default=4, help="clips per motion-module training step")
    p.add_argument("--motion-lr", type=float, default=3e-3)
    p.add_argument("--eval-seeds", type=int, default=8)
    p.add_argument("--sample-steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default; 1 suits a shared CPU)")
    p.add_argument("--reuse-image-model", action="store_true", help="load out/image_model.safetensors if present")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def import_host(device: str, base: Path):
    """ComfyUI (on ``device``) and the pack, as package ``kinema``; reuses an import already in this process."""
    import _comfy

    tree, why = _comfy.find_comfyui()
    if tree is None:
        raise SystemExit(why)
    if device == "cpu" or "comfy.model_management" in sys.modules:
        _comfy.import_comfy(tree, base)
    else:
        _comfy.put_tree_first(tree)
        import comfy.cli_args

        comfy.cli_args.args.base_directory = str(base)
        import comfy.model_management  # noqa: F401
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return _comfy.import_pack()


def write_gif(path: Path, clips: list[torch.Tensor], scale: int = 3, ms: int = 120) -> None:
    """Clips (frames, 1, H, W) in [-1, 1] side by side, ``scale``× nearest-neighbour, as a looping GIF."""
    from PIL import Image

    gap = torch.full((clips[0].shape[0], 1, clips[0].shape[2], 2), -0.4)
    row = torch.cat([t for c in clips for t in (c, gap)][:-1], dim=3)  # f 1 h (n·w + gaps)
    pixels = ((row[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    frames = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in pixels]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0, optimize=True)


def image_model(kinema, args, cfg, out: Path):
    """The frozen image model: trained now, or read back from an earlier run with ``--reuse-image-model``."""
    from kinema.train import models, moving_digits
    from safetensors.torch import load_file, save_file

    device = torch.device(args.device)
    patcher = models.image_model(args.width, args.seed, device)
    unet = patcher.model.diffusion_model
    saved = out / "image_model.safetensors"
    if args.reuse_image_model and saved.is_file():
        unet.load_state_dict(load_file(str(saved)))
        unet.eval().requires_grad_(False)
        return patcher, []
    losses = models.train_image_model(
        patcher, lambda s: moving_digits.still_frames(args.seed * 1_000_003 + s, args.image_batch, cfg),
        args.image_steps, args.image_lr, args.seed)
    save_file({k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}, str(saved))
    return patcher, losses


def loss_drop(losses: list[float]) -> str:
    """First-tenth vs last-tenth mean loss, e.g. ``0.412 -> 0.061``."""
    if not losses:
        return "reused"
    n = max(1, len(losses) // 10)
    return f"{sum(losses[:n]) / n:.4f} -> {sum(losses[-n:]) / n:.4f}"


def run(args: argparse.Namespace) -> dict:
    """The whole experiment; returns the table's numbers, timings and file paths."""
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    kinema = import_host(args.device, out / "comfy_base")
    from kinema.comfy_glue.loading import load_from_path
    from kinema.train import measures, models, moving_digits

    cfg = moving_digits.DigitsConfig(args.size, args.digit, args.frames, args.digits, args.max_speed)
    timings, start = {}, time.time()
    patcher, image_losses = image_model(kinema, args, cfg, out)
    timings["image model"] = time.time() - start

    spec = models.motion_spec(args.width)
    motion = models.new_motion_module(spec, args.seed, torch.device(args.device))
    seeds = lambda s: [1_000_000 + s * args.motion_clips + i for i in range(args.motion_clips)]  # noqa: E731
    motion_losses = models.train_motion_module(patcher, motion, lambda s: moving_digits.clips(seeds(s), cfg),
                                               args.frames, args.motion_steps, args.motion_lr, args.seed)
    module_path = out / "moving_mnist_v2.safetensors"
    models.save_motion_module(motion, str(module_path))
    timings["motion module"] = time.time() - start - timings["image model"]

    loaded = load_from_path(str(module_path), module_path.name)  # Load Motion Module's own loading function
    log.info("reloaded %s: %s", module_path.name, loaded.spec.describe())
    clips = {"real clips (held out)": [moving_digits.clip(REAL_SEED_BASE + i, cfg)[0] for i in range(args.eval_seeds)],
             "image model alone": [], "image model + motion module": []}
    for i in range(args.eval_seeds):
        clips["image model alone"].append(models.sample_clip(patcher, None, i, args.frames, args.size,
                                                             args.sample_steps))
        clips["image model + motion module"].append(models.sample_clip(patcher, loaded, i, args.frames, args.size,
                                                                       args.sample_steps))
    real = torch.cat(clips["real clips (held out)"])
    held_out = {name: models.held_out_loss(patcher, m, real, args.frames, LOSS_TIMESTEPS, args.seed)
                for name, m in (("image model alone", None), ("image model + motion module", loaded))}
    timings["evaluation"] = time.time() - start - timings["image model"] - timings["motion module"]
    results = {name: measures.summarise(c, args.digit) for name, c in clips.items()}
    gifs = {}
    for name, stem in zip(clips, ("real", "image_model_alone", "with_motion_module"), strict=True):
        gifs[name] = out / f"{stem}.gif"
        write_gif(gifs[name], clips[name][:4])
    table = measures.markdown_table(results)
    summary = {"table": table, "results": results, "timings_s": {k: round(v, 1) for k, v in timings.items()},
               "image_loss": loss_drop(image_losses), "motion_loss": loss_drop(motion_losses),
               "held_out_v_loss": {k: [round(x, 4) for x in v] for k, v in held_out.items()},
               "held_out_timesteps": list(LOSS_TIMESTEPS),
               "module": str(module_path), "spec": loaded.spec.describe(), "gifs": {k: str(v) for k, v in gifs.items()},
               "command": " ".join(["python", "scripts/moving_mnist_experiment.py", *sys.argv[1:]])}
    (out / "results.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    (out / "results.md").write_text(table + "\n")
    if args.gif_dir is not None:
        args.gif_dir.mkdir(parents=True, exist_ok=True)
        for path in [*gifs.values(), out / "results.md"]:
            shutil.copy(path, args.gif_dir / path.name)
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Parse, run, print the table and timings."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = run(parse_args(argv))
    print(summary["table"])
    alone, with_module = (summary["held_out_v_loss"][k] for k in ("image model alone", "image model + motion module"))
    print(f"\nheld-out v-loss at t={summary['held_out_timesteps']}: image model alone {alone} (mean "
          f"{sum(alone) / len(alone):.4f}), with motion module {with_module} (mean {sum(with_module) / len(alone):.4f})")
    print(f"loss image model {summary['image_loss']}, motion module {summary['motion_loss']}; "
          f"seconds {summary['timings_s']}; module {summary['module']} ({summary['spec']})")
    return summary


if __name__ == "__main__":
    main()
