"""SDXL animates too: AnimateDiff-SDXL beta and HotshotXL on an SDXL-shaped ComfyUI UNet.

Checked here (tiny explicit SDXL config: levels 32/64/128, no attention on level 0, transformer depth 2 then 10,
linear projections, ADM input = pooled text + six size embeddings, as ``comfy.model_base.SDXL.encode_adm``):
- the seats: after each resnet/attention pair of the 3 down levels, none in the middle, before each upsampler;
- SDXL beta equals diffusers' ``UNetMotionModel.from_unet2d`` (SDXL UNet2DConditionModel + a MotionAdapter with
  3 levels, no mid block, max sequence 32) on the same tensors, fp32, within 1e-4, through ComfyUI's own sampling;
- HotshotXL equals an independent computation from its own key layout;
- the noise schedule each module was trained with, chosen by "auto"; the frame sweet spot in the description;
- context windows as for SD1.5; guardrails across families before sampling; a full-size server run, outside the
  default suite (``-m "fullsize and server"``).

Facts behind the references (read from the official code):
- guoyww/AnimateDiff, branch ``sdxl`` (commit d6f459d "support sdxl"): ``motion_module.py``
  TemporalTransformer3DModel.forward applies ``self.norm`` to the 5-D ``b c f h w`` tensor, so the module's
  GroupNorm spans all frames (diffusers' AnimateDiffTransformer3D does the same: no neutralisation needed);
  ``unet_blocks.py`` runs every ResNet, attention and sampler on ``(b f) c h w`` (base norms per frame) and seats
  the module after resnet+attention; ``configs/inference/inference.yaml``: ``motion_module_mid_block: false``,
  ``temporal_position_encoding_max_len: 32``, betas ``scaled_linear`` 0.00085 -> 0.020 (ComfyUI's "linear").
- hotshotco/Hotshot-XL: ``models/resnet.py`` ResnetBlock3D applies norm1/norm2 to ``b c f h w`` and
  ``models/unet.py`` applies conv_norm_out to the 5-D sample (base norms across frames); ``transformer_temporal.py``
  TransformerTemporal rearranges to ``(b f) c h w`` before ``self.norm`` (module norm per frame), stores one
  ``positional_encoding`` (max_length 24) per attention block, 8 heads; ``unet_blocks.py`` seats it after
  resnet(+attention), none in the mid block; training uses the SDXL scheduler (``fine_tune.py``:
  DDPMScheduler.from_pretrained(<SDXL>, subfolder="scheduler")).

Neutralised in the references only (never in the pack): for HotshotXL, diffusers' across-frames module norm is made
per frame and its ResNet norms and conv_norm_out are made to span whole clips; diffusers holds one position table
per transformer block where Hotshot holds one per attention block (the test asserts both are the same table).
"""
from __future__ import annotations

import gc
import sys
import time
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import (  # noqa: E402
    conditioning,
    loaded_motion,
    motion_state_dict,
    randomize_fan_in,
    sdxl_conditioning,
    tiny_sd15_patcher,
    tiny_sdxl_patcher,
)
from test_equivalence import AcrossFramesNorm, PerFrameNorm, motion_weights, unet_weights  # noqa: E402

diffusers = pytest.importorskip("diffusers")
unet_motion = pytest.importorskip("diffusers.models.unets.unet_motion_model")

TOL = 1e-4
T = 500
FRAMES, SIDE = 8, 16
TINY_SDXL = (32, 64, 128)
TINY_SD15 = (32, 64, 128, 128)
PROBE = "kinema_sdxl_probe"


def _mod(name: str):
    return import_module(f"kinema.{name}")


def _spec(version: str, widths=TINY_SDXL):
    return _mod("motion_modules").standard_spec(version, widths=widths)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---- the diffusers side -------------------------------------------------------------------------------------

