"""Test helpers: random-weight state dicts in the exact key layouts of real files, and writers for them.

Import from any core test (``from _fixtures import …``). Every builder is seeded and takes a spec, so the
same helpers make tiny test modules and full-size ones.
"""
from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from motion_modules.spec import MotionModuleSpec, expected_shapes, is_pe_key, sinusoidal_pe, standard_spec

TINY_SD15 = (32, 64, 96, 96)  # GroupNorm(32) needs multiples of 32; distinct widths catch level mix-ups
TINY_SDXL = (32, 64, 96)


def tiny_spec(version: str, **fields) -> MotionModuleSpec:
    """The official layout of ``version`` at tiny widths."""
    widths = TINY_SDXL if version in ("sdxl-beta", "hotshotxl") else TINY_SD15
    return standard_spec(version, widths=fields.pop("widths", widths), **fields)


def original_state_dict(spec: MotionModuleSpec, dtype: torch.dtype = torch.float32, seed: int = 0,
                        with_pe: bool = True) -> dict[str, Tensor]:
    """Random weights under the official AnimateDiff keys; position tables hold the standard sinusoid."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in expected_shapes(spec).items():
        if is_pe_key(key):
            if with_pe:
                out[key] = sinusoidal_pe(shape[1], shape[2], dtype)
            continue
        out[key] = torch.randn(shape, generator=gen).to(dtype)
    return out


def to_diffusers_keys(sd: Mapping[str, Tensor], with_pe: bool = True) -> dict[str, Tensor]:
    """The MotionAdapter layout, renamed the way diffusers' own converter does it (plain string replaces)."""
    out = {}
    for key, value in sd.items():
        if ".pos_encoder.pe" in key:
            if with_pe and ".attention_blocks.0." in key:
                block = key.split(".attention_blocks.0.")[0].replace(".temporal_transformer", "")
                out[f"{block}.pos_embed.pe"] = value
            continue
        new = (key.replace(".norms.0", ".norm1").replace(".norms.1", ".norm2").replace(".ff_norm", ".norm3")
               .replace(".attention_blocks.0", ".attn1").replace(".attention_blocks.1", ".attn2")
               .replace(".temporal_transformer", ""))
        out[new] = value
    return out


