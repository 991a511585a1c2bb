"""An independent transcription of views (motion-module-only context windows) for the tests.

Written from AnimateDiff-Evolved's ``TemporalTransformerBlock.forward`` (view_options branch) and diffusers'
``FreeNoiseTransformerBlock``: input GroupNorm and proj_in on the whole clip, the two attention blocks on each
window's frames with PE rows 0..n-1, a per-frame weighted average, then feed-forward, proj_out and the residual
on the fused tokens. Plain loops and explicit softmax; it imports nothing from the pack. Fuse weights are the
formulas below, written from their definitions, not read from ``sampling/context.py``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reference_weights(method: str, window: list[int], frames: int, overlap: int) -> list[float]:
    """The weight of each position of ``window`` for fuse ``method``, from the formulas in the README/core."""
    n = len(window)
    if method == "flat":
        return [1.0] * n
    if method == "pyramid":  # distance to the nearer window edge, counting from 1
        return [float(min(i + 1, n - i)) for i in range(n)]
    if method == "gaussian":  # centred, sigma = n / 4
        return [math.exp(-0.5 * ((i - (n - 1) / 2) / (n / 4)) ** 2) for i in range(n)]
    if method == "overlap-linear":  # k / (overlap + 1) ramps on sides that border other frames
        weights = [1.0] * n
        for i in range(min(overlap, n)):
            ramp = (i + 1) / (overlap + 1)
            if window[0] > 0:
                weights[i] = min(weights[i], ramp)
            if window[-1] < frames - 1:
                weights[n - 1 - i] = min(weights[n - 1 - i], ramp)
        return weights
    raise KeyError(method)


def _attention_blocks(sd, p: str, hidden: torch.Tensor, heads: int) -> torch.Tensor:
    """The two residual attention blocks on (seq, f, c) tokens, PE rows 0..f-1."""
    seqs, f, c = hidden.shape
    head_dim = c // heads
    for i in range(2):
        attn = f"{p}transformer_blocks.0.attention_blocks.{i}."
        normed = F.layer_norm(hidden, (c,), sd[f"{p}transformer_blocks.0.norms.{i}.weight"],
                              sd[f"{p}transformer_blocks.0.norms.{i}.bias"])
        normed = normed + sd[attn + "pos_encoder.pe"][0, :f]
        q, k, v = (F.linear(normed, sd[f"{attn}to_{n}.weight"]).view(seqs, f, heads, head_dim).transpose(1, 2)
                   for n in "qkv")
        scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        out = (scores @ v).transpose(1, 2).reshape(seqs, f, c)
        hidden = F.linear(out, sd[attn + "to_out.0.weight"], sd[attn + "to_out.0.bias"]) + hidden
    return hidden


def reference_views(sd: dict, x: torch.Tensor, frames: int, views: list[tuple[list[int], list[float]]],
                    heads: int, across_frames: bool = False, prefix: str = "temporal_transformer.") -> torch.Tensor:
    """One motion module with ``views`` = [(window frames, weights)], on x: (b f) c h w; float64 inside."""
    sd = {k: v.double() for k, v in sd.items()}
    p = prefix
    bf, c, h, w = x.shape
    b = bf // frames
    xd = x.double()
    if across_frames:  # one GroupNorm sample per clip, over all its frames
        clips = xd.view(b, frames, c, h, w).transpose(1, 2)
        normed = F.group_norm(clips, 32, sd[p + "norm.weight"], sd[p + "norm.bias"], eps=1e-6).transpose(1, 2)
    else:
        normed = F.group_norm(xd, 32, sd[p + "norm.weight"], sd[p + "norm.bias"], eps=1e-6)
    tokens = normed.reshape(b, frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, frames, c)
    tokens = F.linear(tokens, sd[p + "proj_in.weight"], sd[p + "proj_in.bias"])
    attended = [_attention_blocks(sd, p, tokens[:, window], heads) for window, _ in views]
    fused = torch.zeros_like(tokens)
    for frame in range(frames):
        num, den = torch.zeros_like(tokens[:, 0]), 0.0
        for (window, weights), out in zip(views, attended, strict=True):
            if frame in window:
                k = window.index(frame)
                num += weights[k] * out[:, k]
                den += weights[k]
        fused[:, frame] = num / den
    block = p + "transformer_blocks.0."
    normed = F.layer_norm(fused, (c,), sd[block + "ff_norm.weight"], sd[block + "ff_norm.bias"])
    value, gate = F.linear(normed, sd[block + "ff.net.0.proj.weight"], sd[block + "ff.net.0.proj.bias"]).chunk(2, -1)
    out = F.linear(value * F.gelu(gate), sd[block + "ff.net.2.weight"], sd[block + "ff.net.2.bias"]) + fused
    out = F.linear(out, sd[p + "proj_out.weight"], sd[p + "proj_out.bias"])
    delta = out.reshape(b, h, w, frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, w)
    return (xd + delta).to(x.dtype)