def diffusers_sdxl_config(unet_config: dict) -> dict:
    """The UNet2DConditionModel config of an SDXL-shaped ComfyUI ``unet_config`` (heads passed as head counts)."""
    assert unet_config["num_res_blocks"] == [2, 2, 2] and unet_config["transformer_depth"] == [0, 0, 2, 2, 10, 10]
    widths = [unet_config["model_channels"] * m for m in unet_config["channel_mult"]]
    return {
        "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "norm_eps": 1e-5,
        "block_out_channels": widths,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "transformer_layers_per_block": [1, 2, 10], "use_linear_projection": True,
        "cross_attention_dim": unet_config["context_dim"],
        "attention_head_dim": [w // unet_config["num_head_channels"] for w in widths],
        "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": unet_config["adm_in_channels"],
        "flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu",
    }


def sdxl_adapter_config(spec) -> dict:
    """A MotionAdapter configured like the SDXL beta: 3 levels, no mid block, the module's max sequence length."""
    return {"block_out_channels": list(spec.widths), "motion_layers_per_block": 2,
            "motion_num_attention_heads": spec.heads, "motion_norm_num_groups": 32,
            "motion_max_seq_length": spec.pe_length, "use_motion_mid_block": False}


def hotshot_keys(internal: dict) -> dict:
    """Internal (official AnimateDiff) names -> HotshotXL's ``{seat}.temporal_attentions.{j}.…`` layout."""
    return {k.replace(".motion_modules.", ".temporal_attentions.").replace(".temporal_transformer.", ".")
            .replace("pos_encoder.pe", "pos_encoder.positional_encoding"): v for k, v in internal.items()}


HOTSHOT_TO_DIFFUSERS = (("attention_blocks.0.", "attn1."), ("attention_blocks.1.", "attn2."),
                        ("norms.0.", "norm1."), ("norms.1.", "norm2."), ("ff_norm.", "norm3."))


def hotshot_to_diffusers(hotshot: dict) -> dict:
    """MotionAdapter tensors straight from HotshotXL keys (the test's own map, independent of formats.py)."""
    out = {}
    for key, value in hotshot.items():
        seat, rest = key.split(".temporal_attentions.")
        j, inner = rest.split(".", 1)
        if inner.endswith("pos_encoder.positional_encoding"):  # one table per attention block in Hotshot
            block = inner.split(".attention_blocks.")[0]
            name = f"{seat}.motion_modules.{j}.{block}.pos_embed.pe"
            assert name not in out or torch.equal(out[name], value), f"{key}: the two tables differ"
            out[name] = value
            continue
        for old, new in HOTSHOT_TO_DIFFUSERS:
            inner = inner.replace(old, new)
        out[f"{seat}.motion_modules.{j}.{inner}"] = value
    return out


def reference_models(base, spec, motion_sd: dict):
    """(UNet2DConditionModel, UNetMotionModel.from_unet2d) on the tensors of ``base`` and ``motion_sd`` (diffusers names)."""
    with torch.device("meta"):
        unet2d = diffusers.UNet2DConditionModel(**diffusers_sdxl_config(base.model.model_config.unet_config))
        adapter = diffusers.MotionAdapter(**sdxl_adapter_config(spec))
    unet_sd = unet_weights(base, unet2d)
    assert set(motion_sd) == set(adapter.state_dict()), sorted(set(motion_sd) ^ set(adapter.state_dict()))[:5]
    with torch.device("meta"):
        animated = diffusers.UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    animated.load_state_dict({**unet_sd, **motion_sd}, strict=True, assign=True)
    unet2d.load_state_dict(unet_sd, strict=True, assign=True)
    return unet2d.eval(), animated.eval()


def beta_weights(motion) -> dict:
    """Our SDXL-beta tensors under MotionAdapter names, by diffusers' own converter (see test_equivalence)."""
    with torch.device("meta"):
        adapter = diffusers.MotionAdapter(**sdxl_adapter_config(motion.spec))
    return motion_weights(motion, adapter)


def module_norms_per_frame(reference) -> int:
    """HotshotXL: each reference motion module's input GroupNorm per frame; returns how many were swapped."""
    swapped = 0
    for module in reference.modules():
        if isinstance(module, unet_motion.AnimateDiffTransformer3D):
            module.norm = PerFrameNorm(module.norm)
            swapped += 1
    return swapped


def base_norms_across_frames(reference, frames: int) -> int:
    """HotshotXL: the reference's ResNet norm1/norm2 and conv_norm_out span whole clips; returns how many."""
    swapped = 0
    for module in reference.modules():
        if isinstance(module, diffusers.models.resnet.ResnetBlock2D):
            module.norm1, module.norm2 = AcrossFramesNorm(module.norm1, frames), AcrossFramesNorm(module.norm2, frames)
            swapped += 2
    reference.conv_norm_out = AcrossFramesNorm(reference.conv_norm_out, frames)
    return swapped + 1


def time_ids(cond: list) -> torch.Tensor:
    """diffusers' SDXL ``time_ids`` for a ComfyUI cond: original size, crop top-left, target size (h, w each)."""
    o = cond[0][1]
    return torch.tensor([[o["height"], o["width"], o["crop_h"], o["crop_w"], o["target_height"], o["target_width"]]],
                        dtype=torch.float32)


def reference_eps(reference, x: torch.Tensor, cond: list, frames: int) -> torch.Tensor:
    """diffusers' noise prediction for (b f) c h w latents and a ComfyUI SDXL cond, back as (b f) c h w."""
    context, pooled = cond[0][0], cond[0][1]["pooled_output"]
    sample = x.unflatten(0, (-1, frames)).transpose(1, 2)  # (b f) c h w -> b c f h w
    per_frame = context.repeat_interleave(frames, dim=0)  # b l d -> (b f) l d
    with torch.no_grad():
        if isinstance(reference, diffusers.UNetMotionModel):
            added = {"text_embeds": pooled, "time_ids": time_ids(cond)}
            out = reference(sample, T, encoder_hidden_states=per_frame, added_cond_kwargs=added).sample
            return out.transpose(1, 2).flatten(0, 1)  # b c f h w -> (b f) c h w
        added = {"text_embeds": pooled.expand(x.shape[0], -1), "time_ids": time_ids(cond).expand(x.shape[0], -1)}
        return reference(x, T, encoder_hidden_states=per_frame, added_cond_kwargs=added).sample


# ---- the ComfyUI side ---------------------------------------------------------------------------------------

def comfy_eps(model, noise: torch.Tensor, cond: list) -> dict:
    """The raw UNet call of a one-step Euler sample from sigma(T) at cfg 1 (ComfyUI's own sampling): x, t, y, eps."""
    import comfy.patcher_extension as pe
    import comfy.sample
    import comfy.samplers

    seen = {}

    def probe(executor, x, timesteps, context, y, *args, **kwargs):
        out = executor(x, timesteps, context, y, *args, **kwargs)
        seen.update(x=x.clone(), t=timesteps.clone(), y=y.clone(), eps=out.clone())
        return out

    probed = model.clone()
    probed.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, PROBE, probe)
    sigma = probed.get_model_object("model_sampling").sigmas[T]
    sigmas = torch.stack([sigma, torch.zeros_like(sigma)])
    comfy.sample.sample_custom(probed, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, cond, cond,
                               torch.zeros_like(noise), disable_pbar=True, seed=0)
    assert torch.equal(seen["t"], torch.full((noise.shape[0],), float(T))), seen["t"]
    pooled = cond[0][1]["pooled_output"]
    assert torch.equal(seen["y"][:, :pooled.shape[1]], pooled.expand(noise.shape[0], -1))  # SDXL's ADM input
    return seen


