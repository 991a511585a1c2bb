"""AnimateDiff motion module: temporal transformer blocks over frames (Guo et al. 2023, arXiv 2307.04725, §4.2).

Pure torch + einops. Layers come from an injected ``operations`` namespace (``torch.nn`` or ComfyUI's
casting ops) and attention from an injected ``attention_fn``, so the host decides dtype casting, device
placement and the attention backend. The parameter names match the official checkpoints exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

AttentionFn = Callable[[Tensor, Tensor, Tensor, int], Tensor]
"""``(q, k, v, heads) -> out`` on ``(batch, tokens, heads * head_dim)`` tensors, as ComfyUI's attention."""

NORM_GROUPS = 32
NORM_EPS = 1e-6
FF_MULT = 4


class LayoutSpec(Protocol):
    """The fields of a detected motion-module description that decide the module's structure."""

    widths: tuple[int, ...]
    down_modules_per_level: tuple[int, ...]
    up_modules_per_level: tuple[int, ...]
    has_mid_block: bool
    pe_length: int
    heads: int
    module_groupnorm: str  # "per_frame" | "across_frames": how each module's own input GroupNorm runs


SDPA_BATCH_HEADS_LIMIT = 2**15
"""Most sequences × heads one fused-attention call gets. Temporal attention has one sequence per pixel
(16,384 × 8 heads for SDXL at 1024² with CFG), and CUDA kernels that put that product on a grid axis
capped at 65,535 fail with "invalid configuration argument"; chunks of 2**15 stay clear of it."""


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """Multi-head attention with PyTorch's fused scaled-dot-product kernel, chunked along the batch.

    The default backend for temporal attention: for 16-32 tokens it beats sub-quadratic and split
    attention (built for thousands of tokens) about 4× on the CPU, and on NVIDIA it is what ComfyUI
    picks for its own attention anyway. Output chunks land straight in the (b, l, h, d) result, so the
    chunking costs no extra copy.
    """
    b, length, _ = q.shape
    q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=heads) for t in (q, k, v))
    step = max(1, SDPA_BATCH_HEADS_LIMIT // heads)
    if b <= step:
        return rearrange(F.scaled_dot_product_attention(q, k, v), "b h l d -> b l (h d)")
    out = q.new_empty(b, length, heads, q.shape[-1])
    for i in range(0, b, step):
        out[i:i + step] = F.scaled_dot_product_attention(q[i:i + step], k[i:i + step], v[i:i + step]).transpose(1, 2)
    return out.flatten(2)


def sinusoid(length: int, channels: int) -> Tensor:
    """The standard sinusoidal position table (Vaswani et al. 2017), shape (1, length, channels)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    pe = torch.zeros(1, length, channels)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe


def group_norm_across_frames(x: Tensor, frames: int, norm: Callable[[Tensor], Tensor]) -> Tensor:
    """Run a GroupNorm over all frames of each clip at once, as AnimateDiff v1's 5-D UNet does.

    ``norm`` is the GroupNorm's own forward; stacking frames along the height axis makes its per-sample
    statistics span every frame while the per-channel affine stays unchanged.
    """
    b = x.shape[0] // frames
    stacked = rearrange(x, "(b f) c h w -> b c (f h) w", b=b, f=frames)
    return rearrange(norm(stacked), "b c (f h) w -> (b f) c h w", f=frames)


@dataclass(frozen=True)
class View:
    """One window of a views pass: the clip's frames it covers and their fuse weights, both (n,)."""

    frames: Tensor
    weights: Tensor


@dataclass(frozen=True)
class MotionCall:
    """Per-call state of one motion-module pass: how the batch splits into clips and how to attend."""

    frames: int
    positions: Tensor | None = None  # (frames,) indices into the PE table; None = 0..frames-1
    attention_fn: AttentionFn = sdpa_attention
    scale: float = 1.0  # multiplies the module's residual contribution (1 = as trained)
    views: tuple[View, ...] | None = None  # attend within these windows (PE rows 0..n-1 each) and fuse
    last_row: int = field(init=False, repr=False, compare=False)  # highest PE row used, checked once on the host

    def __post_init__(self) -> None:
        """Check the positions once here, so no attention block has to (nor sync a GPU to)."""
        if self.views is not None:
            if self.positions is not None:
                raise ValueError("MotionCall: views number each window's PE rows from 0, so positions must be "
                                 "None, but got a positions tensor")
            object.__setattr__(self, "last_row", max(len(v.frames) for v in self.views) - 1)
            return
        if self.positions is not None and tuple(self.positions.shape) != (self.frames,):
            raise ValueError(f"MotionCall: positions must hold one PE row per frame, shape ({self.frames},), "
                             f"but got shape {tuple(self.positions.shape)}")
        if self.positions is not None and self.frames and int(self.positions.min()) < 0:
            raise ValueError(f"MotionCall: positions must be PE rows >= 0, but got {int(self.positions.min())}")
        last = self.frames - 1 if self.positions is None or not self.frames else int(self.positions.max())
        object.__setattr__(self, "last_row", last)

    def pe_positions(self, device: torch.device) -> Tensor:
        """The PE row for each frame of the clip."""
        if self.positions is None:
            return torch.arange(self.frames, device=device)
        return self.positions.to(device)


def offset_positions(frames: int, offset: int) -> Tensor:
    """PE rows ``offset .. offset+frames-1``: frames k..k+n of a longer clip."""
    return torch.arange(offset, offset + frames)


class PositionalEncoding(nn.Module):
    """Holds the sinusoid table as ``pe``; a stored table from a checkpoint is honoured as loaded."""

    def __init__(self, channels: int, length: int, dtype=None, device=None):
        super().__init__()
        self.register_buffer("pe", sinusoid(length, channels).to(device=device, dtype=dtype))

    def rows(self, positions: Tensor, dtype: torch.dtype, last_row: int | None = None) -> Tensor:
        """The table rows for ``positions``, shape (1, f, c), in ``dtype``; ``last_row`` = their max, if known."""
        length = self.pe.shape[1]
        if last_row is None and positions.numel():
            last_row = int(positions.max())
        if last_row is not None and last_row >= length:
            raise ValueError(
                f"positional encoding index {last_row} is past this motion module's "
                f"limit of {length} frames; use context windows of at most {length} frames"
            )
        return self.pe[:, positions.to(self.pe.device)].to(device=positions.device, dtype=dtype)


class TemporalAttention(nn.Module):
    """Self-attention across frames at each spatial position, with the PE added to its input."""

    def __init__(self, channels: int, heads: int, pe_length: int, operations=nn, dtype=None, device=None):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.heads = heads
        self.to_q = operations.Linear(channels, channels, bias=False, **kw)
        self.to_k = operations.Linear(channels, channels, bias=False, **kw)
        self.to_v = operations.Linear(channels, channels, bias=False, **kw)
        self.to_out = nn.ModuleList([operations.Linear(channels, channels, **kw), nn.Identity()])
        self.pos_encoder = PositionalEncoding(channels, pe_length, **kw)

    def forward(self, x: Tensor, pe: Tensor, attention_fn: AttentionFn) -> Tensor:
        """x: (b h w) f c tokens of one spatial position each; pe: (1, f, c)."""
        x = x + pe
        out = attention_fn(self.to_q(x), self.to_k(x), self.to_v(x), self.heads)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    """GELU-gated linear unit (Shazeer 2020, arXiv 2002.05202)."""

    def __init__(self, dim_in: int, dim_out: int, operations=nn, dtype=None, device=None):
        super().__init__()
        self.proj = operations.Linear(dim_in, dim_out * 2, dtype=dtype, device=device)

    def forward(self, x: Tensor) -> Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU → (dropout slot) → Linear, keyed ``net.0`` / ``net.2`` as in the checkpoints."""

    def __init__(self, channels: int, operations=nn, dtype=None, device=None):
        super().__init__()
        inner = channels * FF_MULT
        self.net = nn.ModuleList([
            GEGLU(channels, inner, operations, dtype, device),
            nn.Identity(),
            operations.Linear(inner, channels, dtype=dtype, device=device),
        ])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TemporalTransformerBlock(nn.Module):
    """[LayerNorm → temporal self-attention] × 2 (SparseCtrl: × 1) → LayerNorm → GEGLU feed-forward, each residual."""

    def __init__(self, channels: int, heads: int, pe_length: int, operations=nn, dtype=None, device=None,
                 attentions: int = 2):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.attention_blocks = nn.ModuleList(
            [TemporalAttention(channels, heads, pe_length, operations, **kw) for _ in range(attentions)]
        )
        self.norms = nn.ModuleList([operations.LayerNorm(channels, **kw) for _ in range(attentions)])
        self.ff = FeedForward(channels, operations, **kw)
        self.ff_norm = operations.LayerNorm(channels, **kw)

    def attend(self, x: Tensor, positions: Tensor, attention_fn: AttentionFn, last_row: int) -> Tensor:
        """The two residual attention blocks on x: (b h w) f c."""
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            pe = attention.pos_encoder.rows(positions, x.dtype, last_row)
            x = attention(norm(x), pe, attention_fn) + x
        return x

    def forward(self, x: Tensor, positions: Tensor, attention_fn: AttentionFn, last_row: int,
                views: tuple[View, ...] | None = None) -> Tensor:
        if views is None:
            x = self.attend(x, positions, attention_fn, last_row)
        else:
            x = fuse_views(self.attend, x, views, attention_fn)
        return self.ff(self.ff_norm(x)) + x


def fuse_views(attend, x: Tensor, views: tuple[View, ...], attention_fn: AttentionFn) -> Tensor:
    """Attention on each window's frames, averaged per frame by the window weights (FreeNoise, Qiu et al. 2023,
    arXiv 2310.15169, sec. 3.3), so the feed-forward after it runs once on the fused tokens, as in
    AnimateDiff-Evolved's views and diffusers' FreeNoiseTransformerBlock."""
    out = torch.zeros_like(x)
    total = x.new_zeros(x.shape[1])
    for view in views:
        idx, weights = view.frames.to(x.device), view.weights.to(device=x.device, dtype=x.dtype)
        n = idx.shape[0]
        attended = attend(x[:, idx], torch.arange(n, device=x.device), attention_fn, n - 1)  # (b h w) n c
        out.index_add_(1, idx, attended * weights.view(1, -1, 1))
        total.index_add_(0, idx, weights)
    return out / total.view(1, -1, 1)


class TemporalTransformer(nn.Module):
    """GroupNorm → proj_in → transformer block → proj_out, added to the input.

    The GroupNorm runs per frame (AnimateDiff v1-v3) or over all frames of a clip (SDXL beta).
    """

    def __init__(self, channels: int, heads: int, pe_length: int, operations=nn, dtype=None, device=None,
                 norm_across_frames: bool = False, attentions: int = 2):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.norm_across_frames = norm_across_frames
        self.norm = operations.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS, affine=True, **kw)
        self.proj_in = operations.Linear(channels, channels, **kw)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, heads, pe_length, operations, **kw, attentions=attentions)]
        )
        self.proj_out = operations.Linear(channels, channels, **kw)

    def forward(self, x: Tensor, call: MotionCall) -> Tensor:
        """x: (b f) c h w, frames of each clip contiguous; returns the same shape."""
        _, _, h, w = x.shape
        normed = group_norm_across_frames(x, call.frames, self.norm) if self.norm_across_frames else self.norm(x)
        tokens = rearrange(normed, "(b f) c h w -> (b h w) f c", f=call.frames)
        tokens = self.proj_in(tokens)
        positions = call.pe_positions(x.device)
        for block in self.transformer_blocks:
            tokens = block(tokens, positions, call.attention_fn, call.last_row, call.views)
        tokens = self.proj_out(tokens)
        delta = rearrange(tokens, "(b h w) f c -> (b f) c h w", h=h, w=w)
        if call.scale != 1.0:
            delta = delta * call.scale
        return x + delta


class MotionModule(nn.Module):
    """One insertion point in the UNet; the ``temporal_transformer`` name matches the checkpoints."""

    def __init__(self, channels: int, heads: int, pe_length: int, operations=nn, dtype=None, device=None,
                 norm_across_frames: bool = False, attentions: int = 2):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, pe_length, operations, dtype, device,
                                                        norm_across_frames, attentions)

    def forward(self, x: Tensor, call: MotionCall) -> Tensor:
        return self.temporal_transformer(x, call)


class MotionLevel(nn.Module):
    """The motion modules of one UNet level (``…_blocks.N.motion_modules.M``)."""

    def __init__(self, channels: int, count: int, heads: int, pe_length: int, operations=nn, dtype=None,
                 device=None, norm_across_frames: bool = False):
        super().__init__()
        self.motion_modules = nn.ModuleList([
            MotionModule(channels, heads, pe_length, operations, dtype, device, norm_across_frames)
            for _ in range(count)
        ])


class MotionModel(nn.Module):
    """Every motion module of one checkpoint, laid out as ``down_blocks`` / ``mid_block`` / ``up_blocks``."""

    def __init__(self, spec: LayoutSpec, operations=nn, dtype=None, device=None):
        super().__init__()
        kw = {"heads": spec.heads, "pe_length": spec.pe_length, "operations": operations,
              "dtype": dtype, "device": device,
              "norm_across_frames": getattr(spec, "module_groupnorm", "per_frame") == "across_frames"}
        up_widths = tuple(reversed(spec.widths))
        self.down_blocks = nn.ModuleList(
            [MotionLevel(c, n, **kw) for c, n in zip(spec.widths, spec.down_modules_per_level, strict=True)]
        )
        self.mid_block = MotionLevel(spec.widths[-1], 1, **kw) if spec.has_mid_block else None
        self.up_blocks = nn.ModuleList(
            [MotionLevel(c, n, **kw) for c, n in zip(up_widths, spec.up_modules_per_level, strict=True)]
        )

    def module_names(self) -> list[str]:
        """Names of every MotionModule, e.g. ``down_blocks.0.motion_modules.1``."""
        return [name for name, m in self.named_modules() if isinstance(m, MotionModule)]
