"""Properties of one motion module that only hold if its math is right (tiny, seeded, CPU, fp32)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from motion_modules.model import (
    MotionCall,
    MotionModule,
    PositionalEncoding,
    group_norm_across_frames,
    offset_positions,
    sdpa_attention,
    sinusoid,
)

CHANNELS, HEADS, PE_LENGTH = 64, 8, 16
FRAMES, HEIGHT, WIDTH = 6, 3, 4
TOL = 1e-5


def _module(seed: int = 0, operations=nn, dtype=None, **options) -> MotionModule:
    """A tiny module with random weights everywhere, norm affines included (default init leaves them 1/0)."""
    torch.manual_seed(seed)
    module = MotionModule(CHANNELS, HEADS, PE_LENGTH, **options)
    for name, param in module.named_parameters():
        if "norm" in name:
            with torch.no_grad():
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(param))
    if operations is nn and dtype is None:
        return module.eval()
    other = MotionModule(CHANNELS, HEADS, PE_LENGTH, operations=operations, dtype=dtype, **options)
    other.load_state_dict(module.state_dict())
    return other.eval()


def _input(clips: int = 1, frames: int = FRAMES, seed: int = 1) -> torch.Tensor:
    """Random (b f) c h w activations."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(clips * frames, CHANNELS, HEIGHT, WIDTH, generator=generator)


def _run(module: MotionModule, x: torch.Tensor, frames: int = FRAMES, **call) -> torch.Tensor:
    """One forward pass without autograd."""
    with torch.no_grad():
        return module(x, MotionCall(frames, **call))


def _reference(sd: dict, x: torch.Tensor, frames: int, positions: torch.Tensor | None = None,
               across_frames: bool = False) -> torch.Tensor:
    """The official AnimateDiff motion-module math written out straight from the checkpoint tensors.

    Follows the original VanillaTemporalModule / TemporalTransformer3DModel / VersatileAttention layout:
    the stream stays (b f) (h w) c and each attention block rearranges to (b d) f c and back.
    ``across_frames``: the input GroupNorm runs on the 5-D b c f h w tensor (the SDXL beta variant).
    """
    def p(key):
        return sd["temporal_transformer." + key]

    bf, c, h, w = x.shape
    b, d, head_dim = bf // frames, h * w, c // HEADS
    rows = torch.arange(frames) if positions is None else positions
    if across_frames:
        five_d = x.reshape(b, frames, c, h, w).transpose(1, 2)  # (b f) c h w -> b c f h w
        hidden = F.group_norm(five_d, 32, p("norm.weight"), p("norm.bias"), eps=1e-6).transpose(1, 2)
        hidden = hidden.reshape(bf, c, h, w)  # b f c h w -> (b f) c h w
    else:
        hidden = F.group_norm(x, 32, p("norm.weight"), p("norm.bias"), eps=1e-6)  # each frame its own sample
    hidden = hidden.permute(0, 2, 3, 1).reshape(bf, d, c)  # (b f) c h w -> (b f) (h w) c
    hidden = F.linear(hidden, p("proj_in.weight"), p("proj_in.bias"))
    block = "transformer_blocks.0."
    for i in range(2):
        attn = f"{block}attention_blocks.{i}."
        normed = F.layer_norm(hidden, (c,), p(f"{block}norms.{i}.weight"), p(f"{block}norms.{i}.bias"))
        seq = normed.reshape(b, frames, d, c).permute(0, 2, 1, 3).reshape(b * d, frames, c)  # (b f) d c -> (b d) f c
        seq = seq + p(attn + "pos_encoder.pe")[:, rows]
        q, k, v = (F.linear(seq, p(f"{attn}to_{n}.weight")) for n in "qkv")
        q, k, v = (t.reshape(b * d, frames, HEADS, head_dim).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b * d, frames, c)
        out = F.linear(out, p(attn + "to_out.0.weight"), p(attn + "to_out.0.bias"))
        out = out.reshape(b, d, frames, c).permute(0, 2, 1, 3).reshape(bf, d, c)  # (b d) f c -> (b f) d c
        hidden = out + hidden
    normed = F.layer_norm(hidden, (c,), p(block + "ff_norm.weight"), p(block + "ff_norm.bias"))
    value, gate = F.linear(normed, p(block + "ff.net.0.proj.weight"), p(block + "ff.net.0.proj.bias")).chunk(2, -1)
    hidden = F.linear(value * F.gelu(gate), p(block + "ff.net.2.weight"), p(block + "ff.net.2.bias")) + hidden
    hidden = F.linear(hidden, p("proj_out.weight"), p("proj_out.bias"))
    return x + hidden.reshape(bf, h, w, c).permute(0, 3, 1, 2)  # (b f) (h w) c -> (b f) c h w