def slots_in(patcher) -> int:
    return sum(isinstance(m, _mod("comfy_glue.attach").MotionSlot) for m in patcher.model.diffusion_model.modules())


def noise_for(frames: int = FRAMES, side: int = SIDE, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, 4, side, side, generator=torch.Generator().manual_seed(seed))


# ---- fixtures -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(comfy_host):
    """The tiny explicit SDXL model (levels 32/64/128, depth 0/2/10, context 32, pooled 32), fan-in random."""
    return tiny_sdxl_patcher(seed=0, init=randomize_fan_in)


@pytest.fixture(scope="module")
def beta(comfy_host):
    """A tiny SDXL-beta-layout module (3 levels, no mid block, PE 32, GroupNorm across frames)."""
    spec = _spec("sdxl-beta")
    return loaded_motion(spec, motion_state_dict(spec, seed=1), "tiny_sdxl_beta.safetensors")


@pytest.fixture(scope="module")
def hotshot_file(comfy_host, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny HotshotXL file in its own key layout (``temporal_attentions``, ``positional_encoding``), and its tensors."""
    from safetensors.torch import save_file

    sd = hotshot_keys(motion_state_dict(_spec("hotshotxl"), seed=2))
    path = tmp_path_factory.mktemp("hotshot") / "tiny_hsxl_temporal_layers.safetensors"
    save_file(sd, str(path))
    return path, sd


@pytest.fixture(scope="module")
def hotshot(hotshot_file):
    """The tiny HotshotXL file read through Load Motion Module's own path (detect, convert, validate, wrap)."""
    path, _ = hotshot_file
    return _mod("comfy_glue.loading").load_from_path(str(path), path.name)


# ---- placement, schedule, description -----------------------------------------------------------------------

def test_seats_follow_the_sdxl_unet(base, beta):
    """Seats: after each resnet/attention pair of the 3 down levels, no mid seat, before each upsampler."""
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, Upsample

    unet = base.model.diffusion_model
    seats = _mod("comfy_glue.unet").check_fits(base, beta.spec, beta.channels, "tiny")
    # input_blocks: 0 conv | 1, 2 res | 3 down | 4, 5 res+attn(2) | 6 down | 7, 8 res+attn(10)
    down = {0: (1, 2), 1: (4, 5), 2: (7, 8)}
    expected = [(f"down_blocks.{lv}.motion_modules.{j}", "input_blocks", i, 1 if lv == 0 else 2)
                for lv, blocks in down.items() for j, i in enumerate(blocks)]
    # output_blocks: 0-2 res+attn(10), upsampler in 2 | 3-5 res+attn(2), upsampler in 5 | 6-8 res
    expected += [(f"up_blocks.{lv}.motion_modules.{j}", "output_blocks", 3 * lv + j, 1 if lv == 2 else 2)
                 for lv in range(3) for j in range(3)]
    assert [(s.name, s.blocks, s.index, s.position) for s in seats] == expected
    depth = {0: 0, 1: 2, 2: 10}  # transformer blocks before the seat, per down level (SDXL: none, 2, 10)
    for s in seats:
        block = getattr(unet, s.blocks)[s.index]
        level = int(s.name.split(".")[1]) if s.blocks == "input_blocks" else 2 - int(s.name.split(".")[1])
        before = block[s.position - 1]
        assert isinstance(before, SpatialTransformer if depth[level] else ResBlock), s
        assert depth[level] == 0 or len(before.transformer_blocks) == depth[level], s
        assert s.position == len(block) or isinstance(block[s.position], Upsample), s
        assert s.channels == TINY_SDXL[level]


def _sigmas(model) -> torch.Tensor:
    return model.get_model_object("model_sampling").sigmas


def scaled_linear_sigmas(start: float, end: float, steps: int = 1000) -> torch.Tensor:
    """Sigmas of betas linspace(√start, √end)² (diffusers "scaled_linear" = ComfyUI "linear"), float64."""
    betas = torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float64) ** 2
    alphas = torch.cumprod(1.0 - betas, dim=0)
    return ((1 - alphas) / alphas) ** 0.5


