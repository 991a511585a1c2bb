"""Motion-module checkpoint formats as data plus pure functions: what a state dict is, what it becomes.

Layouts read (all converted to the official AnimateDiff names, see spec.py):
- ``original``: ``{seat}.motion_modules.{j}.temporal_transformer.…`` (guoyww/AnimateDiff, AnimateLCM,
  AnimateDiff-Lightning, community fp16 repacks; official training saves add ``module.`` and a full UNet).
- ``diffusers``: MotionAdapter ``{seat}.motion_modules.{j}.transformer_blocks.0.{norm1,attn1,norm2,attn2,
  norm3,ff,pos_embed}`` (diffusers models/unets/unet_motion_model.py, single_file_utils.py).
- ``hotshotxl``: ``{seat}.temporal_attentions.{j}.…pos_encoder.positional_encoding`` (hotshotco/Hotshot-XL).
No function here mutates its input or reads a file name.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import KeyLayoutError, WrongFileKindError, first_few
from .spec import (
    FAMILY_NAMES,
    VERSION_NAMES,
    MotionModuleSpec,
    build_spec,
    expected_shapes,
    is_pe_key,
    module_prefixes,
    sinusoidal_pe,
    traits,
)

MODULE_RE = re.compile(
    r"^(?P<seat>(?:down_blocks|up_blocks)\.\d+|mid_block)\.(?P<kind>motion_modules|temporal_attentions)"
    r"\.(?P<j>\d+)\.(?P<rest>.+)$"
)
KEY_PREFIXES = ("module.",)  # DDP wrapper prefix of guoyww/AnimateDiff train.py checkpoints
RESNET_RE = re.compile(r"^(?:down_blocks|up_blocks)\.\d+\.resnets\.|^mid_block\.resnets\.")
UNET_PART_RE = re.compile(
    r"^(?:conv_in|conv_out|conv_norm_out|time_embedding|time_proj|add_embedding|class_embedding"
    r"|encoder_hid_proj)\.|^(?:down_blocks|up_blocks)\.\d+\.(?:resnets|attentions|downsamplers|upsamplers)\."
    r"|^mid_block\.(?:resnets|attentions)\."
)
DIFFUSERS_BLOCK_PARTS = {"norm1": "norms.0", "norm2": "norms.1", "norm3": "ff_norm",
                         "attn1": "attention_blocks.0", "attn2": "attention_blocks.1", "ff": "ff"}
DIFFUSERS_DEFAULT_PE = 32  # MotionAdapter(motion_max_seq_length=32)
ANIMATELCM_PE = 64  # G-U-N/AnimateLCM PositionalEncoding max_length; its release stores no table


@dataclass(frozen=True)
class WrongKind:
    """One sentinel row: a key pattern that marks a file as something other than a motion module."""

    found: str
    advice: str
    pattern: re.Pattern
    with_motion: bool | None = None  # True/False: only when motion-module keys are present/absent
    unless: re.Pattern | None = None  # the row does not apply when any key matches this


def _rx(pattern: str, flags: int = 0) -> re.Pattern:
    """Compiled regex (keeps the sentinel table one line per row)."""
    return re.compile(pattern, flags)


WRONG_KINDS: tuple[WrongKind, ...] = (
    WrongKind("a MotionLoRA", "load it with Apply MotionLoRA",
              _rx(r"(?=.*lora)(?=.*(?:motion_modules|temporal_attentions|temporal_transformer))", re.I)),
    WrongKind("an SD LoRA in diffusers attention-processor layout, like the AnimateDiff v3 domain adapter "
              "(v3_sd15_adapter.ckpt)", "load it with core's LoraLoader",
              _rx(r"attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.processor\.to_(?:q|k|v|out)_lora\."
                  r"(?:down|up)\.weight$")),
    WrongKind("an SD LoRA", "load it with core's LoraLoader",
              _rx(r"^lora_(?:unet|te\d?)_|lora_(?:up|down|A|B)\b|\.lora\.(?:up|down)\.|\.(?:hada|lokr)_w", re.I)),
    WrongKind("a full Stable Diffusion checkpoint", "load it with Load Checkpoint",
              _rx(r"^model\.diffusion_model\.")),
    WrongKind("a SparseCtrl ControlNet", "load it with a SparseCtrl loader", _rx(r"^controlnet_cond_embedding\.")),
    WrongKind("a PIA motion module, whose image-conditioning input this pack does not support",
              "use a plain AnimateDiff motion module", _rx(r"^conv_in\.weight$"), True, _rx(r"\.resnets\.")),
    WrongKind("an AnimateLCM-I2V motion module, whose image encoder this pack does not support",
              "use the AnimateLCM text-to-video module", _rx(r"^img_encoder\."), True),
    WrongKind("a FancyVideo motion module, whose extra embeddings this pack does not support",
              "use a plain AnimateDiff motion module", _rx(r"^(?:fps_embedding|motion_embedding)\."), True),
    WrongKind("a ControlNet", "load it with Load ControlNet Model",
              _rx(r"^(?:control_model\.|input_hint_block\.|controlnet_down_blocks\.|zero_convs\.)")),
    WrongKind("a UNet without motion modules", "load it with Load Diffusion Model",
              _rx(r"^(?:diffusion_model\.)?(?:input_blocks|middle_block|output_blocks)\.|^down_blocks\.\d+\.resnets\."),
              False),
    WrongKind("a VAE", "load it with Load VAE",
              _rx(r"^(?:first_stage_model\.)?(?:encoder|decoder)\.(?:conv_in|down|up|mid)"), False),
    WrongKind("a text encoder", "load it with Load CLIP",
              _rx(r"^(?:cond_stage_model|conditioner|text_model|text_encoders?)\."), False),
)


def strip_prefix(keys: list[str]) -> str:
    """The wrapper prefix every key carries (one of ``KEY_PREFIXES``), or ``""``."""
    for prefix in KEY_PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            return prefix
    return ""


def _unprefixed(sd: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """A new dict with ``prefix`` removed from every key that has it."""
    return {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v for k, v in sd.items()}


def _has_motion_keys(keys: list[str]) -> bool:
    """Whether any key sits in a motion-module seat (any layout)."""
    return any(MODULE_RE.match(k) for k in keys)


def identify_wrong_kind(sd: Mapping[str, Tensor]) -> str | None:
    """``"<what it is>; <where it belongs>"`` when the keys mark another kind of file, else None."""
    keys = list(sd)
    keys = [k[len(p):] for k in keys] if (p := strip_prefix(keys)) else keys
    has_motion = _has_motion_keys(keys)
    for row in WRONG_KINDS:
        if row.with_motion is not None and row.with_motion != has_motion:
            continue
        if row.unless is not None and any(row.unless.search(k) for k in keys):
            continue
        if any(row.pattern.search(k) for k in keys):
            return f"{row.found}; {row.advice}"
    return None


def _layout(keys: list[str], source: str) -> str:
    """``original`` | ``diffusers`` | ``hotshotxl`` from the motion-module keys; raises if none or mixed."""
    found = set()
    for key in keys:
        m = MODULE_RE.match(key)
        if m is None:
            continue
        if m["kind"] == "temporal_attentions":
            found.add("hotshotxl")
        elif m["rest"].startswith("temporal_transformer."):
            found.add("original")
        else:
            found.add("diffusers")
    if len(found) == 1:
        return found.pop()
    if found:
        raise KeyLayoutError(f"{source}: expected keys of one motion-module layout, found a mix of "
                             f"{' and '.join(sorted(found))} layouts.")
    raise KeyLayoutError(
        f"{source}: expected AnimateDiff motion-module keys such as "
        f"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight, found none among its {len(keys)} "
        f"keys (first: {first_few(sorted(keys))})."
    )


def _diffusers_names(base: str, rest: str, key: str) -> tuple[str, ...]:
    """Internal names of one MotionAdapter key (``pos_embed.pe`` feeds both attention blocks)."""
    parts = rest.split(".")
    if parts[0] in ("norm", "proj_in", "proj_out"):
        return (base + rest,)
    if parts[0] == "transformer_blocks" and len(parts) > 3:
        block, sub, tail = parts[1], parts[2], ".".join(parts[3:])
        if sub == "pos_embed" and tail == "pe":
            return tuple(f"{base}transformer_blocks.{block}.attention_blocks.{a}.pos_encoder.pe" for a in (0, 1))
        if sub in DIFFUSERS_BLOCK_PARTS:
            return (f"{base}transformer_blocks.{block}.{DIFFUSERS_BLOCK_PARTS[sub]}.{tail}",)
    return (key,)


def internal_names(key: str) -> tuple[str, ...]:
    """The internal key(s) for one key of any layout; keys it cannot place are returned unchanged."""
    m = MODULE_RE.match(key)
    if m is None:
        return (key,)
    base = f"{m['seat']}.motion_modules.{m['j']}.temporal_transformer."
    rest = m["rest"]
    if m["kind"] == "temporal_attentions":
        return (base + rest.replace("pos_encoder.positional_encoding", "pos_encoder.pe"),)
    if rest.startswith("temporal_transformer."):
        return (key,)
    return _diffusers_names(base, rest, key)


def _renamed(sd: Mapping[str, Tensor], prefix: str, bundled: bool) -> dict[str, Tensor]:
    """Strip the prefix, drop a bundled UNet's own keys, and rename into the internal layout."""
    out: dict[str, Tensor] = {}
    for key, value in _unprefixed(sd, prefix).items():
        if bundled and UNET_PART_RE.match(key) and not MODULE_RE.match(key):
            continue
        for name in internal_names(key):
            out[name] = value
    return out


