"""Does a MotionLoRA trained on a clip moving right steer generated motion, and does strength −1 reverse it?

    python scripts/motion_lora_direction.py [--models DIR] [--steps N] [--lr LR] [--rank R] [--seeds N]

On the Moving-MNIST experiment's models (scripts/moving_mnist_experiment.py: the frozen tiny image model and the
trained v2 motion module in DIR), this 1. renders one 16-frame clip of a digit translating right at constant speed
(sub-pixel, no bounce), 2. trains a MotionLoRA on it with Train MotionLoRA's own glue (comfy_glue/train.py, which
saves the official layout and applies it back through Apply MotionLoRA's loader), 3. applies the saved file at
strengths +1, 0, −1 and samples held-out seeds through Sample Animation's path, and prints the mean horizontal
centroid velocity (px/frame, + = right) per strength as a markdown table.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402

log = logging.getLogger("motion_lora_direction")
EVAL_SEED_BASE = 10_000  # sampling seeds, disjoint from the experiment's evaluation seeds 0..7


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=ROOT / "output" / "moving_mnist",
                   help="the experiment's output dir (image_model.safetensors, moving_mnist_v2.safetensors)")
    p.add_argument("--out", type=Path, default=ROOT / "output" / "motion_lora_direction")
    p.add_argument("--width", type=int, default=32, help="the image model's model_channels")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--digit", type=int, default=10, help="digit height in pixels")
    p.add_argument("--digit-class", type=int, default=3)
    p.add_argument("--speed", type=float, default=0.5, help="px/frame to the right in the training clip")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--noise-levels", type=int, default=2)
    p.add_argument("--seeds", type=int, default=16, help="held-out sampling seeds per strength")
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--strengths", default="2,1,0,-1,-2")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def translating_clip(digit_class: int, height: int, size: int, frames: int, speed: float) -> torch.Tensor:
    """A digit sliding right at ``speed`` px/frame from the left edge, (frames, 1, size, size) in [-1, 1]; sub-pixel
    positions by linear interpolation between pixel columns."""
    from kinema.train.moving_digits import glyphs

    glyph = torch.from_numpy(glyphs(height)[digit_class].copy())
    h, w = glyph.shape
    if w + speed * (frames - 1) > size:
        raise SystemExit(f"--speed {speed}: a {w}-px-wide digit would leave the {size}-px frame in {frames} frames")
    base = torch.zeros(size, size + 1)
    top = (size - h) // 2
    base[top:top + h, :w] = glyph
    out = []
    for f in range(frames):
        x = speed * f
        whole, frac = int(x), x - int(x)
        shifted = torch.roll(base, whole, dims=1)
        frame = (1 - frac) * shifted + frac * torch.roll(shifted, 1, dims=1)
        out.append(frame[:, :size])
    return (torch.stack(out) * 2 - 1).unsqueeze(1)


def velocity(clip: torch.Tensor) -> float:
    """Mean horizontal centroid step of a clip, px/frame (+ = right)."""
    from kinema.train.measures import centroids

    return float(centroids(clip)[:, 1].diff().mean())


def run(args: argparse.Namespace) -> dict:
    """Train the LoRA, sample every strength, return the table and numbers."""
    torch.set_num_threads(args.threads)
    from moving_mnist_experiment import import_host, write_gif

    args.out.mkdir(parents=True, exist_ok=True)
    import_host("cpu", args.out / "comfy_base")
    from kinema.comfy_glue.loading import load_from_path, register_folders
    from kinema.comfy_glue.lora import apply_motion_lora
    from kinema.comfy_glue.train import TrainSettings, train_motion_lora
    from kinema.train import models
    from safetensors.torch import load_file

    register_folders()  # what the extension does when ComfyUI loads it
    start = time.time()
    patcher = models.image_model(args.width, 0)
    patcher.model.diffusion_model.load_state_dict(load_file(str(args.models / "image_model.safetensors")))
    patcher.model.diffusion_model.eval().requires_grad_(False)
    module_path = args.models / "moving_mnist_v2.safetensors"
    motion = load_from_path(str(module_path), module_path.name)

    clip = translating_clip(args.digit_class, args.digit, args.size, args.frames, args.speed)
    x0 = models.to_latent(clip) / models.LATENT_SCALE  # ComfyUI's latent: the sampler multiplies it back
    positive = [[torch.zeros(1, 1, models.CONTEXT_DIM), {}]]
    settings = TrainSettings(rank=args.rank, steps=args.steps, learning_rate=args.lr,
                             noise_levels=args.noise_levels, seed=0)
    trained = train_motion_lora(patcher, motion, positive, x0, settings, prefix="moving_right")
    n = max(1, len(trained.losses) // 10)
    loss_drop = f"{sum(trained.losses[:n]) / n:.4f} -> {sum(trained.losses[-n:]) / n:.4f}"
    train_s = time.time() - start
    log.info("trained %s in %.0f s, loss %s", trained.lora_name, train_s, loss_drop)

    rows, gifs, per_seed = {}, {}, {}
    for strength in [float(s) for s in args.strengths.split(",")]:
        applied = apply_motion_lora(motion, trained.path, trained.lora_name, strength)
        clips = [models.sample_clip(patcher, applied, EVAL_SEED_BASE + i, args.frames, args.size, args.sample_steps)
                 for i in range(args.seeds)]
        v = per_seed[strength] = torch.tensor([velocity(c) for c in clips])
        rows[strength] = (float(v.mean()), float(v.std(unbiased=False)), float((v > 0).float().mean()))
        gifs[strength] = clips[:4]
        log.info("strength %+g: vx %.3f ± %.3f", strength, *rows[strength][:2])
    write_gif(args.out / "training_clip.gif", [clip])
    for strength, clips in gifs.items():
        write_gif(args.out / f"strength_{strength:+g}.gif", clips)

    ref = per_seed.get(0.0)
    paired = {s: (v - ref) if ref is not None else None for s, v in per_seed.items()}
    table = [f"| LoRA strength | horizontal centroid velocity, px/frame (mean ± std over {args.seeds} seeds) "
             "| seeds moving right | same seed minus strength 0 (mean ± s.e.) | mean \\|velocity\\| |",
             "|---:|---:|---:|---:|---:|", f"| training clip | {velocity(clip):+.3f} | — | — | {abs(velocity(clip)):.3f} |"]
    for s, (m, sd, frac) in rows.items():
        d = paired[s]
        diff = "—" if d is None else f"{float(d.mean()):+.3f} ± {float(d.std(unbiased=False)) / len(d) ** 0.5:.3f}"
        speed = float(per_seed[s].abs().mean())
        table.append(f"| {s:+g} | {m:+.3f} ± {sd:.3f} | {frac:.0%} | {diff} | {speed:.3f} |")
    return {"table": "\n".join(table), "rows": rows, "per_seed": {k: v.tolist() for k, v in per_seed.items()},
            "loss": loss_drop, "train_s": train_s,
            "total_s": time.time() - start, "lora": trained.path,
            "command": " ".join(["python", "scripts/motion_lora_direction.py", *sys.argv[1:]])}


def main(argv: list[str] | None = None) -> dict:
    """Parse, run, print the table, the loss and the command."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run(parse_args(argv))
    print(result["table"])
    for strength, v in result["per_seed"].items():
        print(f"strength {strength:+g} per seed: " + " ".join(f"{x:+.2f}" for x in v))
    print(f"\nLoRA loss {result['loss']}; training {result['train_s']:.0f} s, total {result['total_s']:.0f} s; "
          f"saved {result['lora']}\ncommand: {result['command']}")
    return result


if __name__ == "__main__":
    main()