def test_auto_schedule_is_the_one_each_module_was_trained_with(base, beta, hotshot):
    """auto: SDXL beta gets betas linspace(√0.00085, √0.020)² (AnimateDiff sdxl branch's scaled_linear);
    HotshotXL keeps SDXL's own (0.00085 -> 0.012 scaled_linear)."""
    attach = _mod("comfy_glue.attach").attach
    assert torch.allclose(_sigmas(attach(base, beta)).double(), scaled_linear_sigmas(0.00085, 0.020), rtol=1e-5)
    assert torch.allclose(_sigmas(base).double(), scaled_linear_sigmas(0.00085, 0.012), rtol=1e-5)
    assert torch.allclose(_sigmas(attach(base, hotshot)), _sigmas(base), rtol=1e-6)
    assert _sigmas(attach(base, beta))[-1] > 1.2 * _sigmas(base)[-1]  # the two really differ


def test_descriptions_state_family_and_sweet_spot(beta, hotshot):
    """The Load Motion Module text names SDXL, the release and its best frame count (beta 16, HotshotXL 8)."""
    assert beta.spec.describe().startswith("SDXL · AnimateDiff SDXL beta")
    assert "PE 32 (up to 32 frames per pass, best at 16)" in beta.spec.describe()
    assert "no mid block" in beta.spec.describe()
    assert beta.spec.describe().endswith("motion-module GroupNorm across frames")
    text = hotshot.spec.describe()
    assert text.startswith("SDXL · HotshotXL") and "PE 24 (up to 24 frames per pass, best at 8)" in text
    assert "across-frames GroupNorm" in text and "motion-module GroupNorm" not in text
    assert (hotshot.spec.groupnorm, hotshot.spec.module_groupnorm) == ("across_frames", "per_frame")
    assert (beta.spec.groupnorm, beta.spec.module_groupnorm) == ("per_frame", "across_frames")


