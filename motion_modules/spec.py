"""What a motion-module file is: a frozen description detected from its keys, the internal key layout it
implies, and the standard sinusoidal position table.

The internal layout is the official AnimateDiff checkpoint naming (guoyww/AnimateDiff, mm_sd_v15_v2.ckpt):
``{seat}.motion_modules.{j}.temporal_transformer.…`` with seats ``down_blocks.{i}``, ``mid_block``,
``up_blocks.{i}``. Per-version facts and where they come from are in ``VERSION_TRAITS``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .model import sinusoid

SD15_WIDTHS = (320, 640, 1280, 1280)
SDXL_WIDTHS = (320, 640, 1280)
FF_MULT = 4  # GEGLU inner width = 4C; its input projection is C -> 8C

# Sources: configs/inference/inference-v{1,2,3}.yaml (main), configs/inference/inference.yaml (sdxl branch)
# of guoyww/AnimateDiff; hotshot_xl/models/{resnet,transformer_temporal}.py of hotshotco/Hotshot-XL;
# animatelcm_sd15/configs/inference-t2v.yaml and models/motion_module.py of G-U-N/AnimateLCM.
# groupnorm: how the BASE UNet's ResNet/output GroupNorms ran in training ("across_frames" = one GroupNorm
# over a 5-D b c f h w tensor). module_groupnorm: how the motion module's own GroupNorm ran.
# Noise schedules use ComfyUI's names: "sqrt_linear" = diffusers "linear" (linspace of betas),
# "linear" = diffusers "scaled_linear" (linspace of sqrt betas, squared).
VERSION_TRAITS: dict[str, dict] = {
    "v1": {"family": "sd15", "mid": False, "pe": 24, "groupnorm": "across_frames"},
    "v2": {"family": "sd15", "mid": True, "pe": 32},
    "v3": {"family": "sd15", "mid": False, "pe": 32},
    "animatelcm": {"family": "sd15", "mid": True, "pe": 64, "sampler_hint": "lcm"},
    "sdxl-beta": {"family": "sdxl", "mid": False, "pe": 32, "module_groupnorm": "across_frames",
                  "beta_schedule": "linear", "linear_end": 0.020},
    "hotshotxl": {"family": "sdxl", "mid": False, "pe": 24, "groupnorm": "across_frames",
                  "sweet_spot_frames": 8, "beta_schedule": "linear"},
}
TRAIT_DEFAULTS = {"groupnorm": "per_frame", "module_groupnorm": "per_frame", "sweet_spot_frames": 16,
                  "beta_schedule": "sqrt_linear", "linear_start": 0.00085, "linear_end": 0.012,
                  "sampler_hint": ""}
FAMILY_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL"}
VERSION_NAMES = {"v1": "AnimateDiff v1", "v2": "AnimateDiff v2", "v3": "AnimateDiff v3",
                 "animatelcm": "AnimateLCM", "sdxl-beta": "AnimateDiff SDXL beta", "hotshotxl": "HotshotXL"}
# What the user sees after the detection line: how the module wants to be sampled. Sources: AnimateLCM's
# configs/inference-t2v.yaml (LCMScheduler, betas 0.00085-0.012 "linear" = ComfyUI sqrt_linear, 4-8 steps,
# guidance 1-2) and README (ComfyUI: lcm sampler, sgm_uniform); ByteDance/AnimateDiff-Lightning's model card
# (v2 architecture, distilled for 1/2/4/8 steps, euler + sgm_uniform, cfg 1). Lightning files have exactly
# the v2 keys, shapes and (fp16) size of any fp16 v2 repack, so a file never tells them apart or its steps.
USAGE_NOTES = {
    "animatelcm": "sample with Model Sampling Discrete (lcm) on the model, sampler lcm, scheduler sgm_uniform, "
                  "4-8 steps, cfg 1-2",
    # guoyww/AnimateDiff configs/prompts/3_sparsectrl/*.yaml load every v3 run with adapter_lora_scale 1.0.
    "v3": "best used with the v3 domain adapter (v3_sd15_adapter.ckpt, in models/loras) through core's "
          "Load LoRA (model only) at strength about 1.0, as the official v3 configs do",
    "v2": "v2-compatible: AnimateDiff-Lightning files share this layout (their step count is not in the file; "
          "they want euler, sgm_uniform, cfg 1 and the steps they were distilled for)",
}
GROUPNORM_NAMES = {"per_frame": "per-frame GroupNorm", "across_frames": "across-frames GroupNorm"}


@dataclass(frozen=True)
class MotionModuleSpec:
    """Everything the loader, the model and the sampler need to know about one motion-module file."""

    family: str  # "sd15" | "sdxl"
    version: str  # "v1" | "v2" | "v3" | "animatelcm" | "sdxl-beta" | "hotshotxl"
    source_layout: str  # "original" | "diffusers" | "hotshotxl"
    widths: tuple[int, ...]  # channels per down level; up levels use them reversed, mid uses the last
    down_modules_per_level: tuple[int, ...]
    up_modules_per_level: tuple[int, ...]  # in up order (deepest level first)
    has_mid_block: bool
    pe_length: int  # rows of the position table = most frames one pass can take
    heads: int = 8
    param_count: int = 0  # learned parameters, position tables excluded
    groupnorm: str = "per_frame"  # base UNet GroupNorms: "per_frame" | "across_frames"
    module_groupnorm: str = "per_frame"  # the motion module's own GroupNorm
    sweet_spot_frames: int = 16
    beta_schedule: str = "sqrt_linear"  # ComfyUI name of the training noise schedule
    linear_start: float = 0.00085
    linear_end: float = 0.012
    dtype: str = "float32"  # stored dtype of most weights
    pe_stored: bool = True  # False: the file holds no position table; the standard sinusoid is used
    key_prefix: str = ""  # prefix stripped from every key (e.g. "module." from DDP training saves)
    bundled_unet: bool = False  # the file also holds a full UNet, whose keys are dropped
    sampler_hint: str = ""  # "lcm" for consistency-distilled modules

    def describe(self) -> str:
        """One line for humans, e.g. ``SD1.5 · AnimateDiff v2 · 453.2M params · PE 32 … · per-frame GroupNorm``."""
        parts = [
            FAMILY_NAMES.get(self.family, self.family),
            VERSION_NAMES.get(self.version, self.version),
            f"{self.param_count / 1e6:.1f}M params",
            f"PE {self.pe_length} (up to {self.pe_length} frames per pass, best at {self.sweet_spot_frames})",
            "mid block" if self.has_mid_block else "no mid block",
            GROUPNORM_NAMES.get(self.groupnorm, self.groupnorm),
        ]
        if self.module_groupnorm == "across_frames":  # SDXL beta: the module's own input norm spans the clip
            parts.append("motion-module GroupNorm across frames")
        if self.version in USAGE_NOTES:
            parts.append(USAGE_NOTES[self.version])
        return " · ".join(parts)


def sinusoidal_pe(length: int, channels: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The standard sinusoid table (Vaswani et al. 2017) as AnimateDiff stores it, shape (1, length, channels)."""
    return sinusoid(length, channels).to(dtype)


