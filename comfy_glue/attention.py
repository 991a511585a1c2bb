"""Temporal attention's backend, decided per call by ``backend``: ComfyUI's dispatch on accelerators, chunked SDPA
on the CPU.

ComfyUI's dispatch (``comfy.ldm.modules.attention.optimized_attention``) is what ``--use-sage-attention``,
``--use-flash-attention``, xformers and ``--use-pytorch-cross-attention`` select, and it runs an
``optimized_attention_override`` a model carries in its ``transformer_options`` (both 0.3.64 and 0.8.0, through
``wrap_attn``). On the CPU its default is sub-quadratic attention, built for thousands of tokens: with 16-32 tokens
per sequence it runs the motion module's attention about 4x slower than fused SDPA (bench/README.md), so the CPU
keeps our chunked SDPA unless the model carries an override. Temporal attention has one sequence per pixel, and
CUDA kernels that put sequences × heads on one grid axis fail above 65,535 (SD1.5 at 512² with CFG is exactly
65,536 at the top level), so dispatched calls go in batch chunks that stay clear of it.
"""
from __future__ import annotations

import enum

import comfy.ldm.modules.attention as comfy_attention
from torch import Tensor

from ..motion_modules.model import SDPA_BATCH_HEADS_LIMIT, AttentionFn, sdpa_attention

OVERRIDE_KEY = "optimized_attention_override"


class Backend(str, enum.Enum):
    """Where one temporal-attention call goes."""

    SDPA = "sdpa"  # motion_modules.model.sdpa_attention: fused SDPA in batch chunks
    DISPATCH = "dispatch"  # ComfyUI's optimized_attention (flags and transformer_options override honoured)


def backend(device_type: str, transformer_options: dict) -> Backend:
    """The backend for one call on ``device_type``: chunked SDPA on the CPU unless the model carries an override."""
    if device_type == "cpu" and OVERRIDE_KEY not in transformer_options:
        return Backend.SDPA
    return Backend.DISPATCH


def dispatched(q: Tensor, k: Tensor, v: Tensor, heads: int, transformer_options: dict) -> Tensor:
    """ComfyUI's optimized_attention, in batch chunks of at most SDPA_BATCH_HEADS_LIMIT sequences × heads."""
    step = max(1, SDPA_BATCH_HEADS_LIMIT // heads)
    if q.shape[0] <= step:
        return comfy_attention.optimized_attention(q, k, v, heads, transformer_options=transformer_options)
    out = q.new_empty(q.shape[0], q.shape[1], v.shape[-1])  # (b, l, h*d)
    for i in range(0, q.shape[0], step):
        out[i:i + step] = comfy_attention.optimized_attention(q[i:i + step], k[i:i + step], v[i:i + step], heads,
                                                              transformer_options=transformer_options)
    return out


def device_type(q: Tensor) -> str:
    """The device kind a call runs on ("cpu", "cuda", "mps", ...); a seam for tests."""
    return q.device.type


def motion_attention(transformer_options: dict) -> AttentionFn:
    """The attention_fn for one motion-module pass; each call goes where ``backend`` says."""
    def attend(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
        if backend(device_type(q), transformer_options) is Backend.SDPA:
            return sdpa_attention(q, k, v, heads)
        return dispatched(q, k, v, heads, transformer_options)
    return attend
