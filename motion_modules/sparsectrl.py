"""SparseCtrl condition encoder (Guo et al. 2023, arXiv 2311.16933, sec. 3.2).

A ControlNet-style copy of the SD1.5 UNet encoder whose down blocks carry AnimateDiff motion modules (one
temporal self-attention each), whose noisy-sample input is set to zero, and whose condition gets a
conditioning-mask channel: RGB keyframes go in as VAE latents through one zero-initialised conv (the
"simplified" embedding), scribbles as pixels through the ControlNet hint stack. Pure torch; layers come from
an injected ``operations`` namespace and attention from an ``attention_fn``, as in ``model.py``. Parameter
names are those of the official checkpoints (guoyww/AnimateDiff ``animatediff/models/sparse_controlnet.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .model import AttentionFn, FeedForward, MotionCall, MotionModule, sdpa_attention

GROUPS = 32
RESNET_EPS = 1e-5
TRANSFORMER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class SparseCtrlSpec:
    """What a SparseCtrl file is, detected from its keys and shapes."""

    kind: str  # "rgb" (latent keyframes, simplified embedding) | "scribble" (pixel keyframes, hint stack)
    widths: tuple[int, ...] = (320, 640, 1280, 1280)
    context_dim: int = 768
    cond_channels: int = 4  # channels of the condition itself; the mask channel comes on top
    hint_widths: tuple[int, ...] = ()  # the hint stack's widths (scribble); () = simplified embedding
    pe_length: int = 32
    heads: int = 8
    layers: int = 2  # resnets per down level
    in_channels: int = 4
    source_layout: str = "official"  # "official" | "diffusers"
    pe_stored: bool = True

    @property
    def latent_condition(self) -> bool:
        """Whether the condition is VAE latents (RGB) rather than pixels (scribble)."""
        return not self.hint_widths

    def describe(self) -> str:
        """One line for the loader's preview."""
        what = "RGB (keyframes as VAE latents)" if self.latent_condition else "scribble (keyframes as pixels)"
        return (f"SparseCtrl {what}, {self.source_layout} layout, widths {self.widths}, "
                f"at most {self.pe_length} frames per pass")


def timestep_embedding(timesteps: Tensor, channels: int) -> Tensor:
    """Sinusoidal timestep features, cosines first (DDPM's embedding as SD1.5 uses it), shape (n, channels)."""
    half = channels // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepMLP(nn.Module):
    """``time_embedding``: Linear → SiLU → Linear."""

    def __init__(self, channels: int, out: int, ops=nn, **kw):
        super().__init__()
        self.linear_1 = ops.Linear(channels, out, **kw)
        self.linear_2 = ops.Linear(out, out, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, plus the projected time embedding, GroupNorm → SiLU → conv, residual."""

    def __init__(self, cin: int, cout: int, temb: int, ops=nn, **kw):
        super().__init__()
        self.norm1 = ops.GroupNorm(GROUPS, cin, eps=RESNET_EPS, affine=True, **kw)
        self.conv1 = ops.Conv2d(cin, cout, 3, padding=1, **kw)
        self.time_emb_proj = ops.Linear(temb, cout, **kw)
        self.norm2 = ops.GroupNorm(GROUPS, cout, eps=RESNET_EPS, affine=True, **kw)
        self.conv2 = ops.Conv2d(cout, cout, 3, padding=1, **kw)
        self.conv_shortcut = ops.Conv2d(cin, cout, 1, **kw) if cin != cout else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    """Multi-head attention of ``x`` over ``context`` (itself when None)."""

    def __init__(self, dim: int, context_dim: int, heads: int, ops=nn, **kw):
        super().__init__()
        self.heads = heads
        self.to_q = ops.Linear(dim, dim, bias=False, **kw)
        self.to_k = ops.Linear(context_dim, dim, bias=False, **kw)
        self.to_v = ops.Linear(context_dim, dim, bias=False, **kw)
        self.to_out = nn.ModuleList([ops.Linear(dim, dim, **kw), nn.Identity()])

    def forward(self, x: Tensor, context: Tensor | None, attention_fn: AttentionFn) -> Tensor:
        context = x if context is None else context
        return self.to_out[0](attention_fn(self.to_q(x), self.to_k(context), self.to_v(context), self.heads))


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention to the prompt, GEGLU feed-forward; each pre-LayerNorm and residual."""

    def __init__(self, dim: int, context_dim: int, heads: int, ops=nn, **kw):
        super().__init__()
        self.attn1 = Attention(dim, dim, heads, ops, **kw)
        self.attn2 = Attention(dim, context_dim, heads, ops, **kw)
        self.ff = FeedForward(dim, ops, **kw)
        self.norm1, self.norm2, self.norm3 = (ops.LayerNorm(dim, **kw) for _ in range(3))

    def forward(self, x: Tensor, context: Tensor, attention_fn: AttentionFn) -> Tensor:
        x = self.attn1(self.norm1(x), None, attention_fn) + x
        x = self.attn2(self.norm2(x), context, attention_fn) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """GroupNorm → 1x1 conv in → one transformer block over the h·w tokens → 1x1 conv out, residual."""

    def __init__(self, dim: int, context_dim: int, heads: int, ops=nn, **kw):
        super().__init__()
        self.norm = ops.GroupNorm(GROUPS, dim, eps=TRANSFORMER_NORM_EPS, affine=True, **kw)
        self.proj_in = ops.Conv2d(dim, dim, 1, **kw)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(dim, context_dim, heads, ops, **kw)])
        self.proj_out = ops.Conv2d(dim, dim, 1, **kw)

    def forward(self, x: Tensor, context: Tensor, attention_fn: AttentionFn) -> Tensor:
        _, _, h, w = x.shape
        tokens = rearrange(self.proj_in(self.norm(x)), "b c h w -> b (h w) c")
        for block in self.transformer_blocks:
            tokens = block(tokens, context, attention_fn)
        return self.proj_out(rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w)) + x