def module_prefixes(spec: MotionModuleSpec) -> list[tuple[str, int]]:
    """``(prefix, channels)`` of every motion module, e.g. ``("down_blocks.0.motion_modules.1", 320)``."""
    seats = [(f"down_blocks.{i}", c, n) for i, (c, n) in enumerate(zip(spec.widths, spec.down_modules_per_level, strict=True))]
    if spec.has_mid_block:
        seats.append(("mid_block", spec.widths[-1], 1))
    up_widths = tuple(reversed(spec.widths))
    seats += [(f"up_blocks.{i}", c, n) for i, (c, n) in enumerate(zip(up_widths, spec.up_modules_per_level, strict=True))]
    return [(f"{seat}.motion_modules.{j}", c) for seat, c, n in seats for j in range(n)]


def module_shapes(channels: int, pe_length: int) -> dict[str, tuple[int, ...]]:
    """Key suffix -> shape for one module, relative to ``….motion_modules.{j}.temporal_transformer.``."""
    c = channels
    shapes: dict[str, tuple[int, ...]] = {"norm.weight": (c,), "norm.bias": (c,),
                                          "proj_in.weight": (c, c), "proj_in.bias": (c,)}
    block = "transformer_blocks.0."
    for a in (0, 1):
        attn = f"{block}attention_blocks.{a}."
        for proj in ("to_q", "to_k", "to_v"):
            shapes[f"{attn}{proj}.weight"] = (c, c)
        shapes[f"{attn}to_out.0.weight"] = (c, c)
        shapes[f"{attn}to_out.0.bias"] = (c,)
        shapes[f"{attn}pos_encoder.pe"] = (1, pe_length, c)
    for a in (0, 1):
        shapes[f"{block}norms.{a}.weight"] = (c,)
        shapes[f"{block}norms.{a}.bias"] = (c,)
    shapes[f"{block}ff.net.0.proj.weight"] = (2 * FF_MULT * c, c)
    shapes[f"{block}ff.net.0.proj.bias"] = (2 * FF_MULT * c,)
    shapes[f"{block}ff.net.2.weight"] = (c, FF_MULT * c)
    shapes[f"{block}ff.net.2.bias"] = (c,)
    shapes[f"{block}ff_norm.weight"] = (c,)
    shapes[f"{block}ff_norm.bias"] = (c,)
    shapes["proj_out.weight"] = (c, c)
    shapes["proj_out.bias"] = (c,)
    return shapes


