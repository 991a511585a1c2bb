"""Context windows for long clips: options, window schedules and per-frame fuse weights.

Pure python/torch versions of the schedules and fuse methods in ComfyUI core's
``comfy/context_windows.py`` (0.3.64 / 0.8.0), under the same option names, plus a ``gaussian``
fuse method. Schedules come from neggles/animatediff-cli ``pipelines/context.py``; the pyramid
weights follow the weighted average of FreeNoise (Qiu et al. 2023, arXiv 2310.15169).

Where this differs from core, on purpose:
- stride levels (windows of every 2nd, 4th, ... frame) are kept only while length * spacing <= frames,
  so no window repeats a frame; core allows one level more;
- a clip of exactly ``length`` frames is one window for every schedule (core's looped schedule
  shifts it);
- standard_uniform splits a wrapping window into an end window plus a start window of the same
  spacing (core inserts a contiguous one), and adds the start window only where the wrapped frames
  are not already covered; closed_loop only affects looped_uniform, as in core;
- overlap-linear ramps never reach 0 (core starts at 1e-37) and read "borders another window"
  from the window's first/last index, so wrapping looped windows are ramped too.
With stride 1 the window sets equal core's in every case checked (frames < 70, length < 20, steps 0-5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import torch


class ContextSchedule(str, Enum):
    """How the frames are cut into windows; values are core's schedule names."""

    STANDARD_STATIC = "standard_static"
    STANDARD_UNIFORM = "standard_uniform"
    LOOPED_UNIFORM = "looped_uniform"
    BATCHED = "batched"


class FuseMethod(str, Enum):
    """How per-window predictions are weighted per frame; values are core's names plus gaussian."""

    FLAT = "flat"
    PYRAMID = "pyramid"
    OVERLAP_LINEAR = "overlap-linear"
    GAUSSIAN = "gaussian"


class ContextOptionsError(ValueError):
    """A context option (length, overlap, stride, schedule, fuse method) is out of range."""


class ContextInputError(ValueError):
    """An input to a schedule or fuse function (frame count, step, window, outputs) is invalid."""


def check_length_overlap(length: int, overlap: int) -> None:
    """Raise ContextOptionsError unless 1 <= length and 0 <= overlap < length."""
    if length < 1:
        raise ContextOptionsError(f"context_length must be at least 1, but got {length}")
    if overlap < 0:
        raise ContextOptionsError(f"context_overlap must be 0 or more, but got {overlap}")
    if overlap >= length:
        raise ContextOptionsError(
            f"context_overlap {overlap} must be smaller than context_length {length}"
        )


def _check_choice(name: str, value: object, enum: type[Enum]) -> None:
    """Raise ContextOptionsError unless value is one of the enum's values."""
    names = [member.value for member in enum]
    if value not in names:
        raise ContextOptionsError(f"{name} must be one of {', '.join(names)}, but got {value!r}")


@dataclass(frozen=True)
class ContextOptions:
    """Sliding-window settings; defaults match core's Context Windows (Manual) node."""

    length: int = 16
    overlap: int = 4
    schedule: ContextSchedule = ContextSchedule.STANDARD_STATIC
    fuse: FuseMethod = FuseMethod.PYRAMID
    stride: int = 1
    closed_loop: bool = False

    def validate(self, pe_length: int | None = None) -> None:
        """Raise ContextOptionsError for bad values; pe_length is the motion module's frame limit."""
        check_length_overlap(self.length, self.overlap)
        if self.stride < 1:
            raise ContextOptionsError(f"context_stride must be at least 1, but got {self.stride}")
        if pe_length is not None and self.length > pe_length:
            raise ContextOptionsError(
                f"context_length {self.length} exceeds this motion module's limit of "
                f"{pe_length} frames; use {pe_length} or less"
            )
        _check_choice("context_schedule", self.schedule, ContextSchedule)
        _check_choice("fuse_method", self.fuse, FuseMethod)


# ---------------------------------------------------------------------------------------------
# schedules