class Downsample(nn.Module):
    """A stride-2 3x3 conv, keyed ``downsamplers.0.conv``."""

    def __init__(self, dim: int, ops=nn, **kw):
        super().__init__()
        self.conv = ops.Conv2d(dim, dim, 3, stride=2, padding=1, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class HintEmbedding(nn.Module):
    """The ControlNet hint stack for pixel conditions: 3x3 convs with SiLU, three stride-2 ones (÷8)."""

    def __init__(self, cin: int, widths: tuple[int, ...], out: int, ops=nn, **kw):
        super().__init__()
        self.conv_in = ops.Conv2d(cin, widths[0], 3, padding=1, **kw)
        self.blocks = nn.ModuleList()
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            self.blocks.append(ops.Conv2d(a, a, 3, padding=1, **kw))
            self.blocks.append(ops.Conv2d(a, b, 3, padding=1, stride=2, **kw))
        self.conv_out = ops.Conv2d(widths[-1], out, 3, padding=1, **kw)

    def forward(self, x: Tensor) -> Tensor:
        x = F.silu(self.conv_in(x))
        for conv in self.blocks:
            x = F.silu(conv(x))
        return self.conv_out(x)


class DownLevel(nn.Module):
    """One encoder level: (ResBlock [→ SpatialTransformer] → MotionModule) × layers [→ Downsample]."""

    def __init__(self, cin: int, cout: int, spec: SparseCtrlSpec, attention: bool, downsample: bool, ops=nn, **kw):
        super().__init__()
        temb = spec.widths[0] * 4
        self.resnets = nn.ModuleList([ResBlock(cin if i == 0 else cout, cout, temb, ops, **kw)
                                      for i in range(spec.layers)])
        if attention:
            self.attentions = nn.ModuleList([SpatialTransformer(cout, spec.context_dim, spec.heads, ops, **kw)
                                             for _ in range(spec.layers)])
        self.motion_modules = nn.ModuleList([MotionModule(cout, spec.heads, spec.pe_length, ops, attentions=1, **kw)
                                             for _ in range(spec.layers)])
        if downsample:
            self.downsamplers = nn.ModuleList([Downsample(cout, ops, **kw)])

    def forward(self, x: Tensor, emb: Tensor, context: Tensor, call: MotionCall) -> tuple[Tensor, list[Tensor]]:
        """x: (b f) c h w; returns the level's output and every intermediate the ControlNet taps."""
        taps = []
        attentions = getattr(self, "attentions", None)
        for i, (resnet, motion) in enumerate(zip(self.resnets, self.motion_modules, strict=True)):
            x = resnet(x, emb)
            if attentions is not None:
                x = attentions[i](x, context, call.attention_fn)
            x = motion(x, call)
            taps.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            taps.append(x)
        return x, taps


class MidBlock(nn.Module):
    """ResBlock → SpatialTransformer → ResBlock (no motion module, as released)."""

    def __init__(self, dim: int, spec: SparseCtrlSpec, ops=nn, **kw):
        super().__init__()
        temb = spec.widths[0] * 4
        self.resnets = nn.ModuleList([ResBlock(dim, dim, temb, ops, **kw) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialTransformer(dim, spec.context_dim, spec.heads, ops, **kw)])

    def forward(self, x: Tensor, emb: Tensor, context: Tensor, attention_fn: AttentionFn) -> Tensor:
        x = self.resnets[0](x, emb)
        return self.resnets[1](self.attentions[0](x, context, attention_fn), emb)


class SparseCtrlEncoder(nn.Module):
    """The whole SparseCtrl network; ``forward`` returns the residuals the UNet adds (down taps, mid)."""

    def __init__(self, spec: SparseCtrlSpec, operations=nn, dtype=None, device=None):
        super().__init__()
        ops, kw, w = operations, {"dtype": dtype, "device": device}, spec.widths
        self.conv_in = ops.Conv2d(spec.in_channels, w[0], 3, padding=1, **kw)
        self.time_embedding = TimestepMLP(w[0], w[0] * 4, ops, **kw)
        cin = spec.cond_channels + 1  # + the conditioning mask
        self.controlnet_cond_embedding = (ops.Conv2d(cin, w[0], 3, padding=1, **kw) if spec.latent_condition
                                          else HintEmbedding(cin, spec.hint_widths, w[0], ops, **kw))
        last = len(w) - 1
        self.down_blocks = nn.ModuleList([
            DownLevel(w[max(i - 1, 0)], c, spec, attention=i < last, downsample=i < last, ops=ops, **kw)
            for i, c in enumerate(w)
        ])
        taps = [w[0]] + [c for i, c in enumerate(w) for _ in range(spec.layers + (i < last))]
        self.controlnet_down_blocks = nn.ModuleList([ops.Conv2d(c, c, 1, **kw) for c in taps])
        self.mid_block = MidBlock(w[-1], spec, ops, **kw)
        self.controlnet_mid_block = ops.Conv2d(w[-1], w[-1], 1, **kw)
        self.widths = w

    def forward(self, cond: Tensor, timesteps: Tensor, context: Tensor, frames: int,
                attention_fn: AttentionFn = sdpa_attention) -> tuple[list[Tensor], Tensor]:
        """cond: (b f) c+1 h w, the condition with its mask channel last (zeros on unconditioned frames);
        timesteps: (b f,); context: (b f) tokens dim; frames: frames per clip (the motion modules' length)."""
        guided = self.controlnet_cond_embedding(cond)  # (b f) w0 h w at latent size
        emb = self.time_embedding(timestep_embedding(timesteps, self.widths[0]).to(guided.dtype))
        sample = guided.new_zeros(guided.shape[0], self.conv_in.in_channels, *guided.shape[-2:])
        x = self.conv_in(sample) + guided  # the noisy sample is set to zero (official set_noisy_sample_input_to_zero)
        call = MotionCall(frames=frames, attention_fn=attention_fn)
        taps = [x]
        for level in self.down_blocks:
            x, level_taps = level(x, emb, context, call)
            taps += level_taps
        x = self.mid_block(x, emb, context, attention_fn)
        residuals = [zero_conv(t) for zero_conv, t in zip(self.controlnet_down_blocks, taps, strict=True)]
        return residuals, self.controlnet_mid_block(x)
