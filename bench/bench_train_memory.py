"""Train MotionLoRA's peak memory against sampling the same clip, in one run (goal: training with gradient
checkpointing needs no more than sampling, plus the LoRA's optimizer state and, on the CPU, the weight copy).

One SD1.5-shaped UNet (``train/models.py`` at ``--width``, v prediction) and a v2-layout motion module at the same
widths, made under inference mode as ComfyUI's loaders make them; one clip of ``--frames`` latents at ``--size``
px. Measured in this process, each after a warm-up of the same call, with ``PeakMemory`` (the RSS high-water mark
on the CPU, reset before each block; CUDA allocator peaks on a GPU), all under ``torch.inference_mode`` as
ComfyUI runs nodes:

- Sample Animation's path at cfg ``--cfg`` (cond and uncond: twice the frames per model call) and at cfg 1;
- Train MotionLoRA's path (``comfy_glue/train.py``), ``--steps`` steps of one noise level, without and with
  gradient checkpointing.

The LoRA's own state (factors, gradients, AdamW's two moments) and, on the CPU, the ordinary copy of the
inference-mode weights that autograd needs (``ordinary_weights``) are computed from parameter counts and printed
beside, so the table shows what the activations of a training step take against sampling's.

On the CPU the RSS high-water mark also counts glibc's heap fragmentation, which differs between sampling's and
training's allocation patterns (training frees many mid-sized tensors in backward that the heap then cannot give
back). By default the script therefore sets glibc's mmap threshold to 64 KiB (``mallopt``) before measuring, so every
tensor of 64 KiB or more is its own mapping, returned to the OS when freed, and RSS tracks live tensors as CUDA's
allocator stats do; ``--glibc-heap`` measures with glibc's default heap instead (what a CPU user's process sees).

    python bench/bench_train_memory.py --threads 2            # CPU fp32, width 64, 256 px, 16 frames
    python bench/bench_train_memory.py --threads 2 --glibc-heap
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import torch  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.common_args(parser, size=256, steps=2)
    parser.add_argument("--width", type=int, default=64, help="UNet model_channels (a multiple of 32)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--glibc-heap", action="store_true",
                        help="CPU: keep glibc's default heap (RSS then includes heap fragmentation)")
    return parser.parse_args(argv)


def mmap_large_allocations(threshold: int = 64 * 1024) -> bool:
    """glibc: serve allocations of ``threshold`` bytes or more with their own mmap, so freeing one returns it to the
    OS at once and the RSS high-water mark follows live tensors. False where glibc is not there."""
    import ctypes

    m_mmap_threshold = -3  # <malloc.h>
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(m_mmap_threshold, threshold))
    except (OSError, AttributeError):
        return False


def build(width: int, device: torch.device):
    """(MODEL, MOTION_MODULE) made under inference mode, as ComfyUI's loaders make them (random weights)."""
    from _tiny import loaded_motion, motion_state_dict
    from kinema.train import models

    with torch.inference_mode():
        patcher = models.image_model(width, 0, device)
        spec = models.motion_spec(width)
        motion = loaded_motion(spec, motion_state_dict(spec, 1))
    return patcher, motion


def measure(device: torch.device, fn) -> float:
    """Peak extra MiB of ``fn()`` (after one warm-up call), under inference mode."""
    with torch.inference_mode():
        fn()
        h.release_freed()
        with h.PeakMemory(device) as peak:
            fn()
    h.release_freed()
    return peak.mib


def params_mib(*modules, copies: int = 1) -> float:
    """Bytes of the modules' parameters, ``copies`` times, in MiB."""
    return copies * sum(p.numel() * p.element_size() for m in modules for p in m.parameters()) / 2**20


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    h.quiet_logs(args.verbose)
    torch.set_num_threads(args.threads)
    args.heap = "cuda allocator" if args.device != "cpu" else "glibc default"
    if args.device == "cpu" and not args.glibc_heap and mmap_large_allocations():
        args.heap = "glibc, mmap threshold 64 KiB"
    host = h.start_host(args.device, args.comfy)
    try:
        return run(host, args)
    finally:
        host.cleanup()


def run(host: h.Host, args: argparse.Namespace) -> dict:
    from kinema.comfy_glue.loading import register_folders
    from kinema.comfy_glue.sample import sample_animation
    from kinema.comfy_glue.train import TrainSettings, train_motion_lora
    from kinema.motion_modules.training import LoRAFactors, attention_targets
    from kinema.train import models

    register_folders()
    device = torch.device(args.device)
    patcher, motion = build(args.width, device)
    positive = [[torch.zeros(1, 1, models.CONTEXT_DIM), {}]]
    negative = [[torch.ones(1, 1, models.CONTEXT_DIM), {}]]
    shape = (args.frames, 4, args.size // 8, args.size // 8)
    latent = {"samples": torch.zeros(shape)}
    clip = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed))

    def sample(cfg: float):
        return lambda: sample_animation(patcher, motion, positive, negative, latent, args.seed, args.steps, cfg,
                                        args.sampler, args.scheduler)

    def train(checkpointing: bool):
        settings = TrainSettings(rank=args.rank, steps=args.steps, learning_rate=1e-4, noise_levels=1,
                                 seed=args.seed, gradient_checkpointing=checkpointing)
        return lambda: train_motion_lora(patcher, motion, positive, clip, settings, prefix="bench/train_memory")

    rows = {
        f"sampling, cfg {args.cfg:g}": measure(device, sample(args.cfg)),
        "sampling, cfg 1": measure(device, sample(1.0)),
        "training": measure(device, train(False)),
        "training, gradient checkpointing": measure(device, train(True)),
    }
    factors = LoRAFactors(attention_targets(motion.spec), args.rank)
    lora_state = params_mib(factors, copies=4)  # factors, gradients, AdamW exp_avg and exp_avg_sq
    weight_copy = params_mib(patcher.model.diffusion_model, motion.patcher.model) if device.type == "cpu" else 0.0
    allowance = rows[f"sampling, cfg {args.cfg:g}"] + lora_state + weight_copy
    ratio = rows["training, gradient checkpointing"] / allowance
    print(f"heap: {args.heap}")
    print(h.table(["block", "peak extra MiB"], [[k, v] for k, v in rows.items()]))
    print(f"\nLoRA state (factors, grads, AdamW moments) {lora_state:.1f} MiB; CPU copy of inference-mode weights "
          f"{weight_copy:.1f} MiB")
    print(f"training with checkpointing / (sampling at cfg {args.cfg:g} + LoRA state + weight copy) = {ratio:.3f} "
          f"(goal <= 1.0); without checkpointing "
          f"{rows['training'] / allowance:.3f}")
    record = {"rows_mib": rows, "lora_state_mib": lora_state, "weight_copy_mib": weight_copy, "ratio": ratio,
              "ratio_without_checkpointing": rows["training"] / allowance, "args": vars(args),
              "env": h.environment(args, host)}
    h.write_record(args, "train_memory", record)
    return record


if __name__ == "__main__":
    main()