def _set_pe(module: MotionModule, table: torch.Tensor) -> None:
    """Overwrite the stored PE table of both attention blocks."""
    for attention in module.temporal_transformer.transformer_blocks[0].attention_blocks:
        attention.pos_encoder.pe.copy_(table)


def test_matches_straight_line_reference():
    """The module equals an independent transcription of the official math, per-block PE tables included."""
    module = _module()
    torch.manual_seed(2)
    for attention in module.temporal_transformer.transformer_blocks[0].attention_blocks:
        attention.pos_encoder.pe.copy_(torch.randn(1, PE_LENGTH, CHANNELS))  # distinct table per block
    x = _input(clips=2)
    expected = _reference(module.state_dict(), x, FRAMES)
    torch.testing.assert_close(_run(module, x), expected, atol=TOL, rtol=0)


def test_matches_reference_with_arbitrary_positions():
    """Explicit, non-contiguous positions pick exactly those PE rows (a wrapped context window)."""
    module = _module()
    positions = torch.tensor([13, 14, 15, 0, 1, 2])
    x = _input()
    expected = _reference(module.state_dict(), x, FRAMES, positions)
    torch.testing.assert_close(_run(module, x, positions=positions), expected, atol=TOL, rtol=0)


def test_across_frames_norm_option_matches_reference():
    """norm_across_frames=True equals the reference with a 5-D GroupNorm, and differs from per-frame."""
    module = _module(norm_across_frames=True)
    x = _input(clips=2) * torch.linspace(0.3, 3.0, FRAMES).repeat(2)[:, None, None, None]
    out = _run(module, x)
    torch.testing.assert_close(out, _reference(module.state_dict(), x, FRAMES, across_frames=True),
                               atol=TOL, rtol=0)
    assert (out - _reference(module.state_dict(), x, FRAMES)).abs().max() > 1e-3


def test_zero_proj_out_is_exact_identity():
    """A zero-initialised proj_out (how training starts) makes the module return its input bit for bit."""
    module = _module()
    nn.init.zeros_(module.temporal_transformer.proj_out.weight)
    nn.init.zeros_(module.temporal_transformer.proj_out.bias)
    x = _input()
    assert torch.equal(_run(module, x), x)


def test_permuting_frames_is_equivariant_without_pe():
    """With the PE zeroed, attention over frames is permutation-equivariant: permuted in, permuted out."""
    module = _module()
    _set_pe(module, torch.zeros(1, PE_LENGTH, CHANNELS))
    x = _input()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(_run(module, x[perm]), _run(module, x)[perm], atol=TOL, rtol=0)


def test_permuting_frames_is_not_equivariant_with_pe():
    """The sinusoid PE tells frames apart, so the same permutation changes the result."""
    module = _module()
    x = _input()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert (_run(module, x[perm]) - _run(module, x)[perm]).abs().max() > 1e-3


