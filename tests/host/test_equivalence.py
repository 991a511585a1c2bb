"""Numerical equivalence: ComfyUI's UNet with our motion module attached predicts the same noise as diffusers'
``UNetMotionModel`` on the same weights (fp32, within 1e-4).

Same weights: the ComfyUI SD1.5 model gets seeded fan-in-scaled random weights; diffusers' UNet2DConditionModel
and MotionAdapter are built on the meta device from matching configs; ComfyUI's own key map
(``comfy.utils.unet_to_diffusers``) and diffusers' own motion converter
(``convert_animatediff_checkpoint_to_diffusers``) must cover every key of both sides with equal shapes; then
``UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)`` (meta) loads those very tensors strictly
with ``assign=True``. Both models read one storage, which also keeps the full-size case within memory.

ComfyUI's noise prediction: ComfyUI samples the MODEL from ``attach(..., beta_schedule="model's own")`` for one
Euler step from sigma(t=500) at cfg 1, so ComfyUI itself loads it, seats and later removes the motion slots,
merges the wrappers and runs the cond alone. A test-only DIFFUSION_MODEL wrapper records the UNet's raw input,
timestep, context and eps output; the reference runs on exactly that input, as (b, c, f, h, w).

Neutralised in the reference only: diffusers GroupNorms each motion module's input across frames, the official
code per frame. For v1 the reference's ResNet and output GroupNorms are made to span whole clips instead
(``F.group_norm`` on b c f h w), as the official v1 UNet ran them; diffusers has no such mode.
"""
from __future__ import annotations

import dataclasses
import gc
import sys
import time
from importlib import import_module
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import loaded_motion, motion_state_dict, randomize_fan_in, sd15_patcher, tiny_unet_config  # noqa: E402

diffusers = pytest.importorskip("diffusers")
single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")
unet_motion = pytest.importorskip("diffusers.models.unets.unet_motion_model")

TOL = 1e-4
T = 500  # timestep of the compared prediction
FRAMES, SIDE, TOKENS = 8, 16, 7
TINY_WIDTHS = (32, 64, 128, 128)
FULL_WIDTH, FULL_CONTEXT = 320, 768
PROBE = "kinema_test_probe"


def _attach():
    return import_module("kinema.comfy_glue.attach")


def _spec(version: str, widths: tuple[int, ...]):
    return import_module("kinema.motion_modules").standard_spec(version, widths=widths)


# ---- the diffusers side -------------------------------------------------------------------------------------

def diffusers_unet_config(unet_config: dict) -> dict:
    """The UNet2DConditionModel config of an SD1.5-shaped ComfyUI ``unet_config`` (heads passed as head dim)."""
    assert unet_config["num_res_blocks"] == [2, 2, 2, 2] and unet_config["transformer_depth_middle"] == 1
    assert not unet_config["use_linear_in_transformer"], "SD1.5 projects with 1x1 convs"
    return {
        "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "norm_eps": 1e-5,
        "block_out_channels": [unet_config["model_channels"] * m for m in unet_config["channel_mult"]],
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "cross_attention_dim": unet_config["context_dim"], "attention_head_dim": unet_config["num_heads"],
        "flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu",
    }


def adapter_config(spec) -> dict:
    """The MotionAdapter config of a motion-module spec."""
    return {"block_out_channels": list(spec.widths), "motion_layers_per_block": 2,
            "motion_mid_block_layers_per_block": 1, "motion_num_attention_heads": spec.heads,
            "motion_norm_num_groups": 32, "motion_max_seq_length": spec.pe_length,
            "use_motion_mid_block": spec.has_mid_block}


def _same_shapes(named: dict, reference: dict, what: str) -> None:
    """``named`` covers exactly ``reference``'s keys, each with the same shape."""
    assert set(named) == set(reference), (
        f"{what}: unmapped {sorted(set(reference) - set(named))[:5]}, extra {sorted(set(named) - set(reference))[:5]}")
    bad = {k: (tuple(named[k].shape), tuple(reference[k].shape)) for k in named if named[k].shape != reference[k].shape}
    assert not bad, f"{what}: shape mismatches {bad}"