def _module_width(internal: Mapping[str, Tensor], prefix: str, source: str) -> int:
    """Channels of one module, read from its GroupNorm or projection weights."""
    for suffix in ("norm.weight", "norm.bias", "proj_in.weight", "proj_out.bias"):
        tensor = internal.get(f"{prefix}.temporal_transformer.{suffix}")
        if isinstance(tensor, Tensor) and tensor.ndim >= 1:
            return int(tensor.shape[0])
    raise KeyLayoutError(f"{source}: expected a norm or proj_in weight in {prefix}, found neither.")


def _seats(internal: Mapping[str, Tensor]) -> dict[str, dict[int, int]]:
    """``{seat: {module index: 0}}`` for every motion-module seat present (widths filled later)."""
    seats: dict[str, dict[int, int]] = {}
    for key in internal:
        m = MODULE_RE.match(key)
        if m is not None:
            seats.setdefault(m["seat"], {})[int(m["j"])] = 0
    return seats


def _level_counts(seats: Mapping[str, dict[int, int]], kind: str, source: str) -> tuple[int, ...]:
    """Modules per level of ``kind`` (``down_blocks`` or ``up_blocks``), levels numbered from 0 without gaps."""
    levels = {int(seat.split(".")[1]): mods for seat, mods in seats.items() if seat.startswith(kind + ".")}
    if not levels:
        raise KeyLayoutError(f"{source}: expected motion modules in {kind}, found none.")
    for i in range(max(levels) + 1):
        if i not in levels:
            raise KeyLayoutError(f"{source}: expected motion modules at every {kind} level "
                                 f"0..{max(levels)}, found none at level {i}.")
    return tuple(max(levels[i]) + 1 for i in range(len(levels)))