def expected_shapes(spec: MotionModuleSpec) -> dict[str, tuple[int, ...]]:
    """Every internal key of a module set described by ``spec``, with its shape, in a stable order."""
    out: dict[str, tuple[int, ...]] = {}
    for prefix, channels in module_prefixes(spec):
        for suffix, shape in module_shapes(channels, spec.pe_length).items():
            out[f"{prefix}.temporal_transformer.{suffix}"] = shape
    return out


def is_pe_key(key: str) -> bool:
    """Whether an internal key is a position table (a buffer, not a learned parameter)."""
    return key.endswith(".pos_encoder.pe")


def count_params(spec: MotionModuleSpec) -> int:
    """Learned parameters implied by ``spec`` (position tables excluded)."""
    return sum(math.prod(shape) for key, shape in expected_shapes(spec).items() if not is_pe_key(key))


def traits(version: str) -> dict:
    """Per-version facts (family, mid block, default PE, GroupNorm modes, schedule, sweet spot)."""
    if version not in VERSION_TRAITS:
        raise ValueError(f"spec.py: expected a version among {sorted(VERSION_TRAITS)}, but got {version!r}.")
    return {**TRAIT_DEFAULTS, **VERSION_TRAITS[version]}


def build_spec(version: str, widths: tuple[int, ...], down: tuple[int, ...], up: tuple[int, ...],
               has_mid_block: bool, pe_length: int, **fields) -> MotionModuleSpec:
    """A spec with the version's traits filled in and ``param_count`` computed."""
    t = traits(version)
    defaults = {k: t[k] for k in TRAIT_DEFAULTS}
    spec = MotionModuleSpec(family=t["family"], version=version,
                            source_layout=fields.pop("source_layout", "original"), widths=tuple(widths),
                            down_modules_per_level=tuple(down), up_modules_per_level=tuple(up),
                            has_mid_block=has_mid_block, pe_length=pe_length, **{**defaults, **fields})
    return replace(spec, param_count=count_params(spec))


def standard_spec(version: str, widths: tuple[int, ...] | None = None, **fields) -> MotionModuleSpec:
    """The spec of the official release of ``version`` (2 modules per down level, 3 per up level).

    ``widths`` shrinks it for tests; other fields (``pe_length``, ``dtype``, ``source_layout`` …) override.
    """
    t = traits(version)
    widths = tuple(widths or (SDXL_WIDTHS if t["family"] == "sdxl" else SD15_WIDTHS))
    if version == "hotshotxl":
        fields.setdefault("source_layout", "hotshotxl")
    pe_length = fields.pop("pe_length", t["pe"])
    has_mid = fields.pop("has_mid_block", t["mid"])
    n = len(widths)
    return build_spec(version, widths, (2,) * n, (3,) * n, has_mid, pe_length, **fields)