def unet_weights(base, unet2d) -> dict:
    """ComfyUI's UNet tensors under diffusers' names, through ComfyUI's own map; every key on both sides used once."""
    import comfy.utils

    key_map = comfy.utils.unet_to_diffusers(base.model.model_config.unet_config)  # diffusers key -> ComfyUI key
    comfy_sd = base.model.diffusion_model.state_dict()
    reference = unet2d.state_dict()
    used = {d: c for d, c in key_map.items() if d in reference}
    assert sorted(used.values()) == sorted(comfy_sd), "ComfyUI keys not mapped exactly once: " + str(
        sorted(set(comfy_sd).symmetric_difference(used.values()))[:5])
    weights = {d: comfy_sd[c] for d, c in used.items()}
    _same_shapes(weights, reference, "UNet2DConditionModel")
    return weights


def motion_weights(motion, adapter) -> dict:
    """Our motion tensors under MotionAdapter names: diffusers' converter, plus our stored PE as its ``pos_embed.pe``."""
    ours = motion.patcher.model.state_dict()
    weights = single_file_utils.convert_animatediff_checkpoint_to_diffusers(ours)
    for key, table in ours.items():
        if key.endswith("attention_blocks.0.pos_encoder.pe"):
            assert torch.equal(table, ours[key.replace("attention_blocks.0", "attention_blocks.1")])
            block = key.replace(".temporal_transformer", "").replace(".attention_blocks.0.pos_encoder", ".pos_embed")
            weights[block] = table
    _same_shapes(weights, adapter.state_dict(), "MotionAdapter")
    return weights


def _no_meta(model: nn.Module) -> None:
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    assert not left, f"not loaded: {left[:5]}"


def reference_models(base, motion) -> tuple[nn.Module, nn.Module]:
    """(diffusers UNet2DConditionModel, UNetMotionModel.from_unet2d) sharing the tensors of ``base`` and ``motion``."""
    with torch.device("meta"):
        unet2d = diffusers.UNet2DConditionModel(**diffusers_unet_config(base.model.model_config.unet_config))
        adapter = diffusers.MotionAdapter(**adapter_config(motion.spec))
    unet_sd, motion_sd = unet_weights(base, unet2d), motion_weights(motion, adapter)
    with torch.device("meta"):
        animated = diffusers.UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    animated.load_state_dict({**unet_sd, **motion_sd}, strict=True, assign=True)
    unet2d.load_state_dict(unet_sd, strict=True, assign=True)
    for model in (unet2d, animated):
        _no_meta(model)
    return unet2d.eval(), animated.eval()


class PerFrameNorm(nn.Module):
    """The reference's motion-module input GroupNorm, made per frame as in the official code."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.inner = norm

    def forward(self, x):
        frames = x.transpose(1, 2).flatten(0, 1)  # b c f h w -> (b f) c h w
        return self.inner(frames).unflatten(0, (x.shape[0], -1)).transpose(1, 2)  # -> b c f h w


class AcrossFramesNorm(nn.Module):
    """A GroupNorm whose statistics span every frame of a clip, as AnimateDiff v1's 5-D UNet ran it."""

    def __init__(self, norm: nn.GroupNorm, frames: int):
        super().__init__()
        self.inner, self.frames = norm, frames

    def forward(self, x):
        clip = x.unflatten(0, (-1, self.frames)).transpose(1, 2)  # (b f) c h w -> b c f h w
        n = self.inner
        return F.group_norm(clip, n.num_groups, n.weight, n.bias, n.eps).transpose(1, 2).flatten(0, 1)


def norm_modules_per_frame(reference: nn.Module) -> None:
    """Give every reference motion module the official per-frame input norm (test side only)."""
    for module in reference.modules():
        if isinstance(module, unet_motion.AnimateDiffTransformer3D):
            module.norm = PerFrameNorm(module.norm)


def norm_resnets_across_frames(reference: nn.Module, frames: int) -> int:
    """v1: the reference's ResNet norm1/norm2 and conv_norm_out span whole clips; returns how many were swapped."""
    swapped = 0
    for module in reference.modules():
        if isinstance(module, diffusers.models.resnet.ResnetBlock2D):
            module.norm1, module.norm2 = AcrossFramesNorm(module.norm1, frames), AcrossFramesNorm(module.norm2, frames)
            swapped += 2
    reference.conv_norm_out = AcrossFramesNorm(reference.conv_norm_out, frames)
    return swapped + 1