def _pe_length(internal: Mapping[str, Tensor], layout: str, family: str, config: Mapping | None,
               source: str) -> tuple[int, bool]:
    """``(PE length, stored)``: from the stored table, else what the format implies when it never stores one."""
    for key, tensor in internal.items():
        if is_pe_key(key):
            if tensor.ndim != 3:
                raise KeyLayoutError(f"{source}: expected {key} of shape (1, length, channels), "
                                     f"found shape {tuple(tensor.shape)}.")
            return int(tensor.shape[1]), True
    if layout == "diffusers":
        return int((config or {}).get("motion_max_seq_length", DIFFUSERS_DEFAULT_PE)), False
    if layout == "original" and family == "sd15":
        return ANIMATELCM_PE, False
    raise KeyLayoutError(f"{source}: expected position tables (pos_encoder) in this {layout}-layout "
                         f"{FAMILY_NAMES[family]} module, found none.")


def _version(family: str, layout: str, has_mid: bool, pe_stored: bool, pe_length: int) -> str:
    """The release a layout matches (ADE's rule for v1/v3: no mid block, PE 32 = v3, else v1)."""
    if layout == "hotshotxl":
        return "hotshotxl"
    if family == "sdxl":
        return "sdxl-beta"
    if layout == "original" and not pe_stored:
        return "animatelcm"
    if has_mid:
        return "v2"
    return "v3" if pe_length == 32 else "v1"


def stored_dtype(sd: Mapping[str, Tensor]) -> str:
    """Name of the dtype holding most elements, e.g. ``float16``."""
    counts: Counter = Counter()
    for tensor in sd.values():
        if isinstance(tensor, Tensor):
            counts[tensor.dtype] += tensor.numel()
    if not counts:
        return "float32"
    return str(counts.most_common(1)[0][0]).removeprefix("torch.")


def _as_levels(value, n: int) -> tuple[int, ...]:
    """A diffusers config value given as an int or a per-level list, as a tuple of ``n``."""
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * n


def _config_heads(config: Mapping | None, n: int, source: str) -> int:
    """``motion_num_attention_heads`` from a diffusers config (one value for every level), default 8."""
    if not config or "motion_num_attention_heads" not in config:
        return 8
    heads = set(_as_levels(config["motion_num_attention_heads"], n))
    if len(heads) != 1:
        raise KeyLayoutError(f"{source}: expected one motion_num_attention_heads for every level in "
                             f"config.json, found {sorted(heads)}.")
    return heads.pop()


def check_config(spec: MotionModuleSpec, config: Mapping, source: str) -> None:
    """Cross-check a diffusers ``config.json`` against what the weights say; raises on a disagreement."""
    n = len(spec.widths)
    checks = [
        ("block_out_channels", lambda v: tuple(int(x) for x in v), spec.widths),
        ("motion_layers_per_block", lambda v: _as_levels(v, n), spec.down_modules_per_level),
        ("use_motion_mid_block", bool, spec.has_mid_block),
        ("motion_transformer_layers_per_block", lambda v: set(_as_levels(v, n)), {1}),
    ]
    if spec.pe_stored:
        checks.append(("motion_max_seq_length", int, spec.pe_length))
    for name, parse, actual in checks:
        if name in config and parse(config[name]) != actual:
            raise KeyLayoutError(f"{source}: config.json says {name} is {config[name]!r}, "
                                 f"but the weights have {actual!r}.")