def to_hotshot_keys(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The hsxl_temporal_layers layout: ``temporal_attentions.{j}.…pos_encoder.positional_encoding``."""
    out = {}
    for key, value in sd.items():
        new = re.sub(r"\.motion_modules\.(\d+)\.temporal_transformer\.", r".temporal_attentions.\1.", key)
        out[new.replace("pos_encoder.pe", "pos_encoder.positional_encoding")] = value
    return out


def diffusers_config(spec: MotionModuleSpec, **overrides) -> dict:
    """A MotionAdapter ``config.json`` matching ``spec``."""
    config = {"_class_name": "MotionAdapter", "_diffusers_version": "0.42.1",
              "block_out_channels": list(spec.widths), "motion_layers_per_block": 2,
              "motion_mid_block_layers_per_block": 1, "motion_transformer_layers_per_block": 1,
              "motion_num_attention_heads": spec.heads, "motion_norm_num_groups": 32,
              "motion_max_seq_length": spec.pe_length, "use_motion_mid_block": spec.has_mid_block,
              "conv_in_channels": None}
    config.update(overrides)
    return config


def bundle_with_unet(sd: Mapping[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """A train.py-style save: the motion modules inside a full (diffusers-named) UNet, keys under ``prefix``."""
    unet = {"conv_in.weight": torch.zeros(32, 4, 3, 3), "conv_in.bias": torch.zeros(32),
            "time_embedding.linear_1.weight": torch.zeros(8, 32),
            "down_blocks.0.resnets.0.conv1.weight": torch.zeros(32, 32, 3, 3),
            "down_blocks.0.attentions.0.proj_in.weight": torch.zeros(32, 32),
            "mid_block.resnets.0.norm1.weight": torch.zeros(32),
            "up_blocks.0.upsamplers.0.conv.weight": torch.zeros(32, 32, 3, 3),
            "conv_norm_out.weight": torch.zeros(32), "conv_out.weight": torch.zeros(4, 32, 3, 3)}
    return {prefix + k: v for k, v in {**unet, **sd}.items()}


def _lora_pair(rank: int, width: int) -> tuple[Tensor, Tensor]:
    """(down, up) zero LoRA factors of ``rank`` for a ``width``-wide linear layer."""
    return torch.zeros(rank, width), torch.zeros(width, rank)


def motion_lora_state_dict(style: str = "official", rank: int = 4, width: int = 32) -> dict[str, Tensor]:
    """A MotionLoRA: ``official`` (v2_lora_*.ckpt processor keys), ``peft`` (diffusers lora_A/B) or ``kohya``."""
    down, up = _lora_pair(rank, width)
    base = "down_blocks.0.motion_modules.0"
    if style == "official":
        attn = f"{base}.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor"
        return {f"{attn}.to_{p}_lora.{d}.weight": (down if d == "down" else up)
                for p in ("q", "k", "v", "out") for d in ("down", "up")}
    if style == "peft":
        attn = f"{base}.transformer_blocks.0.attn1"
        return {f"{attn}.to_{p}.lora_{ab}.weight": (down if ab == "A" else up)
                for p in ("q", "k", "v") for ab in ("A", "B")}
    name = "lora_unet_down_blocks_0_motion_modules_0_temporal_transformer_transformer_blocks_0_attention_blocks_0_to_q"
    return {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(4.0)}


def sd_lora_state_dict(rank: int = 4, width: int = 32) -> dict[str, Tensor]:
    """A kohya-style SD LoRA on the UNet and the text encoder."""
    down, up = _lora_pair(rank, width)
    unet = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    return {f"{unet}.lora_down.weight": down, f"{unet}.lora_up.weight": up, f"{unet}.alpha": torch.tensor(4.0),
            f"{te}.lora_down.weight": down, f"{te}.lora_up.weight": up}


def domain_adapter_state_dict(rank: int = 4, width: int = 32) -> dict[str, Tensor]:
    """v3_sd15_adapter.ckpt's layout: diffusers attention-processor LoRA on the spatial transformer blocks."""
    down, up = _lora_pair(rank, width)
    out = {}
    for seat in ("down_blocks.0.attentions.0", "mid_block.attentions.0", "up_blocks.1.attentions.2"):
        for attn in ("attn1", "attn2"):
            for p in ("q", "k", "v", "out"):
                for d, t in (("down", down), ("up", up)):
                    out[f"{seat}.transformer_blocks.0.{attn}.processor.to_{p}_lora.{d}.weight"] = t
    return out


def sd_checkpoint_state_dict() -> dict[str, Tensor]:
    """A tiny stand-in for a full SD checkpoint (UNet, VAE and text-encoder keys, LDM naming)."""
    return {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
            "model.diffusion_model.out.2.weight": torch.zeros(4, 32, 3, 3),
            "first_stage_model.encoder.conv_in.weight": torch.zeros(32, 3, 3, 3),
            "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(32)}


def write_safetensors(sd: Mapping[str, Tensor], path: str | Path, metadata: dict | None = None) -> Path:
    """Save ``sd`` as .safetensors (tensors made contiguous, shared storage split)."""
    path = Path(path)
    save_file({k: v.contiguous().clone() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


def write_ckpt(sd: Mapping[str, Tensor], path: str | Path, nest: str | None = None, extra: dict | None = None,
               legacy: bool = False) -> Path:
    """Save ``sd`` with torch.save, optionally under ``{nest: sd, **extra}``; ``legacy`` = pre-zip format."""
    path = Path(path)
    obj: dict = dict(sd) if nest is None else {nest: dict(sd)}
    obj.update(extra or {})
    torch.save(obj, str(path), _use_new_zipfile_serialization=not legacy)
    return path


def write_diffusers_dir(sd: Mapping[str, Tensor], folder: str | Path, config: dict | None = None,
                        weights_name: str = "diffusion_pytorch_model.safetensors") -> Path:
    """A diffusers model folder: weights file plus ``config.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if weights_name.endswith(".safetensors"):
        write_safetensors(sd, folder / weights_name)
    else:
        write_ckpt(sd, folder / weights_name)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


class _WritesMarker:
    """Unpickling this would create ``path``: the payload a weights-only loader must refuse."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def write_malicious_pickle(path: str | Path, marker: str | Path, zip_format: bool = True) -> Path:
    """A .ckpt whose unpickling would write ``marker`` (torch.save zip, or a bare pickle)."""
    path = Path(path)
    payload = {"state_dict": {"w": torch.zeros(2)}, "evil": _WritesMarker(str(marker))}
    if zip_format:
        torch.save(payload, str(path))
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path
