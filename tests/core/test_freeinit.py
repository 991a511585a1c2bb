"""FreeInit filters and frequency mix against diffusers' FreeInitMixin (the independent reference)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sampling.freeinit import (
    FreeInitError,
    FreeInitFilter,
    FreeInitOptions,
    frequency_mix,
    low_pass_filter,
    mix_frames_first,
)

free_init_utils = pytest.importorskip("diffusers.pipelines.free_init_utils")
MIXIN = free_init_utils.FreeInitMixin()
SHAPES = [(16, 8, 8), (5, 7, 6), (1, 4, 4), (24, 6, 10)]  # odd sizes and h != w show centre / axis mix-ups
SETTINGS = [(0.25, 0.25, 4), (0.5, 0.1, 2), (1.0, 1.0, 1), (0.1, 0.7, 8), (0.0, 0.25, 4)]


def _diffusers_filter(shape, kind: str, d_s: float, d_t: float, order: int) -> torch.Tensor:
    """diffusers' own filter for one (frames, h, w) volume."""
    return MIXIN._get_free_init_freq_filter(shape=shape, device="cpu", filter_type=kind, order=order,
                                            spatial_stop_frequency=d_s, temporal_stop_frequency=d_t)


def _box_reference(shape, d_s: float, d_t: float) -> torch.Tensor:
    """The box filter written out per bin (diffusers has none): |k| <= round(n // 2 * d) on every axis."""
    mask = torch.zeros(shape)
    if d_s == 0 or d_t == 0:
        return mask
    half = [round(n // 2 * d) for n, d in zip(shape, (d_t, d_s, d_s), strict=True)]
    for index in torch.cartesian_prod(*(torch.arange(n) for n in shape)).tolist():
        inside = all(abs(i - n // 2) <= k for i, n, k in zip(index, shape, half, strict=True))
        mask[tuple(index)] = float(inside)
    return mask


@pytest.mark.parametrize("kind", ["butterworth", "gaussian", "ideal"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("d_s,d_t,order", SETTINGS)
def test_filters_equal_diffusers(kind, shape, d_s, d_t, order):
    """Each of diffusers' three filters equals ours bin for bin on the same shape and settings."""
    ours = low_pass_filter(shape, FreeInitOptions(filter=kind, spatial_stop=d_s, temporal_stop=d_t, order=order))
    torch.testing.assert_close(ours, _diffusers_filter(shape, kind, d_s, d_t, order), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("d_s,d_t", [(0.25, 0.25), (0.5, 1.0), (1.0, 0.5), (0.0, 0.3)])
def test_box_equals_blockwise_reference(shape, d_s, d_t):
    """The box filter is the centred block, symmetric in frequency (diffusers lacks it)."""
    options = FreeInitOptions(filter="box", spatial_stop=d_s, temporal_stop=d_t)
    assert torch.equal(low_pass_filter(shape, options), _box_reference(shape, d_s, d_t))


@pytest.mark.parametrize("kind", list(FreeInitFilter))
def test_mix_equals_diffusers(kind):
    """Our frequency mix equals diffusers' ``_apply_freq_filter`` on (b, c, f, h, w) latents."""
    gen = torch.Generator().manual_seed(0)
    x, noise = torch.randn(2, 2, 4, 16, 6, 5, generator=gen)  # b c f h w
    lpf = low_pass_filter((16, 6, 5), FreeInitOptions(filter=kind, spatial_stop=0.4, temporal_stop=0.3))
    expected = MIXIN._apply_freq_filter(x, noise, low_pass_filter=lpf)
    torch.testing.assert_close(frequency_mix(x, noise, lpf), expected, rtol=0, atol=1e-6)


def test_frames_first_layout_mixes_over_frames():
    """mix_frames_first on f c h w equals diffusers' mix on the same clip laid out c f h w."""
    gen = torch.Generator().manual_seed(1)
    x, noise = torch.randn(2, 12, 4, 6, 8, generator=gen)  # f c h w
    options = FreeInitOptions(spatial_stop=0.3, temporal_stop=0.2)
    lpf = _diffusers_filter((1, 12, 6, 8), "butterworth", 0.3, 0.2, 4)  # c f h w, as diffusers builds it
    expected = MIXIN._apply_freq_filter(x.transpose(0, 1), noise.transpose(0, 1), lpf).transpose(0, 1)
    torch.testing.assert_close(mix_frames_first(x, noise, options), expected, rtol=0, atol=1e-6)


def _spectrum(x: torch.Tensor) -> torch.Tensor:
    """Spectrum over the last three dims, zero frequency centred (fftshift layout)."""
    return torch.fft.fftshift(torch.fft.fftn(x, dim=(-3, -2, -1)), dim=(-3, -2, -1))


def _symmetrised(lpf: torch.Tensor) -> torch.Tensor:
    """(lpf(k) + lpf(-k)) / 2: what a real-valued mix can keep (odd sizes put the filter's centre between bins)."""
    unshifted = torch.fft.ifftshift(lpf)
    mirrored = torch.roll(torch.flip(unshifted, dims=(0, 1, 2)), shifts=(1, 1, 1), dims=(0, 1, 2))  # k -> -k
    return torch.fft.fftshift((unshifted + mirrored) / 2)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.sampled_from(list(FreeInitFilter)),
       st.floats(0.05, 1.0), st.floats(0.05, 1.0))
def test_low_and_high_parts_come_from_their_sources(f, h, w, kind, d_s, d_t):
    """Spectrum of the mix = lpf * spectrum of ``low`` + (1 - lpf) * spectrum of ``high`` (lpf symmetrised)."""
    gen = torch.Generator().manual_seed(f * 100 + h * 10 + w)
    low, high = torch.randn(2, 3, f, h, w, generator=gen, dtype=torch.float64)
    lpf = low_pass_filter((f, h, w), FreeInitOptions(filter=kind, spatial_stop=d_s, temporal_stop=d_t)).double()
    sym = _symmetrised(lpf)
    expected = sym * _spectrum(low) + (1 - sym) * _spectrum(high)
    torch.testing.assert_close(_spectrum(frequency_mix(low, high, lpf)), expected, rtol=0, atol=1e-9)
    if kind is FreeInitFilter.BOX or f % 2 == h % 2 == w % 2 == 0:  # then the filter itself is symmetric
        torch.testing.assert_close(sym, lpf, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs,name", [({"iterations": 0}, "iterations"), ({"spatial_stop": 1.5}, "spatial_stop"),
                                         ({"temporal_stop": -0.1}, "temporal_stop"), ({"order": 0}, "order")])
def test_bad_options_name_the_option(kwargs, name):
    """An out-of-range option is one FreeInitError naming it."""
    with pytest.raises(FreeInitError, match=f"^{name} must be"):
        FreeInitOptions(**kwargs)