def detect(sd: Mapping[str, Tensor], source: str = "<state dict>", config: Mapping | None = None
           ) -> MotionModuleSpec:
    """Describe a motion-module state dict from its keys and shapes only (never its file name)."""
    found = identify_wrong_kind(sd)
    if found is not None:
        raise WrongFileKindError(f"{source}: expected an AnimateDiff motion module, found {found}.",
                                 kind=found.split(";")[0])
    prefix = strip_prefix(list(sd))
    keys = [k[len(prefix):] for k in sd]
    layout = _layout(keys, source)
    bundled = any(RESNET_RE.match(k) for k in keys)
    internal = _renamed(sd, prefix, bundled)
    seats = _seats(internal)
    down, up = _level_counts(seats, "down_blocks", source), _level_counts(seats, "up_blocks", source)
    if len(up) != len(down):
        raise KeyLayoutError(f"{source}: expected as many up levels as down levels ({len(down)}), "
                             f"found {len(up)}.")
    family = {4: "sd15", 3: "sdxl"}.get(len(down))
    if family is None:
        raise KeyLayoutError(f"{source}: expected 4 down levels (SD1.5) or 3 (SDXL), found {len(down)}.")
    widths = tuple(_module_width(internal, f"down_blocks.{i}.motion_modules.0", source) for i in range(len(down)))
    pe_length, pe_stored = _pe_length(internal, layout, family, config, source)
    version = _version(family, layout, "mid_block" in seats, pe_stored, pe_length)
    if traits(version)["family"] != family:
        raise KeyLayoutError(f"{source}: expected 3 down levels for a {VERSION_NAMES[version]} module, "
                             f"found {len(down)}.")
    spec = build_spec(version, widths, down, up, "mid_block" in seats, pe_length, source_layout=layout,
                      heads=_config_heads(config, len(down), source), dtype=stored_dtype(sd),
                      pe_stored=pe_stored, key_prefix=prefix, bundled_unet=bundled)
    if config:
        check_config(spec, config, source)
    return spec


def _torch_dtype(name: str) -> torch.dtype:
    """The torch floating dtype called ``name``, float32 when it is not one."""
    dtype = getattr(torch, name, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def to_internal(sd: Mapping[str, Tensor], spec: MotionModuleSpec) -> dict[str, Tensor]:
    """A new dict in the internal layout; fills position tables only where the format never stores them."""
    out = _renamed(sd, spec.key_prefix, spec.bundled_unet)
    if not spec.pe_stored:
        dtype = _torch_dtype(spec.dtype)
        for prefix, channels in module_prefixes(spec):
            table = sinusoidal_pe(spec.pe_length, channels, dtype)
            for a in (0, 1):
                out.setdefault(f"{prefix}.temporal_transformer.transformer_blocks.0.attention_blocks.{a}"
                               ".pos_encoder.pe", table)
    return out


def _shape_problem(key: str, tensor, shape: tuple[int, ...]) -> str | None:
    """``"key (found …, expected …)"`` when a tensor does not fit, else None."""
    if not isinstance(tensor, Tensor):
        return f"{key} (found a {type(tensor).__name__}, expected a tensor)"
    if tuple(tensor.shape) != shape:
        return f"{key} (found {list(tensor.shape)}, expected {list(shape)})"
    if not tensor.is_floating_point():
        return f"{key} (found dtype {str(tensor.dtype).removeprefix('torch.')}, expected floating point)"
    return None


def validate(sd: Mapping[str, Tensor], spec: MotionModuleSpec, source: str = "<state dict>") -> None:
    """Every expected internal key present with its shape, nothing else; raises KeyLayoutError otherwise."""
    expected = expected_shapes(spec)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [p for k, shape in expected.items() if k in sd and (p := _shape_problem(k, sd[k], shape))]
    if not (missing or unexpected or wrong):
        return
    parts = [f"{len(names)} {label} (first: {first_few(names)})" for names, label in
             ((missing, "missing"), (unexpected, "unexpected"), (wrong, "with the wrong shape or dtype")) if names]
    label = f"{FAMILY_NAMES[spec.family]} {VERSION_NAMES[spec.version]}"
    raise KeyLayoutError(f"{source}: expected the {len(expected)} keys of an {label} motion module, "
                         f"found {'; '.join(parts)}.", missing=missing, unexpected=unexpected,
                         wrong_shapes=[p.split(" ")[0] for p in wrong])