def ordered_halving(step: int) -> float:
    """Bit-reversed step as a fraction in [0, 1): 0, 1/2, 1/4, 3/4, 1/8, ... (animatediff-cli)."""
    reversed_bits = int(f"{step:064b}"[::-1], 2)
    return reversed_bits / (1 << 64)


def _stride_levels(num_frames: int, opts: ContextOptions) -> list[int]:
    """Frame spacings 1, 2, 4, ... up to 2**(stride-1), kept only while a window fits the clip."""
    return [1 << k for k in range(opts.stride) if opts.length << k <= num_frames]


def _looped_starts(num_frames: int, opts: ContextOptions, step: int, spacing: int, loop: bool) -> range:
    """Unwrapped window starts of one spacing level, shifted by ordered_halving(step)."""
    phase = ordered_halving(step)
    pad = round(num_frames * phase)
    end = num_frames + pad - (0 if loop else opts.overlap)
    return range(int(phase * spacing) + pad, end, opts.length * spacing - opts.overlap)


def _strided(start: int, length: int, spacing: int) -> list[int]:
    """length indices from start, spacing apart."""
    return list(range(start, start + length * spacing, spacing))


def _dedupe(candidates: list[list[int]]) -> list[list[int]]:
    """Drop repeated windows, keeping the first of each."""
    seen: set[tuple[int, ...]] = set()
    unique = []
    for window in candidates:
        if tuple(window) not in seen:
            seen.add(tuple(window))
            unique.append(window)
    return unique


def _static(num_frames: int, opts: ContextOptions, step: int) -> list[list[int]]:
    """Fixed windows with hop length-overlap; the last one slides back to end on the last frame."""
    hop = opts.length - opts.overlap
    starts = [*range(0, num_frames - opts.length, hop), num_frames - opts.length]
    return [list(range(s, s + opts.length)) for s in starts]


def _batched(num_frames: int, opts: ContextOptions, step: int) -> list[list[int]]:
    """Disjoint chunks of length frames; the last may be shorter."""
    return [
        list(range(s, min(s + opts.length, num_frames))) for s in range(0, num_frames, opts.length)
    ]


def _looped(num_frames: int, opts: ContextOptions, step: int) -> list[list[int]]:
    """Step-shifted windows that wrap around the clip's end back to frame 0 (core looped_uniform)."""
    result = []
    for spacing in _stride_levels(num_frames, opts):
        for start in _looped_starts(num_frames, opts, step, spacing, opts.closed_loop):
            result.append([i % num_frames for i in _strided(start, opts.length, spacing)])
    return _dedupe(result)


def _uniform_level(num_frames: int, opts: ContextOptions, step: int, spacing: int) -> list[list[int]]:
    """One spacing level of standard_uniform: wrapping windows split into an end and a start window."""
    span = (opts.length - 1) * spacing + 1
    result, heads = [], []
    for start in _looped_starts(num_frames, opts, step, spacing, loop=False):
        start %= num_frames
        if start + span <= num_frames:
            result.append(_strided(start, opts.length, spacing))
            continue
        result.append(_strided(num_frames - span, opts.length, spacing))
        first_wrapped = start + math.ceil((num_frames - start) / spacing) * spacing - num_frames
        wrapped = range(first_wrapped, start + span - num_frames, spacing)
        heads.append((_strided(first_wrapped, opts.length, spacing), wrapped))
    covered = {i for window in result for i in window}
    for head, wrapped in heads:  # a start window only where its wrapped frames are not yet covered
        if not covered.issuperset(wrapped):
            result.append(head)
            covered.update(head)
    return result


def _uniform(num_frames: int, opts: ContextOptions, step: int) -> list[list[int]]:
    """Step-shifted windows that never wrap: a wrapping window is moved to the clip's end (core standard_uniform)."""
    result = []
    for spacing in _stride_levels(num_frames, opts):
        result += _uniform_level(num_frames, opts, step, spacing)
    return _dedupe(result)


