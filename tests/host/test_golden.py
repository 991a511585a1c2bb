"""Silent-noise guard: a fixed tiny SD1.5 model and motion module, sampled through the Sample Animation node with
a fixed seed, must keep known statistics; a wrong reshape, a missing PE, a dropped GroupNorm or a module that is
silently skipped moves them far outside the tolerance.

The model (own config and fan-in weights, seeds below) does not depend on other test helpers, so the constants
change only when the pack's numerics do. To re-derive them after an intended change, run this file with ``-s``:
the failure message prints the current values.
"""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import randomize_fan_in  # noqa: E402

FRAMES, SIZE, STEPS, CFG, SEED = 8, 8, 2, 3.0, 0  # cfg > 1: cond and uncond clips share one batch
UNET = {  # SD1.5 layout at 32 channels: levels 32/64/128/128, attention in the top three
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": None, "adm_in_channels": None, "in_channels": 4, "model_channels": 32,
    "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_middle": 1, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_linear_in_transformer": False, "context_dim": 32, "num_heads": 8, "num_head_channels": -1,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}
# Computed once; ComfyUI 0.3.64 and 0.8.0 give the same float32 values (torch 2.14.1, CPU). Plain sampling (motion_scale 0) gives
# mean 23.57, std 206.2, adjacent 0.037, first_last -0.085: the module roughly quintuples frame correlation.
GOLDEN = {"mean": 20.2762, "std": 210.868, "adjacent": 0.17545, "first_last": 0.21061}
TOLERANCE = {"mean": 0.05, "std": 0.2, "adjacent": 0.002, "first_last": 0.002}


def _mod(name: str):
    return import_module(f"kinema.{name}")


def golden_model():
    """The fixed SD1.5-shaped UNet (seed 0) in a ModelPatcher on the CPU."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SD15(dict(UNET))
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.BaseModel(config, device="cpu")
    randomize_fan_in(model.diffusion_model, 0).eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def golden_motion():
    """The fixed v2-layout motion module (seed 1, sinusoid PE) as the MOTION_MODULE socket value."""
    import comfy.model_patcher
    import comfy.ops

    loading, model_mod = _mod("comfy_glue.loading"), _mod("motion_modules.model")
    spec = _mod("motion_modules").standard_spec("v2", widths=(32, 64, 128, 128))
    model = model_mod.MotionModel(spec, operations=comfy.ops.manual_cast, dtype=torch.float32, device="cpu")
    randomize_fan_in(model, 1).eval().requires_grad_(False)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    channels = {n: model.get_submodule(n).temporal_transformer.proj_in.in_features for n in model.module_names()}
    return loading.LoadedMotionModule(patcher, spec, "golden_v2.safetensors", channels)


def conds() -> tuple[list, list]:
    g = torch.Generator().manual_seed(2)
    return [[torch.randn(1, 7, 32, generator=g), {}]], [[torch.randn(1, 7, 32, generator=g), {}]]


def animate(nodes, model, motion, scale: float = 1.0) -> torch.Tensor:
    """The Sample Animation node: 8 frames of 8x8, 2 euler steps at cfg 3, seed 0."""
    positive, negative = conds()
    out = nodes["KinemaSampleAnimation"].execute(
        model=model, motion_module=motion, positive=positive, negative=negative,
        latent_image={"samples": torch.zeros(FRAMES, 4, SIZE, SIZE)}, seed=SEED, steps=STEPS, cfg=CFG,
        sampler_name="euler", scheduler="normal", denoise=1.0, motion_scale=scale,
        beta_schedule="auto (motion module's)", noise_type="default")
    return out.args[0]["samples"]


def statistics(x: torch.Tensor) -> dict[str, float]:
    """Mean, std, and the mean correlation of adjacent frames and of the first with the last frame."""
    f = x.flatten(1)
    f = f - f.mean(dim=1, keepdim=True)
    f = f / f.norm(dim=1, keepdim=True)
    return {"mean": x.mean().item(), "std": x.std().item(), "adjacent": (f[:-1] * f[1:]).sum(1).mean().item(),
            "first_last": (f[0] * f[-1]).sum().item()}


def outside(stats: dict[str, float]) -> dict[str, float]:
    """Each statistic's distance from GOLDEN in units of its tolerance, for those beyond it."""
    distance = {k: abs(stats[k] - GOLDEN[k]) / TOLERANCE[k] for k in GOLDEN}
    return {k: round(d, 1) for k, d in distance.items() if d > 1}


@pytest.fixture(scope="module")
def golden(comfy_host):
    yield comfy_host.pack_node_classes(), golden_model()
    comfy_host.unload_models()


def test_animation_keeps_its_golden_statistics(golden):
    """The fixed model's animation has the stored mean, std and frame-to-frame correlations."""
    nodes, model = golden
    stats = statistics(animate(nodes, model, golden_motion()))
    print(f"golden statistics: {stats}")
    assert torch.isfinite(torch.tensor(list(stats.values()))).all()
    assert outside(stats) == {}, f"statistics moved: {stats} (golden {GOLDEN}, tolerance {TOLERANCE})"


# -- mutations: each must move the statistics far outside the tolerance ---------------------------------------------


def swap_frames_and_batch(monkeypatch, motion) -> None:
    """Read the (b f) batch as (f b) in the temporal transformer: attention runs across clips, not frames."""
    model_mod = _mod("motion_modules.model")
    real = model_mod.rearrange
    swapped = {"(b f) c h w -> (b h w) f c": "(f b) c h w -> (b h w) f c",
               "(b h w) f c -> (b f) c h w": "(b h w) f c -> (f b) c h w"}
    monkeypatch.setattr(model_mod, "rearrange", lambda x, pattern, **kw: real(x, swapped.get(pattern, pattern), **kw))


def one_clip(monkeypatch, motion) -> None:
    """Treat the cond and uncond clips of a batch as one long clip."""
    attach = _mod("comfy_glue.attach")
    monkeypatch.setattr(attach, "clip_frames", lambda x, transformer_options: x.shape[0])


def drop_pe(monkeypatch, motion) -> None:
    """Positional encoding rows of zeros (as if the PE were never added)."""
    model_mod = _mod("motion_modules.model")
    monkeypatch.setattr(model_mod.PositionalEncoding, "rows",
                        lambda self, positions, dtype, *a, **k: torch.zeros(1, len(positions), self.pe.shape[-1],
                                                                            dtype=dtype, device=positions.device))


def drop_groupnorm(monkeypatch, motion) -> None:
    """Skip every temporal transformer's input GroupNorm."""
    model = motion.patcher.model
    for name in model.module_names():
        monkeypatch.setattr(model.get_submodule(name).temporal_transformer.norm, "forward", lambda x: x)


def skip_module(monkeypatch, motion) -> None:
    """Seat no MotionSlot at all: the model samples without its motion module, silently."""
    attach = _mod("comfy_glue.attach")
    monkeypatch.setattr(attach, "_blocks", lambda unet, seat: [])


MUTATIONS = {"frames/batch swapped": swap_frames_and_batch, "clips merged": one_clip, "no PE": drop_pe,
             "no GroupNorm": drop_groupnorm, "module skipped": skip_module}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_mutation_moves_statistics_outside_tolerance(golden, monkeypatch, mutation):
    """A broken motion module (patched in this process only) fails the golden check by at least 5 tolerances."""
    nodes, model = golden
    motion = golden_motion()
    MUTATIONS[mutation](monkeypatch, motion)
    stats = statistics(animate(nodes, model, motion))
    monkeypatch.undo()
    moved = outside(stats)
    print(f"{mutation}: {stats} -> {moved} tolerances away")
    assert moved and max(moved.values()) >= 5, (mutation, stats)