# ---- equivalence ----------------------------------------------------------------------------------------------

def test_sdxl_unets_agree_without_motion(base, beta):
    """Baseline: the plain tiny SDXL ComfyUI UNet and diffusers' SDXL UNet2DConditionModel agree per frame."""
    unet2d, _ = reference_models(base, beta.spec, beta_weights(beta))
    cond = sdxl_conditioning(0)
    seen = comfy_eps(base, noise_for(), cond)
    diff = max_diff(seen["eps"], reference_eps(unet2d, seen["x"], cond, FRAMES))
    assert diff <= TOL, diff
    assert seen["eps"].abs().mean() > 0.1


def test_sdxl_beta_matches_diffusers_unet_motion_model(base, beta):
    """SDXL beta as Apply Motion Module gives it (auto schedule) predicts diffusers' UNetMotionModel noise within 1e-4."""
    unet2d, animated = reference_models(base, beta.spec, beta_weights(beta))
    cond = sdxl_conditioning(1)
    seen = comfy_eps(_mod("comfy_glue.attach").attach(base, beta), noise_for(seed=1), cond)
    assert slots_in(base) == 0
    diff = max_diff(seen["eps"], reference_eps(animated, seen["x"], cond, FRAMES))
    assert diff <= TOL, diff
    assert max_diff(seen["eps"], reference_eps(unet2d, seen["x"], cond, FRAMES)) > 1e-2  # the modules really act
    # sensitivity: the same reference with per-frame module norms (the SD1.5 convention) is far off
    module_norms_per_frame(animated)
    assert max_diff(seen["eps"], reference_eps(animated, seen["x"], cond, FRAMES)) > 100 * TOL


def test_hotshotxl_matches_an_independent_computation(base, hotshot, hotshot_file):
    """HotshotXL from its own file layout: equals the reference with Hotshot's norms (module per frame, base across
    frames); dropping the across-frames base norms is far off."""
    _, hotshot_sd = hotshot_file
    spec = hotshot.spec
    assert (spec.version, spec.source_layout, spec.pe_length, spec.has_mid_block) == ("hotshotxl", "hotshotxl", 24, False)
    _, animated = reference_models(base, spec, hotshot_to_diffusers(hotshot_sd))
    assert module_norms_per_frame(animated) == 15  # 2 per down level, 3 per up level
    cond = sdxl_conditioning(2)
    ours = comfy_eps(_mod("comfy_glue.attach").attach(base, hotshot), noise_for(seed=2), cond)
    assert slots_in(base) == 0
    plain_norms = reference_eps(animated, ours["x"], cond, FRAMES)
    assert base_norms_across_frames(animated, FRAMES) == 2 * 17 + 1  # SDXL: 6 down, 2 mid, 9 up ResNets; conv_norm_out
    diff = max_diff(ours["eps"], reference_eps(animated, ours["x"], cond, FRAMES))
    assert diff <= TOL, diff
    assert max_diff(ours["eps"], plain_norms) > 100 * TOL


# ---- context windows ----------------------------------------------------------------------------------------

def _options(length: int, overlap: int, **kw):
    ctx = _mod("sampling.context")
    return ctx.ContextOptions(length, overlap, ctx.ContextSchedule("standard_static"), ctx.FuseMethod("pyramid"), **kw)