SCHEDULES: dict[ContextSchedule, Callable[[int, ContextOptions, int], list[list[int]]]] = {
    ContextSchedule.STANDARD_STATIC: _static,
    ContextSchedule.STANDARD_UNIFORM: _uniform,
    ContextSchedule.LOOPED_UNIFORM: _looped,
    ContextSchedule.BATCHED: _batched,
}


def windows(num_frames: int, opts: ContextOptions, step: int = 0) -> list[list[int]]:
    """Frame indices of each context window at sampling step `step` (0-based)."""
    opts.validate()
    if num_frames < 1:
        raise ContextInputError(f"num_frames must be at least 1, but got {num_frames}")
    if step < 0:
        raise ContextInputError(f"step must be 0 or more, but got {step}")
    if num_frames <= opts.length:
        return [list(range(num_frames))]
    return SCHEDULES[ContextSchedule(opts.schedule)](num_frames, opts, step)


# ---------------------------------------------------------------------------------------------
# fuse weights

GAUSSIAN_SIGMA_RATIO = 0.25
"""Gaussian fuse: sigma = 0.25 * window length, so the edge frames weigh about exp(-2) ~ 0.14."""


def _flat(window: Sequence[int], num_frames: int, overlap: int) -> torch.Tensor:
    """Every frame of the window weighs 1 (core flat)."""
    return torch.ones(len(window))


def _pyramid(window: Sequence[int], num_frames: int, overlap: int) -> torch.Tensor:
    """1, 2, ..., peak, ..., 2, 1 by distance from the nearer window edge (core pyramid)."""
    n = len(window)
    return torch.tensor([min(i + 1, n - i) for i in range(n)], dtype=torch.float32)


def _ramp(n: int, overlap: int) -> torch.Tensor:
    """1/(o+1), ..., o/(o+1) over the first `overlap` of n frames, then 1 (never 0)."""
    weights = torch.ones(n)
    k = min(overlap, n)
    weights[:k] = torch.arange(1, k + 1, dtype=torch.float32) / (overlap + 1)
    return weights


def _overlap_linear(window: Sequence[int], num_frames: int, overlap: int) -> torch.Tensor:
    """Linear ramps over the overlap on each side that borders another window (core overlap-linear)."""
    weights = torch.ones(len(window))
    if window[0] > 0:  # something precedes this window
        weights = torch.minimum(weights, _ramp(len(window), overlap))
    if window[-1] < num_frames - 1:  # something follows it
        weights = torch.minimum(weights, _ramp(len(window), overlap).flip(0))
    return weights


def _gaussian(window: Sequence[int], num_frames: int, overlap: int) -> torch.Tensor:
    """exp(-((i - mu) / sigma)^2 / 2), mu the window centre, sigma = GAUSSIAN_SIGMA_RATIO * length."""
    n = len(window)
    positions = torch.arange(n, dtype=torch.float64)
    sigma = GAUSSIAN_SIGMA_RATIO * n
    return torch.exp(-0.5 * ((positions - (n - 1) / 2) / sigma) ** 2).float()


FUSE_WEIGHTS: dict[FuseMethod, Callable[[Sequence[int], int, int], torch.Tensor]] = {
    FuseMethod.FLAT: _flat,
    FuseMethod.PYRAMID: _pyramid,
    FuseMethod.OVERLAP_LINEAR: _overlap_linear,
    FuseMethod.GAUSSIAN: _gaussian,
}


def fuse_weights(
    method: FuseMethod | str, window: Sequence[int], num_frames: int, overlap: int
) -> torch.Tensor:
    """Strictly positive float32 weight per position of `window` for fuse method `method`."""
    _check_choice("fuse_method", method, FuseMethod)
    if len(window) == 0:
        raise ContextInputError("window must hold at least one frame index, but got an empty list")
    if overlap < 0:
        raise ContextInputError(f"overlap must be 0 or more, but got {overlap}")
    return FUSE_WEIGHTS[FuseMethod(method)](window, num_frames, overlap).to(torch.float32)
