"""Keyframe colour drift: how far a conditioned keyframe's mean colour sits from the frames around it, and a
correction that pulls nearby frames' per-channel colour statistics toward the keyframe's reference (pure torch).

Frames are ComfyUI IMAGE batches, shape (f, h, w, c), values in [0, 1].

Measure. For keyframe k, its neighbours are the frames j with 1 <= |j - k| <= ``radius`` (default 2) that are
not keyframes themselves; its drift is 255 * || mean_rgb(k) - mean_j mean_rgb(j) ||_2, in 8-bit levels (a
difference of 10 in one channel reads 10). Averaging both sides cancels a steady colour trend through the
keyframe; at the clip's ends one side is all there is. The overall drift is the mean over keyframes that have
neighbours.

Correction (Reinhard et al. 2001 colour transfer, per channel, in RGB). Each frame f near keyframes gets the
target mean/std of the keyframes' references, mixed by a raised-cosine weight w_k(f) = (1 + cos(pi d / (F+1))) / 2
for d = |f - k| <= F (``fade`` frames), 0 beyond; the frame moves toward its matched self by
strength * max_k w_k(f). The keyframe itself (d = 0) gets the full pull, frames beyond F are returned bit for bit,
and only mean and spread per channel change, so a frame keeps its own contrast pattern. The reference is the
keyframe image the user conditioned on when given (the clip is pulled toward the picture), else the keyframe's
own output frame (its neighbours are pulled toward it, so a jump becomes a ramp over F frames).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

NEIGHBOURS = 2  # frames each side of a keyframe that the drift measure compares it with
GAIN_LIMITS = (0.25, 4.0)  # per-channel std ratio clamp, so a flat frame is never blown up


class ColourMatchError(ValueError):
    """Frames or references that colour matching cannot use."""


@dataclass(frozen=True)
class Drift:
    """Drift per keyframe (NaN where it has no neighbour) and the mean over the finite ones, in 8-bit levels."""

    per_keyframe: tuple[float, ...]
    overall: float


def check_frames(frames: torch.Tensor, name: str = "images") -> None:
    """Raise ColourMatchError unless ``frames`` is an (f, h, w, c) batch."""
    if frames.ndim != 4:
        raise ColourMatchError(f"{name}: expected an image batch of shape (frames, height, width, channels), "
                               f"but got shape {tuple(frames.shape)}")


def channel_stats(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame, per-channel mean and std over all pixels: two (f, c) float64 tensors (computed in float32)."""
    std, mean = torch.std_mean(frames.float().flatten(1, 2), dim=1, correction=0)  # f h w c -> f (h w) c -> f c
    return mean.double(), std.double()


def neighbours(key: int, keyframes: Sequence[int], frames: int, radius: int = NEIGHBOURS) -> list[int]:
    """Frames within ``radius`` of ``key`` (itself excluded) that are not keyframes."""
    keys = set(keyframes)
    return [j for j in range(key - radius, key + radius + 1) if 0 <= j < frames and j != key and j not in keys]


def keyframe_drift(frames: torch.Tensor, keyframes: Sequence[int], radius: int = NEIGHBOURS) -> Drift:
    """The colour drift of each keyframe against its neighbours (see the module docstring)."""
    check_frames(frames)
    means = channel_stats(frames)[0]
    per = []
    for k in keyframes:
        near = neighbours(k, keyframes, frames.shape[0], radius)
        per.append(255.0 * (means[k] - means[near].mean(0)).norm().item() if near else math.nan)
    finite = [d for d in per if not math.isnan(d)]
    return Drift(tuple(per), sum(finite) / len(finite) if finite else math.nan)


def fade_weights(frames: int, keyframes: Sequence[int], fade: int) -> torch.Tensor:
    """(f, k) raised-cosine weights: 1 at each keyframe, 0 from ``fade`` + 1 frames away."""
    d = (torch.arange(frames)[:, None] - torch.tensor(list(keyframes))[None, :]).abs().double()
    w = 0.5 * (1.0 + torch.cos(math.pi * d / (fade + 1)))
    return torch.where(d <= fade, w, torch.zeros_like(w))


def reference_stats(stats: tuple[torch.Tensor, torch.Tensor], keyframes: Sequence[int],
                    references: torch.Tensor | None, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, c) target mean and std per keyframe: from ``references`` (1 or one per keyframe), else the keyframe
    frames' own ``stats``."""
    if references is None:
        return tuple(s[list(keyframes)] for s in stats)
    check_frames(references, "reference")
    n = references.shape[0]
    if n not in (1, len(keyframes)) or references.shape[-1] != channels:
        raise ColourMatchError(
            f"reference: expected 1 or {len(keyframes)} images (one per keyframe) with {channels} "
            f"channels, but got {n} with {references.shape[-1]}")
    mean, std = channel_stats(references)
    return mean.expand(len(keyframes), -1), std.expand(len(keyframes), -1)


def match_colour(frames: torch.Tensor, keyframes: Sequence[int], fade: int = 8, strength: float = 1.0,
                 references: torch.Tensor | None = None) -> torch.Tensor:
    """``frames`` with colour statistics near each keyframe pulled toward its reference (module docstring)."""
    check_frames(frames)
    if not 0.0 <= strength <= 1.0 or fade < 0:
        raise ColourMatchError(f"strength must be in [0, 1] and fade_frames >= 0, but got {strength} and {fade}")
    mean, std = channel_stats(frames)
    ref_mean, ref_std = reference_stats((mean, std), keyframes, references, frames.shape[-1])
    w = fade_weights(frames.shape[0], keyframes, fade)  # (f, k)
    total = w.sum(1, keepdim=True).clamp_min(1e-12)
    target_mean, target_std = (w @ ref_mean) / total, (w @ ref_std) / total  # (f, c)
    pull = strength * w.max(1).values  # (f,)
    gain = (target_std / std.clamp_min(1e-6)).clamp(*GAIN_LIMITS)
    # x + pull * ((x - mean) * gain + target_mean - x) as one affine map per frame and channel: x * scale + shift
    p = pull[:, None]
    scale, shift = (1 - p + p * gain).to(frames.dtype), (p * (target_mean - mean * gain)).to(frames.dtype)  # (f, c)
    near = pull > 0  # only these frames change; the rest are copied bit for bit
    out = frames.clone()
    out[near] = (frames[near] * scale[near, None, None] + shift[near, None, None]).clamp(0.0, 1.0)
    return out