def _with_context(model, options, spec, views: bool = False):
    ctx = _mod("comfy_glue.context")
    return ctx.apply_context(model, ctx.ContextPlan(options, views), spec)


def _run(model, noise: torch.Tensor, steps: int = 1, cfg: float = 1.0) -> torch.Tensor:
    """ComfyUI's own sampling with SDXL conds (1 Euler step at cfg 1 = the denoised prediction)."""
    import comfy.sample

    return comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", sdxl_conditioning(3), sdxl_conditioning(4),
                               torch.zeros_like(noise), seed=0, disable_pbar=True)


@pytest.fixture(scope="module")
def animated_sdxl(base, beta):
    return _mod("comfy_glue.attach").attach(base, beta)


@pytest.mark.parametrize("views", [False, True])
def test_sdxl_one_window_equals_no_context(animated_sdxl, beta, views):
    """Fewer frames than the context length: the same result as without context options (SDXL conds and ADM)."""
    noise = noise_for(6, side=8, seed=5)
    plain = _run(animated_sdxl, noise, steps=2, cfg=3.0)
    windowed = _run(_with_context(animated_sdxl, _options(8, 2), beta.spec, views), noise, steps=2, cfg=3.0)
    assert max_diff(plain, windowed) <= 1e-5


def test_sdxl_windows_fuse_like_an_independent_computation(animated_sdxl, beta):
    """14 frames in windows of 8 (overlap 2): the fused prediction equals each window run alone, pyramid-weighted."""
    frames, length, overlap = 14, 8, 2
    noise = noise_for(frames, side=8, seed=6)
    fused = _run(_with_context(animated_sdxl, _options(length, overlap), beta.spec), noise)
    starts = [*range(0, frames - length, length - overlap), frames - length]  # standard_static: 0, 6
    pyramid = torch.tensor([min(i + 1, length - i) for i in range(length)], dtype=torch.float32).view(-1, 1, 1, 1)
    expected, total = torch.zeros_like(noise), torch.zeros(frames, 1, 1, 1)
    for s in starts:
        expected[s:s + length] += _run(animated_sdxl, noise[s:s + length]) * pyramid
        total[s:s + length] += pyramid
    expected /= total
    assert max_diff(fused, expected) <= 1e-5 * expected.abs().max(), max_diff(fused, expected)
    assert max_diff(fused[6], _run(animated_sdxl, noise[:8])[6]) > 1e-4  # frame 6 really mixes two windows


# ---- guardrails -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd15(comfy_host):
    return tiny_sd15_patcher(seed=0)


def _tiny_loaded(version: str, widths) -> object:
    spec = _spec(version, widths)
    return loaded_motion(spec, motion_state_dict(spec, seed=9), f"tiny_{version}.safetensors")


@pytest.mark.parametrize("model_kind, version, widths, module_family, model_family", [
    ("sd15", "sdxl-beta", TINY_SDXL, "SDXL", "SD1.5"),
    ("sd15", "hotshotxl", TINY_SDXL, "SDXL", "SD1.5"),
    ("sdxl", "v2", TINY_SD15, "SD1.5", "SDXL"),
    ("sdxl", "v3", TINY_SD15, "SD1.5", "SDXL"),
])
def test_family_mismatch_is_one_sentence_before_sampling(request, model_kind, version, widths, module_family,
                                                         model_family):
    """A module of the other family: one sentence naming the file, both families and both level widths, raised
    by Sample Animation before the UNet runs once; the model stays untouched."""
    import comfy.patcher_extension as pe

    model = request.getfixturevalue("sd15" if model_kind == "sd15" else "base").clone()
    calls = []
    model.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, PROBE, lambda ex, *a, **k: calls.append(1) or ex(*a, **k))
    motion = _tiny_loaded(version, widths)
    cond = sdxl_conditioning(0) if model_kind == "sdxl" else conditioning(0)
    latent = {"samples": torch.zeros(4, 4, 8, 8)}
    with pytest.raises(_mod("comfy_glue.unet").ModelMismatchError) as err:
        _mod("comfy_glue.sample").sample_animation(model, motion, cond, cond, latent, 0, 1, 1.0, "euler", "normal")
    message = str(err.value)
    assert f"tiny_{version}.safetensors" in message
    assert f"is an {module_family} module" in message and f"the model is {model_family}" in message
    assert "/".join(map(str, widths)) in message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence
    assert calls == [] and slots_in(model) == 0


