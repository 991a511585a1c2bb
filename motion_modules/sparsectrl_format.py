"""SparseCtrl files as data plus pure functions: detect the layout and kind from keys and shapes, convert to
the official key names, check every key, load weights-only.

Layouts read:
- ``official``: guoyww/AnimateDiff ``v3_sd15_sparsectrl_{rgb,scribble}.ckpt``: flat diffusers-0.11-style keys
  (optionally nested under ``controlnet`` or ``state_dict``), motion modules as
  ``down_blocks.{i}.motion_modules.{j}.temporal_transformer.transformer_blocks.0.attention_blocks.0.…`` with
  their ``pos_encoder.pe`` tables stored (diffusers' conversion script maps them to ``pos_embed``).
- ``diffusers``: ``SparseControlNetModel`` (``…motion_modules.{j}.transformer_blocks.0.{attn1,norm1,norm3,ff,
  pos_embed}``, no ``temporal_transformer``).
RGB files carry the simplified embedding (``controlnet_cond_embedding.weight``, 4 latent channels + mask);
scribble files the hint stack (``controlnet_cond_embedding.conv_in.weight``, 3 pixel channels + mask).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

from torch import Tensor

from .errors import first_few
from .io import display_name, read_state_dict
from .model import sinusoid
from .sparsectrl import SparseCtrlEncoder, SparseCtrlSpec

SIMPLIFIED = "controlnet_cond_embedding.weight"
HINT_STACK = "controlnet_cond_embedding.conv_in.weight"
MOTION_RE = re.compile(r"^(down_blocks\.\d+\.motion_modules\.\d+\.)(.+)$")
DIFFUSERS_TO_OFFICIAL = (  # inside one motion module, diffusers name -> official name
    ("transformer_blocks.0.attn1.", "transformer_blocks.0.attention_blocks.0."),
    ("transformer_blocks.0.norm1.", "transformer_blocks.0.norms.0."),
    ("transformer_blocks.0.norm3.", "transformer_blocks.0.ff_norm."),
    ("transformer_blocks.0.pos_embed.", "transformer_blocks.0.attention_blocks.0.pos_encoder."),
)
PE_SUFFIX = "attention_blocks.0.pos_encoder.pe"


class SparseCtrlFileError(ValueError):
    """A file given as SparseCtrl that is not one, or not a complete one."""


def _what_else(keys: list[str]) -> str:
    """A short guess of what a non-SparseCtrl file is, for the error."""
    has_motion = any(".motion_modules." in k for k in keys)
    if has_motion and not any(k.startswith("controlnet_") for k in keys):
        return "an AnimateDiff motion module (load it with Load Motion Module)"
    if any(k.startswith(("controlnet_down_blocks.", "zero_convs.", "control_model.", "input_hint_block."))
           for k in keys):
        return "a ControlNet without motion modules (load it with core's Load ControlNet Model)"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "a full Stable Diffusion checkpoint"
    if any("lora" in k.lower() for k in keys):
        return "a LoRA"
    return f"other weights (first keys: {first_few(sorted(keys), 3)})"


def _level_count(sd: Mapping[str, Tensor]) -> int:
    """How many down levels the encoder has."""
    levels = {int(m.group(1)) for k in sd if (m := re.match(r"^down_blocks\.(\d+)\.resnets\.0\.conv1\.weight$", k))}
    return max(levels) + 1 if levels else 0


def detect(sd: Mapping[str, Tensor], source: str = "file") -> SparseCtrlSpec:
    """The SparseCtrlSpec the keys and shapes describe; SparseCtrlFileError for any other file."""
    keys = list(sd)
    is_sparse = (SIMPLIFIED in sd or HINT_STACK in sd) and any(".motion_modules." in k for k in keys)
    if not is_sparse:
        raise SparseCtrlFileError(f"{source}: expected a SparseCtrl file (a ControlNet with motion modules and a "
                                  f"controlnet_cond_embedding), found {_what_else(keys)}.")
    layout = "official" if any(".temporal_transformer." in k for k in keys) else "diffusers"
    levels = _level_count(sd)
    widths = tuple(sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels))
    layers = len({k.split(".")[3] for k in keys if k.startswith("down_blocks.0.resnets.")})
    context = sd.get("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")
    pes = [v for k, v in sd.items() if k.endswith((PE_SUFFIX, "pos_embed.pe"))]
    if SIMPLIFIED in sd:
        cond, hint = sd[SIMPLIFIED].shape[1] - 1, ()
    else:
        stack = [sd[HINT_STACK]] + [sd[f"controlnet_cond_embedding.blocks.{i}.weight"]
                                    for i in range(1, 64, 2) if f"controlnet_cond_embedding.blocks.{i}.weight" in sd]
        cond, hint = sd[HINT_STACK].shape[1] - 1, tuple(int(w.shape[0]) for w in stack)
    return SparseCtrlSpec(kind="rgb" if not hint else "scribble", widths=widths,
                          context_dim=int(context.shape[1]) if context is not None else 768,
                          cond_channels=int(cond), hint_widths=hint,
                          pe_length=int(pes[0].shape[1]) if pes else 32, layers=max(layers, 1),
                          in_channels=int(sd["conv_in.weight"].shape[1]) if "conv_in.weight" in sd else 4,
                          source_layout=layout, pe_stored=bool(pes))


def _official_name(key: str) -> str:
    """A diffusers SparseControlNetModel key in the official naming."""
    m = MOTION_RE.match(key)
    if m is None:
        return key
    rest = m.group(2)
    for old, new in DIFFUSERS_TO_OFFICIAL:
        rest = rest.replace(old, new)
    return f"{m.group(1)}temporal_transformer.{rest}"


def to_official(sd: Mapping[str, Tensor], spec: SparseCtrlSpec) -> dict[str, Tensor]:
    """A new dict in the official layout, position tables filled with the standard sinusoid where absent."""
    out = dict(sd) if spec.source_layout == "official" else {_official_name(k): v for k, v in sd.items()}
    for key in [k for k in out if k.endswith(".temporal_transformer.proj_in.weight")]:
        pe_key = key.replace("proj_in.weight", f"transformer_blocks.0.{PE_SUFFIX}")
        if pe_key not in out:
            out[pe_key] = sinusoid(spec.pe_length, out[key].shape[0]).to(out[key].dtype)
    return out


def validate(sd: Mapping[str, Tensor], spec: SparseCtrlSpec, source: str = "file") -> None:
    """Every key and shape the spec implies, present and right; SparseCtrlFileError naming the first few otherwise."""
    expected = {k: tuple(v.shape) for k, v in SparseCtrlEncoder(spec, device="meta").state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in set(expected) & set(sd) if tuple(sd[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing ({first_few(missing, 3)})" if missing else "",
                 f"{len(unexpected)} unexpected ({first_few(unexpected, 3)})" if unexpected else "",
                 f"{len(wrong)} of the wrong shape ({first_few(wrong, 3)})" if wrong else ""]
        raise SparseCtrlFileError(f"{source}: expected a complete {spec.kind} SparseCtrl in the {spec.source_layout} "
                                  f"layout, found keys {', '.join(p for p in parts if p)}.")


def load_sparsectrl(path: str | os.PathLike) -> tuple[SparseCtrlSpec, dict[str, Tensor]]:
    """Read (weights-only), identify, convert and fully check a SparseCtrl file; one error, never a partial load."""
    name = display_name(path)
    sd = read_state_dict(path)
    spec = detect(sd, source=name)
    official = to_official(sd, spec)
    validate(official, spec, source=name)
    return spec, official


def build_encoder(spec: SparseCtrlSpec, sd: Mapping[str, Tensor], operations=None, dtype=None) -> SparseCtrlEncoder:
    """A SparseCtrlEncoder holding ``sd`` (official layout), in eval mode with no gradients."""
    import torch.nn as nn
    model = SparseCtrlEncoder(spec, operations=operations or nn, dtype=dtype, device="cpu")
    model.load_state_dict(dict(sd), strict=True)
    return model.eval().requires_grad_(False)