def test_offset_positions_select_matching_table_rows():
    """offset_positions(n, k) reads rows k..k+n-1 of the full table."""
    encoding = PositionalEncoding(CHANNELS, PE_LENGTH)
    rows = encoding.rows(offset_positions(5, 7), torch.float32)
    assert torch.equal(offset_positions(5, 7), torch.arange(7, 12))
    assert torch.equal(rows, sinusoid(PE_LENGTH, CHANNELS)[:, 7:12])


def test_offset_slice_uses_those_rows_and_attends_within_the_slice():
    """Frames k..k+n-1 run with offset positions == reference on the slice alone with PE rows k..k+n-1.

    That is also a module whose tables start at row k run from 0; it is not the full clip's output for
    those frames, because attention only sees the slice.
    """
    module = _module()
    full = _input(frames=12)
    k, n = 5, 4
    piece = full[k:k + n]
    ours = _run(module, piece, frames=n, positions=offset_positions(n, k))
    torch.testing.assert_close(ours, _reference(module.state_dict(), piece, n, torch.arange(k, k + n)),
                               atol=TOL, rtol=0)
    shifted = _module()
    for attention in shifted.temporal_transformer.transformer_blocks[0].attention_blocks:
        attention.pos_encoder.pe.copy_(torch.roll(attention.pos_encoder.pe, -k, dims=1))
    torch.testing.assert_close(ours, _run(shifted, piece, frames=n), atol=TOL, rtol=0)
    assert (ours - _run(module, full, frames=12)[k:k + n]).abs().max() > 1e-3


def test_zero_offset_equals_default_positions():
    """offset 0 is the default 0..f-1."""
    module = _module()
    x = _input()
    assert torch.equal(_run(module, x, positions=offset_positions(FRAMES, 0)), _run(module, x))


class _CastLinear(nn.Linear):
    """Linear that keeps its stored dtype and casts weights to the input's dtype per call."""

    def forward(self, x):
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class _CastLayerNorm(nn.LayerNorm):
    """LayerNorm that casts its affine to the input's dtype per call."""

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class _CastGroupNorm(nn.GroupNorm):
    """GroupNorm that casts its affine to the input's dtype per call."""

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


CASTING_OPS = SimpleNamespace(Linear=_CastLinear, LayerNorm=_CastLayerNorm, GroupNorm=_CastGroupNorm)


def test_fp16_stored_weights_compute_close_to_fp32():
    """fp16-stored weights, cast to fp32 per call by injected operations (ComfyUI's manual-cast way), stay within 5e-3."""
    reference = _module()
    stored_half = _module(operations=CASTING_OPS, dtype=torch.float16)
    assert {p.dtype for p in stored_half.state_dict().values()} == {torch.float16}
    x = _input(clips=2)
    out = _run(stored_half, x)
    diff = (out - _run(reference, x)).abs().max()
    assert out.dtype == torch.float32
    assert 0 < diff <= 5e-3  # > 0: the weights really were rounded to fp16


def test_batched_clips_do_not_leak():
    """Two clips in one batch give exactly what each clip gives alone."""
    module = _module()
    x = _input(clips=2)
    alone = torch.cat([_run(module, x[:FRAMES]), _run(module, x[FRAMES:])])
    torch.testing.assert_close(_run(module, x), alone, atol=TOL, rtol=0)


def test_scale_zero_is_identity_and_scale_is_linear():
    """scale=0 returns the input, scale=1 the trained output, scale=s adds s times the residual."""
    module = _module()
    x = _input()
    trained = _run(module, x)
    assert torch.equal(_run(module, x, scale=0.0), x)
    assert torch.equal(_run(module, x, scale=1.0), trained)
    torch.testing.assert_close(_run(module, x, scale=0.4), x + 0.4 * (trained - x), atol=TOL, rtol=0)


