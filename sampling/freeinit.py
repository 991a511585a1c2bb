"""FreeInit noise re-initialisation (Wu et al. 2023, arXiv 2312.07537): pure filters and frequency mix.

Each FreeInit iteration after the first re-noises the previous result, keeps the low frequencies of
that re-noised latent (3-D FFT over frames, height and width) and takes the high frequencies from
fresh noise. The filters are spectra in ``fftshift`` layout (zero frequency at index ``n // 2``) with
the normalised distance of the official implementation and of diffusers' ``FreeInitMixin``,
including their quirks: the ideal filter compares the *squared* distance with ``2 * d_s``, and the
centre sits at ``2 i / n - 1 = 0`` (half a bin off for odd sizes). The box filter (not in diffusers) keeps
the bins within ``round(n // 2 * d)`` of the centre on each axis, on both sides: the official one keeps
``[c - k, c + k)``, one bin more on the negative side, and reuses the height's ``k`` for the width. A filter
that is symmetric in frequency (every filter here at even sizes, the box at all) makes the real mix exact:
its spectrum is ``lpf`` times the low source's plus ``1 - lpf`` times the high source's, bin for bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor


class FreeInitError(ValueError):
    """A FreeInit option (iterations, stop frequencies, order) or tensor shape is invalid."""


class FreeInitFilter(str, Enum):
    """Low-pass filter kinds; values are the names shown in the node."""

    BUTTERWORTH = "butterworth"
    GAUSSIAN = "gaussian"
    IDEAL = "ideal"
    BOX = "box"


@dataclass(frozen=True)
class FreeInitOptions:
    """The FREE_INIT socket value: how many samplings, which low-pass filter, and the noise policy."""

    iterations: int = 2
    filter: FreeInitFilter = FreeInitFilter.BUTTERWORTH
    spatial_stop: float = 0.25  # d_s, normalised stop frequency over height and width (0-1)
    temporal_stop: float = 0.25  # d_t, normalised stop frequency over frames (0-1)
    order: int = 4  # butterworth order: large ~ ideal, small ~ gaussian
    fix_noise: bool = False  # high frequencies from the initial noise instead of fresh noise

    def __post_init__(self):
        if self.iterations < 1:
            raise FreeInitError(f"iterations must be at least 1, but got {self.iterations}")
        for name, value in (("spatial_stop", self.spatial_stop), ("temporal_stop", self.temporal_stop)):
            if not 0.0 <= value <= 1.0:
                raise FreeInitError(f"{name} must be between 0 and 1, but got {value}")
        if self.order < 1:
            raise FreeInitError(f"order must be at least 1, but got {self.order}")
        object.__setattr__(self, "filter", FreeInitFilter(self.filter))


def _squared_distance(shape: tuple[int, int, int], d_s: float, d_t: float) -> Tensor:
    """Normalised squared distance of each (t, h, w) bin from the centre, time scaled by d_s / d_t."""
    t, h, w = (torch.arange(n, dtype=torch.float64) * 2 / n - 1 for n in shape)
    return ((d_s / d_t) * t)[:, None, None] ** 2 + (h ** 2)[None, :, None] + (w ** 2)[None, None, :]


def _box(shape: tuple[int, int, int], d_s: float, d_t: float) -> Tensor:
    """1 within round(n // 2 * d) bins of the centre on every axis (both signs), else 0."""
    mask = torch.zeros(shape, dtype=torch.float64)
    t, h, w = (slice(max(n // 2 - k, 0), n // 2 + k + 1)
               for n, k in ((n, round(n // 2 * d)) for n, d in zip(shape, (d_t, d_s, d_s), strict=True)))
    mask[t, h, w] = 1.0
    return mask


def low_pass_filter(shape: tuple[int, int, int], options: FreeInitOptions) -> Tensor:
    """The (frames, height, width) float32 low-pass spectrum in fftshift layout (FreeInit sec. 3.3)."""
    if len(shape) != 3 or min(shape) < 1:
        raise FreeInitError(f"the filter shape must be (frames, height, width) >= 1, but got {tuple(shape)}")
    d_s, d_t = options.spatial_stop, options.temporal_stop
    if d_s == 0 or d_t == 0:
        return torch.zeros(shape)
    if options.filter is FreeInitFilter.BOX:
        return _box(shape, d_s, d_t).float()
    d2 = _squared_distance(shape, d_s, d_t)
    if options.filter is FreeInitFilter.BUTTERWORTH:
        mask = 1 / (1 + (d2 / d_s ** 2) ** options.order)
    elif options.filter is FreeInitFilter.GAUSSIAN:
        mask = torch.exp(-1 / (2 * d_s ** 2) * d2)
    else:
        mask = (d2 <= d_s * 2).double()
    return mask.float()


def frequency_mix(low: Tensor, high: Tensor, lpf: Tensor) -> Tensor:
    """``lpf`` of ``low``'s spectrum plus ``1 - lpf`` of ``high``'s, over the last three dims (t, h, w)."""
    if low.shape != high.shape or low.shape[-3:] != lpf.shape[-3:]:
        raise FreeInitError(f"frequency_mix needs two tensors of one shape ending in the filter's "
                            f"{tuple(lpf.shape[-3:])}, but got {tuple(low.shape)} and {tuple(high.shape)}")
    dims = (-3, -2, -1)
    low_f = torch.fft.fftshift(torch.fft.fftn(low, dim=dims), dim=dims)
    high_f = torch.fft.fftshift(torch.fft.fftn(high, dim=dims), dim=dims)
    mixed = low_f * lpf + high_f * (1 - lpf)
    return torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real


def mix_frames_first(low: Tensor, high: Tensor, options: FreeInitOptions) -> Tensor:
    """frequency_mix for ComfyUI's clip layout f c h w (frames first), computed in float32."""
    lpf = low_pass_filter((low.shape[0], low.shape[-2], low.shape[-1]), options).to(low.device)
    # f c h w -> c f h w
    mixed = frequency_mix(low.float().transpose(0, 1), high.float().transpose(0, 1), lpf)
    return mixed.transpose(0, 1).to(low.dtype)  # c f h w -> f c h w
