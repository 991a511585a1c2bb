"""Keyframe colour drift uncorrected vs corrected by Keyframe Colour Match, on one fixed setup.

    python bench/bench_colour_drift.py                                  # tiny random run + injected keyframe shift
    python bench/bench_colour_drift.py --source sparsectrl_run          # tiny random scribble SparseCtrl, 0 and 15
    python bench/bench_colour_drift.py --source my_module:my_frames     # any frames, e.g. a full SparseCtrl run

The frames come from ``--source MODULE:FUNCTION`` (MODULE importable with bench/ and tools/ on sys.path), a callable
``f(args) -> (frames, keyframes, references)``: ``frames`` an IMAGE batch (f, h, w, 3) in [0, 1], ``keyframes``
the index text given to Apply SparseCtrl ("0", "0,15", "every 4"), ``references`` the keyframe images it was
conditioned on (one per keyframe, or one) or None. To measure SparseCtrl itself, write one that samples
Apply SparseCtrl -> Sample Animation -> Decode Frames (e.g. the image_to_video_sparsectrl example's graph) and
returns the decoded frames, the indices and the images. The default, ``tiny_run``, samples a fixed random tiny
SD1.5-shaped UNet with a random motion module (32 frames, 8x8 latents, 6 euler steps, seed 0), maps latents to RGB
with SD1.5's latent preview factors (ComfyUI's latent_formats.SD15), and injects a colour shift on keyframes 0 and 16
(gain 1.1, offset +0.10/-0.06/+0.04 per channel); the references are those frames before the shift.

Printed: drift per keyframe (sampling/colour.py: 8-bit levels of mean-RGB distance from the non-keyframes within
±2 frames) uncorrected, corrected toward the keyframe's own frame, and toward the reference images; how many frames
each correction changed; and the correction's cost on 16 frames at 512 px.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

SHIFT_GAIN, SHIFT_OFFSET = 1.1, (0.10, -0.06, 0.04)


def tiny_run(args):
    """Frames of a fixed random tiny sampling run with a colour shift injected on keyframes 0 and 16."""
    import _harness as h
    import torch

    host = h.start_host("cpu", args.comfy)
    try:
        import comfy.latent_formats
        import comfy.sample

        base, motion, positive, negative = h.tiny_models(seed=0)
        model = host.glue("attach").attach(base, motion)
        latent = torch.zeros(32, 4, 8, 8)
        noise = comfy.sample.prepare_noise(latent, 0)
        out = comfy.sample.sample(model, noise, 6, 4.0, "euler", "normal", positive, negative, latent,
                                  disable_pbar=True, seed=0)
        factors = torch.tensor(comfy.latent_formats.SD15().latent_rgb_factors)  # (4, 3)
        out = out.float() / out.float().std()  # a random UNet's latents are far larger than a VAE's
        rgb = 0.5 * torch.einsum("fchw,cr->fhwr", out, factors)  # f c h w -> f h w rgb
        frames = ((rgb + 1) / 2).clamp(0, 1).repeat_interleave(4, 1).repeat_interleave(4, 2)  # 32x32 px
    finally:
        host.cleanup()
    keys = [0, 16]
    args.baseline = frames.clone()  # the run before the shift: the drift the sampler itself left
    clean = frames[keys].clone()
    frames[keys] = (frames[keys] * SHIFT_GAIN + torch.tensor(SHIFT_OFFSET)).clamp(0, 1)
    return frames, "0,16", clean


def sparsectrl_run(args):
    """Frames of a fixed random tiny run with a random scribble SparseCtrl (official layout) on frames 0 and 15.

    16 frames, 8x8 latents (64x64 scribbles: one red, one blue field), the tiny UNet and v2 module of ``tiny_run``,
    6 euler steps, seed 0; latents to RGB as in ``tiny_run``. No colour is injected: whatever drift the keyframes
    show comes from SparseCtrl. Scribbles are not colour references, so ``references`` is None."""
    import _harness as h
    import torch

    host = h.start_host("cpu", args.comfy)
    try:
        import comfy.latent_formats
        import comfy.model_patcher
        import comfy.sample
        from _models import sparsectrl_state_dict

        fmt = sys.modules.get("kinema.motion_modules.sparsectrl_format") or importlib.import_module(
            "kinema.motion_modules.sparsectrl_format")
        glue = host.glue("sparsectrl")
        base, motion, positive, negative = h.tiny_models(seed=0)
        sd = sparsectrl_state_dict("scribble", torch.float32, (32, 64, 128, 128), 32, seed=7)
        spec = fmt.detect(sd)
        cpu = torch.device("cpu")
        sparse = glue.LoadedSparseCtrl(comfy.model_patcher.ModelPatcher(fmt.build_encoder(spec, sd), cpu, cpu),
                                       spec, "tiny_scribble.ckpt")
        scribbles = torch.zeros(2, 64, 64, 3)
        scribbles[0, ..., 0] = scribbles[1, ..., 2] = 1.0
        model = host.glue("attach").attach(base, motion)
        latent = torch.zeros(16, 4, 8, 8)
        noise = comfy.sample.prepare_noise(latent, 0)
        factors = torch.tensor(comfy.latent_formats.SD15().latent_rgb_factors)

        def frames_for(pos, neg):
            out = comfy.sample.sample(model, noise, 6, 4.0, "euler", "normal", pos, neg, latent,
                                      disable_pbar=True, seed=0).float()
            rgb = 0.5 * torch.einsum("fchw,cr->fhwr", out / out.std(), factors)
            return ((rgb + 1) / 2).clamp(0, 1).repeat_interleave(4, 1).repeat_interleave(4, 2)

        args.baseline, args.baseline_label = frames_for(positive, negative), "without SparseCtrl"
        frames = frames_for(*glue.apply_sparsectrl(positive, negative, sparse, scribbles, "0,15", 1.0, 0.0, 1.0))
    finally:
        host.cleanup()
    return frames, "0,15", None


def load_source(spec: str):
    """The callable named by ``MODULE:FUNCTION`` (the hook), or this file's ``tiny_run`` / ``sparsectrl_run``."""
    if spec in ("tiny_run", "sparsectrl_run"):
        return globals()[spec]
    module, _, name = spec.partition(":")
    sys.path.insert(0, str(ROOT / "tools"))
    return getattr(importlib.import_module(module), name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="tiny_run", help="MODULE:FUNCTION returning (frames, keyframes, refs)")
    parser.add_argument("--fade", type=int, default=8)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--comfy", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(ROOT))
    from sampling.colour import keyframe_drift, match_colour
    from sampling.keyframes import parse_keyframes

    frames, key_text, references = load_source(args.source)(args)
    keys = parse_keyframes(key_text, frames.shape[0], "keyframes")
    label = getattr(args, "baseline_label", "before the injected shift")
    runs = {label: args.baseline} if getattr(args, "baseline", None) is not None else {}
    runs |= {"uncorrected": frames, "toward keyframe frame": match_colour(frames, keys, args.fade, args.strength)}
    if references is not None:
        runs["toward reference image"] = match_colour(frames, keys, args.fade, args.strength, references)
    drifts = {name: keyframe_drift(out, keys) for name, out in runs.items()}
    changed = {name: int((out != frames).flatten(1).any(1).sum()) for name, out in runs.items()}

    big = torch.rand(16, 512, 512, 3, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    match_colour(big, [0, 15], args.fade, 1.0)
    cost_ms = 1000 * (time.perf_counter() - start)

    print(f"{frames.shape[0]} frames {tuple(frames.shape[1:3])}, keyframes {keys}, fade {args.fade}, "
          f"strength {args.strength}, source {args.source}")
    print("| run | " + " | ".join(f"drift frame {k}" for k in keys) + " | overall | frames changed |")
    print("|---|" + "---|" * (len(keys) + 2))
    for name, d in drifts.items():
        cells = " | ".join(f"{v:.2f}" for v in d.per_keyframe)
        print(f"| {name} | {cells} | {d.overall:.2f} | {changed[name]} |")
    print(f"cost: {cost_ms:.0f} ms for 16 frames at 512x512 on this CPU ({torch.get_num_threads()} threads)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"colour_drift-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"bench": "colour_drift", "source": args.source, "keyframes": keys,
                                "fade": args.fade, "strength": args.strength, "cost_ms_16x512": cost_ms,
                                "drift": {n: {"per_keyframe": d.per_keyframe, "overall": d.overall}
                                          for n, d in drifts.items()}, "frames_changed": changed}, indent=1))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