def test_pe_index_past_length_raises_with_limit():
    """A position at or past pe_length raises ValueError naming the limit; the last row is fine."""
    module = _module()
    x = _input(frames=4)
    _run(module, x, frames=4, positions=offset_positions(4, PE_LENGTH - 4))
    with pytest.raises(ValueError, match=f"limit of {PE_LENGTH} frames"):
        _run(module, x, frames=4, positions=offset_positions(4, PE_LENGTH - 3))
    with pytest.raises(ValueError, match=str(PE_LENGTH)):
        _run(module, _input(frames=PE_LENGTH + 1), frames=PE_LENGTH + 1)


def test_group_norm_across_frames_equals_5d_group_norm():
    """Stacking frames reproduces F.group_norm on the b c f h w tensor (statistics over all frames)."""
    torch.manual_seed(3)
    norm = nn.GroupNorm(32, CHANNELS, eps=1e-6)
    nn.init.normal_(norm.weight, 1.0, 0.2)
    nn.init.normal_(norm.bias, 0.0, 0.2)
    x = _input(clips=2) * torch.linspace(0.5, 3.0, FRAMES).repeat(2)[:, None, None, None]
    with torch.no_grad():
        ours = group_norm_across_frames(x, FRAMES, norm)
        five_d = x.reshape(2, FRAMES, CHANNELS, HEIGHT, WIDTH).permute(0, 2, 1, 3, 4)  # (b f) c h w -> b c f h w
        direct = F.group_norm(five_d, 32, norm.weight, norm.bias, norm.eps)
        direct = direct.permute(0, 2, 1, 3, 4).reshape_as(x)  # b c f h w -> (b f) c h w
        per_frame = norm(x)
    torch.testing.assert_close(ours, direct, atol=TOL, rtol=0)
    assert (ours - per_frame).abs().max() > 1e-2


def test_injected_attention_fn_is_used():
    """attention_fn is called once per attention block and its result is what the module uses."""
    module = _module()
    x = _input()
    calls = []

    def recording(q, k, v, heads):
        calls.append(q.shape)
        return sdpa_attention(q, k, v, heads)

    torch.testing.assert_close(_run(module, x, attention_fn=recording), _run(module, x), atol=0, rtol=0)
    assert calls == [torch.Size([HEIGHT * WIDTH, FRAMES, CHANNELS])] * 2
    doubled = _run(module, x, attention_fn=lambda q, k, v, h: 2 * sdpa_attention(q, k, v, h))
    assert (doubled - _run(module, x)).abs().max() > 1e-3


def test_sdpa_attention_chunks_batch_heads(monkeypatch):
    """Above the batch·heads limit the batch is attended in chunks (CUDA grid cap); the result is the same as
    one call and equals softmax(q k^T / sqrt(d)) v written out, and chunks really happen (ragged last one)."""
    import motion_modules.model as model

    torch.manual_seed(0)
    q, k, v = (torch.randn(37, FRAMES, CHANNELS) for _ in range(3))
    split = lambda t: t.unflatten(-1, (HEADS, -1)).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(CHANNELS // HEADS), dim=-1)
    reference = (weights @ split(v)).transpose(1, 2).flatten(2)
    whole = sdpa_attention(q, k, v, HEADS)
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(model.F, "scaled_dot_product_attention", lambda *a: calls.append(a[0].shape[0]) or real(*a))
    monkeypatch.setattr(model, "SDPA_BATCH_HEADS_LIMIT", 10 * HEADS)
    chunked = sdpa_attention(q, k, v, HEADS)
    assert calls == [10, 10, 10, 7]
    torch.testing.assert_close(chunked, whole, atol=0, rtol=0)
    torch.testing.assert_close(whole, reference, atol=TOL, rtol=0)


def test_positions_of_wrong_length_raise():
    """One PE row for many frames must raise, not broadcast that row onto every frame."""
    with pytest.raises(ValueError, match="positions"):
        _run(_module(), _input(), positions=torch.tensor([5]))


def test_negative_positions_raise():
    """A negative PE row must raise, not wrap around to the end of the table."""
    with pytest.raises(ValueError, match="positions"):
        _run(_module(), _input(), positions=offset_positions(FRAMES, -2))