# ---- full size, on a real server (outside the default suite: -m "fullsize and server") ------------------------

SDXL_CKPT = "kinema-random-sdxl.safetensors"


@pytest.fixture(scope="module")
def fullsize_server(request, comfy_tree, tmp_path_factory):
    """A ComfyUI server with a random full-size SDXL checkpoint and random full-size SDXL beta and HotshotXL modules
    (fp16 files). ``--fp16-unet`` keeps the UNet in fp16 (5 GB; ComfyUI's CPU default, fp32, would be 10 GB) and
    ``--fp8_e4m3fn-text-enc`` the random text encoders in fp8 (0.8 GB instead of 1.6): ~7 GB resident in all."""
    if "fullsize" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size check: run with -m 'fullsize and server'")
    from _models import sdxl_checkpoint, write_sdxl_motion_module
    from _server import ComfyServer

    ckpt = sdxl_checkpoint(tree=comfy_tree)
    folder = tmp_path_factory.mktemp("mm_sdxl")
    modules = {layout: write_sdxl_motion_module(folder / f"kinema-random-{layout}.safetensors", layout)
               for layout in ("sdxl-beta", "hotshotxl")}
    flags = ("--fp16-unet", "--fp8_e4m3fn-text-enc")
    with ComfyServer(comfy_tree, tmp_path_factory.mktemp("comfy_sdxl"), extra_args=flags) as server:
        server.add_model("checkpoints", ckpt, SDXL_CKPT)
        names = {layout: server.add_model("animatediff_models", path) for layout, path in modules.items()}
        yield server, names


def _memory(pid: int) -> str:
    """Peak and current resident memory of a process, from /proc (Linux)."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    except OSError:
        return "memory unknown"
    gib = {k: int(status[k].split()[0]) / 2**20 for k in ("VmHWM", "VmRSS", "RssAnon") if k in status}
    return ", ".join(f"{k} {v:.1f} GiB" for k, v in gib.items())


@pytest.mark.fullsize
@pytest.mark.server
@pytest.mark.parametrize("layout, frames, described", [("sdxl-beta", 16, "AnimateDiff SDXL beta"),
                                                        ("hotshotxl", 8, "HotshotXL")])
def test_fullsize_sdxl_example_workflow_animates(fullsize_server, layout, frames, described):
    """The SDXL example workflow with a random full-size SDXL checkpoint and module: frames at 64x64, 2 steps."""
    import numpy as np
    from _workflow import load_workflow, workflow_to_prompt
    from test_server_workflows import WORKFLOWS, frames_of, saved_video

    server, names = fullsize_server
    workflow = load_workflow(WORKFLOWS / "sdxl_text_to_video_16_frames.json")
    overrides = {"CheckpointLoaderSimple": {"ckpt_name": SDXL_CKPT},
                 "KinemaLoadMotionModule": {"model_name": names[layout]},
                 "EmptyLatentImage": {"width": 64, "height": 64, "batch_size": frames},
                 "KinemaSampleAnimation": {"steps": 2}}
    prompt = workflow_to_prompt(workflow, server.object_info(), overrides)
    offset = len(server.log_text())
    start = time.perf_counter()
    entry = server.run(prompt, timeout=1800)
    took = time.perf_counter() - start
    assert server.tracebacks(server.log_since(offset)) == []
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    assert any(t.startswith(f"SDXL · {described}") for t in texts), texts
    images = frames_of(saved_video(server, entry))
    print(f"fullsize SDXL {layout}: {frames} frames at 64x64, 2 steps, {took:.0f} s, server {_memory(server.proc.pid)}")
    assert len(images) == frames and all(f.shape == (64, 64, 3) and f.std() > 0 for f in images)
    assert np.abs(images[0] - images[-1]).max() > 0  # the frames differ
    gc.collect()