def reference_eps(reference: nn.Module, x: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
    """diffusers' noise prediction at ``T`` for (b f) c h w latents and a (b, tokens, dim) prompt, as (b f) c h w."""
    per_frame = context.repeat_interleave(frames, dim=0)  # b l d -> (b f) l d
    with torch.no_grad():
        if not isinstance(reference, diffusers.UNetMotionModel):  # the image UNet sees frames as a batch
            return reference(x, T, encoder_hidden_states=per_frame).sample
        sample = x.unflatten(0, (-1, frames)).transpose(1, 2)  # (b f) c h w -> b c f h w
        out = reference(sample, T, encoder_hidden_states=per_frame).sample
    return out.transpose(1, 2).flatten(0, 1)  # b c f h w -> (b f) c h w


# ---- the ComfyUI side ---------------------------------------------------------------------------------------

def comfy_eps(model, noise: torch.Tensor, context: torch.Tensor) -> dict:
    """The raw UNet call ComfyUI makes in a one-step Euler sample from sigma(T) at cfg 1: x, t, context, eps."""
    import comfy.patcher_extension as pe
    import comfy.sample
    import comfy.samplers

    seen = {}

    def probe(executor, x, timesteps, ctx, *args, **kwargs):
        out = executor(x, timesteps, ctx, *args, **kwargs)
        seen.update(x=x.clone(), t=timesteps.clone(), context=ctx.clone(), eps=out.clone())
        return out

    probed = model.clone()
    probed.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, PROBE, probe)
    sigma = probed.get_model_object("model_sampling").sigmas[T]
    sigmas = torch.stack([sigma, torch.zeros_like(sigma)])
    cond = [[context, {}]]
    comfy.sample.sample_custom(probed, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, cond, cond,
                               torch.zeros_like(noise), disable_pbar=True, seed=0)
    assert torch.equal(seen["t"], torch.full((noise.shape[0],), float(T))), seen["t"]
    assert torch.equal(seen["context"], context.repeat_interleave(noise.shape[0], dim=0))
    return seen


def slots_in(patcher) -> int:
    """MotionSlot layers currently seated in the patcher's UNet."""
    return sum(isinstance(m, _attach().MotionSlot) for m in patcher.model.diffusion_model.modules())


def inputs(channels: int, frames: int = FRAMES, side: int = SIDE, context_dim: int = TINY_WIDTHS[0], seed: int = 0):
    """Seeded (noise (f, 4, side, side), context (1, TOKENS, context_dim))."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(frames, channels, side, side, generator=g), torch.randn(1, TOKENS, context_dim, generator=g)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---- tests --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(comfy_host):
    """The tiny explicit SD1.5 config (levels 32/64/128/128, context 32, 8 heads), fan-in random weights."""
    return sd15_patcher(tiny_unet_config(), seed=0, init=randomize_fan_in)


@pytest.fixture(scope="module")
def v2(comfy_host):
    """A tiny v2-layout motion module (mid block, PE 32)."""
    spec = _spec("v2", TINY_WIDTHS)
    return loaded_motion(spec, motion_state_dict(spec, seed=1), "tiny_v2.safetensors")


def test_unets_agree_without_motion(base, v2):
    """Baseline: the plain ComfyUI UNet and diffusers' UNet2DConditionModel on the same tensors agree per frame."""
    unet2d, _ = reference_models(base, v2)
    noise, context = inputs(4)
    seen = comfy_eps(base, noise, context)
    diff = max_diff(seen["eps"], reference_eps(unet2d, seen["x"], context, FRAMES))
    assert diff <= TOL, diff
    assert seen["eps"].abs().mean() > 0.1  # a real prediction, not a vanishing one


def test_v2_matches_diffusers_unet_motion_model(base, v2):
    """With a v2 module (mid block) attached, ComfyUI predicts diffusers' UNetMotionModel noise within 1e-4."""
    _, animated = reference_models(base, v2)
    norm_modules_per_frame(animated)
    noise, context = inputs(4)
    seen = comfy_eps(_attach().attach(base, v2, beta_schedule="model's own"), noise, context)
    assert slots_in(base) == 0  # the slots were seated for the run and taken out after
    theirs = reference_eps(animated, seen["x"], context, FRAMES)
    assert max_diff(seen["eps"], theirs) <= TOL, max_diff(seen["eps"], theirs)
    assert max_diff(seen["eps"], comfy_eps(base, noise, context)["eps"]) > 1e-2  # the modules really act


