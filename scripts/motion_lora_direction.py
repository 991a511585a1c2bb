"""Does a MotionLoRA trained on a clip moving right steer generated motion, and does strength −1 reverse it?

    python scripts/motion_lora_direction.py [--models DIR] [--steps N] [--lr LR] [--rank R] [--seeds N]

On the Moving-MNIST experiment's models (scripts/moving_mnist_experiment.py: the frozen tiny image model and the
trained v2 motion module in DIR), this 1. renders Moving-MNIST clips whose digit crosses the frame to the right at
1 px/frame (random digits, the vertical bounce of the module's training data), 2. trains a MotionLoRA on them
(Train MotionLoRA's clip_frames: one clip per noise level) with Train MotionLoRA's own glue (comfy_glue/train.py, which
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
TRAIN_SEED_BASE = 3_000_000  # the LoRA's clips: disjoint from the experiment's training and held-out clips
HELD_OUT_SEED_BASE = 3_100_000  # clips for the paired loss, each drawn moving right and (same digit, path) left
HELD_OUT_CLIPS = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=ROOT / "output" / "moving_mnist",
                   help="the experiment's output dir (image_model.safetensors, moving_mnist_v2.safetensors)")
    p.add_argument("--out", type=Path, default=ROOT / "output" / "motion_lora_direction")
    p.add_argument("--width", type=int, default=32, help="the image model's model_channels")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--digit", type=int, default=10, help="digit height in pixels")
    p.add_argument("--clips", type=int, default=16, help="training clips (random digits), all moving right")
    p.add_argument("--speed", type=int, default=1, help="px/frame to the right in the training clips")
    p.add_argument("--frames", type=int, default=8, help="frames per clip, trained and sampled (a 16-px frame "
                                                         "leaves a digit room for ~9 px of travel)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--noise-levels", type=int, default=4, help="clips (each at one noise level) per step")
    p.add_argument("--learn-reverse", action=argparse.BooleanOptionalAction, default=True,
                   help="Train MotionLoRA's learn_reverse: every second loss trains strength -1 on the clip reversed")
    p.add_argument("--seeds", type=int, default=32, help="held-out sampling seeds per strength")
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--strengths", default="2,1,0,-1,-2")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def crossing_clips(count: int, cfg, vx: int, seed_base: int = TRAIN_SEED_BASE) -> torch.Tensor:
    """``count`` Moving-MNIST clips (random digit, random vertical bounce as the motion module was trained on) whose
    digit crosses the frame at ``vx`` px/frame (+ = right) without bouncing, (count·frames, 1, size, size)."""
    from kinema.train.moving_digits import clip

    return torch.cat([clip(seed_base + i, cfg, vx=vx)[0] for i in range(count)])


def velocity(clip: torch.Tensor) -> float:
    """Mean horizontal centroid step of a clip, px/frame (+ = right)."""
    from kinema.train.measures import centroids

    return float(centroids(clip)[:, 1].diff().mean())


def run(args: argparse.Namespace) -> dict:
    """Train the LoRA, sample every strength, return the table and numbers."""
    torch.set_num_threads(args.threads)
    from moving_mnist_experiment import LOSS_TIMESTEPS, import_host, write_gif

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

    from kinema.train.moving_digits import DigitsConfig

    cfg = DigitsConfig(args.size, args.digit, args.frames, 1, 1)
    training = crossing_clips(args.clips, cfg, args.speed)
    held_out = {"right": crossing_clips(HELD_OUT_CLIPS, cfg, args.speed, HELD_OUT_SEED_BASE),
                "left": crossing_clips(HELD_OUT_CLIPS, cfg, -args.speed, HELD_OUT_SEED_BASE)}
    x0 = models.to_latent(training) / models.LATENT_SCALE  # ComfyUI's latent: the sampler multiplies it back
    positive = [[torch.zeros(1, 1, models.CONTEXT_DIM), {}]]
    settings = TrainSettings(rank=args.rank, steps=args.steps, learning_rate=args.lr,
                             noise_levels=args.noise_levels, seed=0, clip_frames=args.frames,
                             learn_reverse=args.learn_reverse)
    trained = train_motion_lora(patcher, motion, positive, x0, settings, prefix="moving_right")
    n = max(1, len(trained.losses) // 10)
    loss_drop = f"{sum(trained.losses[:n]) / n:.4f} -> {sum(trained.losses[-n:]) / n:.4f}"
    train_s = time.time() - start
    log.info("trained %s in %.0f s, loss %s", trained.lora_name, train_s, loss_drop)

    rows, gifs, per_seed, losses = {}, {}, {}, {}
    for strength in [float(s) for s in args.strengths.split(",")]:
        applied = apply_motion_lora(motion, trained.path, trained.lora_name, strength)
        losses[strength] = {way: sum(v) / len(v) for way, c in held_out.items()
                            for v in [models.held_out_loss(patcher, applied, c, args.frames, LOSS_TIMESTEPS, 0)]}
        clips = [models.sample_clip(patcher, applied, EVAL_SEED_BASE + i, args.frames, args.size, args.sample_steps)
                 for i in range(args.seeds)]
        v = per_seed[strength] = torch.tensor([velocity(c) for c in clips])
        rows[strength] = (float(v.mean()), float(v.std(unbiased=False)), float((v > 0).float().mean()))
        gifs[strength] = clips[:4]
        log.info("strength %+g: vx %.3f ± %.3f", strength, *rows[strength][:2])
    training = list(training.split(args.frames))
    write_gif(args.out / "training_clips.gif", training[:4])
    for strength, clips in gifs.items():
        write_gif(args.out / f"strength_{strength:+g}.gif", clips)

    ref = per_seed.get(0.0)
    paired = {s: (v - ref) if ref is not None else None for s, v in per_seed.items()}
    table = [f"| LoRA strength | horizontal centroid velocity, px/frame (mean ± std over {args.seeds} seeds) "
             "| seeds moving right | same seed minus strength 0 (mean ± s.e.) | mean \\|velocity\\| "
             f"| held-out v-loss, {HELD_OUT_CLIPS} clips moving right / the same moving left |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| training clips | {sum(map(velocity, training)) / len(training):+.3f} | 100% | — | "
             f"{sum(abs(velocity(c)) for c in training) / len(training):.3f} | — |"]
    for s, (m, sd, frac) in rows.items():
        d = paired[s]
        diff = "—" if d is None else f"{float(d.mean()):+.3f} ± {float(d.std(unbiased=False)) / len(d) ** 0.5:.3f}"
        speed = float(per_seed[s].abs().mean())
        table.append(f"| {s:+g} | {m:+.3f} ± {sd:.3f} | {frac:.0%} | {diff} | {speed:.3f} "
                     f"| {losses[s]['right']:.4f} / {losses[s]['left']:.4f} |")
    return {"table": "\n".join(table), "rows": rows, "held_out_loss": losses,
            "per_seed": {k: v.tolist() for k, v in per_seed.items()},
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