def test_a_silenced_mid_module_breaks_the_match(base, v2):
    """Sensitivity: the same comparison with ours' mid-block module zeroed (as if missing) fails by far."""
    spec = v2.spec
    silenced = loaded_motion(spec, v2.patcher.model.state_dict(), "silenced.safetensors")
    proj_out = silenced.patcher.model.get_submodule("mid_block.motion_modules.0.temporal_transformer.proj_out")
    with torch.no_grad():
        proj_out.weight.zero_()
        proj_out.bias.zero_()
    _, animated = reference_models(base, v2)
    norm_modules_per_frame(animated)
    noise, context = inputs(4)
    seen = comfy_eps(_attach().attach(base, silenced, beta_schedule="model's own"), noise, context)
    assert max_diff(seen["eps"], reference_eps(animated, seen["x"], context, FRAMES)) > 100 * TOL


def test_v1_across_frames_norms_match_an_independent_5d_group_norm(base):
    """v1: ours equals the reference with ResNet/output GroupNorms over b c f h w; per-frame handling differs."""
    spec = _spec("v1", TINY_WIDTHS)
    assert spec.groupnorm == "across_frames" and not spec.has_mid_block
    motion = loaded_motion(spec, motion_state_dict(spec, seed=2), "tiny_v1.safetensors")
    per_frame = dataclasses.replace(motion, spec=dataclasses.replace(spec, groupnorm="per_frame"))
    _, animated = reference_models(base, motion)
    norm_modules_per_frame(animated)
    noise, context = inputs(4, seed=3)
    ours = comfy_eps(_attach().attach(base, motion, beta_schedule="model's own"), noise, context)
    plain_norms = reference_eps(animated, ours["x"], context, FRAMES)
    assert norm_resnets_across_frames(animated, FRAMES) == 2 * 22 + 1  # 22 ResNets in SD1.5, plus conv_norm_out
    assert max_diff(ours["eps"], reference_eps(animated, ours["x"], context, FRAMES)) <= TOL
    assert max_diff(ours["eps"], plain_norms) > 100 * TOL
    v2_style = comfy_eps(_attach().attach(base, per_frame, beta_schedule="model's own"), noise, context)
    assert max_diff(ours["eps"], v2_style["eps"]) > 100 * TOL
    assert max_diff(v2_style["eps"], plain_norms) <= TOL  # per-frame handling is the unpatched reference
    assert slots_in(base) == 0


@pytest.fixture
def fullsize_requested(request):
    """Skip unless the run selected full-size checks (``-m fullsize``)."""
    if "fullsize" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size check: run with -m fullsize")


@pytest.mark.fullsize
def test_fullsize_sd15_v2_matches_diffusers(fullsize_requested, comfy_host):
    """The real SD1.5 UNet (320 channels, context 768) with a full v2 module: 4 frames at 8x8 agree within 1e-4."""
    import comfy.model_management as mm

    start = time.perf_counter()
    base = sd15_patcher(tiny_unet_config(FULL_WIDTH, FULL_CONTEXT), seed=10, init=randomize_fan_in)
    spec = _spec("v2", (320, 640, 1280, 1280))
    motion = loaded_motion(spec, motion_state_dict(spec, seed=11), "full_v2.safetensors")
    gc.collect()
    _, animated = reference_models(base, motion)
    norm_modules_per_frame(animated)
    noise, context = inputs(4, frames=4, side=8, context_dim=FULL_CONTEXT, seed=12)
    seen = comfy_eps(_attach().attach(base, motion, beta_schedule="model's own"), noise, context)
    diff = max_diff(seen["eps"], reference_eps(animated, seen["x"], context, 4))
    effect = max_diff(seen["eps"], comfy_eps(base, noise, context)["eps"])
    print(f"fullsize: max |diff| {diff:.2e}, mean |eps| {seen['eps'].abs().mean():.2f}, motion effect {effect:.2f}, "
          f"{time.perf_counter() - start:.0f} s")
    del animated, seen, base, motion
    mm.unload_all_models()
    gc.collect()
    assert diff <= TOL, diff
    assert effect > 1e-2  # the modules really act
