"""Keyframe colour drift: the measure on known inputs, and the correction removing an injected flash locally."""
from __future__ import annotations

import math

import pytest
import torch

from sampling.colour import ColourMatchError, keyframe_drift, match_colour

FRAMES, KEYS, FADE = 32, [0, 16], 6
FLASH = torch.tensor([0.12, -0.08, 0.05])  # per-channel offset at the keyframes: |FLASH| * 255 = 39.1 levels


def flat(colours: list[list[float]], size: int = 4) -> torch.Tensor:
    """One flat-coloured (size x size) frame per RGB triple, as an IMAGE batch."""
    return torch.tensor(colours).reshape(-1, 1, 1, 3).expand(-1, size, size, 3).clone()


def clip(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random clip (a texture drifting slowly in colour) and the same clip with a flash at KEYS."""
    g = torch.Generator().manual_seed(seed)
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=16, mode="bilinear")
    t = torch.linspace(0, 1, FRAMES)[:, None, None, None]
    clean = (0.3 + 0.4 * texture.permute(0, 2, 3, 1) + 0.05 * t * torch.tensor([1.0, 0.0, -1.0])).float()
    flashed = clean.clone()
    flashed[KEYS] += FLASH
    return clean, flashed


def test_drift_on_known_inputs():
    """10 levels of red on one frame read 10; a steady ramp through a keyframe reads 0; one side at the clip's end."""
    grey = [[0.5, 0.5, 0.5]] * 5
    bumped = [c[:] for c in grey]
    bumped[2][0] += 10 / 255
    assert keyframe_drift(flat(bumped), [2]).per_keyframe[0] == pytest.approx(10.0, abs=1e-4)
    ramp = flat([[0.1 * i, 0.2, 0.3] for i in range(5)])
    assert keyframe_drift(ramp, [2]).overall == pytest.approx(0.0, abs=1e-4)
    assert keyframe_drift(ramp, [0]).overall == pytest.approx(255 * 0.15, abs=1e-3)  # vs mean of frames 1 and 2


def test_keyframes_are_not_each_others_neighbours():
    """Neighbours skip other keyframes; a keyframe with none is NaN and the overall ignores it."""
    colours = [[0.5, 0.5, 0.5]] * 6
    colours[1] = colours[2] = [0.6, 0.5, 0.5]
    drift = keyframe_drift(flat(colours), [1, 2])  # each sees only the grey frames 0 / 3, 4
    assert drift.per_keyframe == pytest.approx((25.5, 25.5), abs=1e-3)
    none = keyframe_drift(flat([[0.5, 0.5, 0.5]] * 3), [0, 1, 2])
    assert math.isnan(none.per_keyframe[1]) and math.isnan(none.overall)


def test_strength_zero_is_the_identity_bit_for_bit():
    """strength 0 returns every frame unchanged, with or without reference images."""
    _, flashed = clip()
    assert torch.equal(match_colour(flashed, KEYS, FADE, 0.0), flashed)
    assert torch.equal(match_colour(flashed, KEYS, FADE, 0.0, torch.rand(2, 8, 8, 3)), flashed)


def test_flash_removed_locally_toward_the_keyframe_output():
    """Matching to the keyframes' own frames cuts the drift 8x (the ramp leaves 1 - mean(w(1), w(2)) = 0.12 of the
    jump at fade 6); frames beyond the fade and the keyframes themselves stay bit-identical."""
    _, flashed = clip()
    out = match_colour(flashed, KEYS, FADE, 1.0)
    before, after = keyframe_drift(flashed, KEYS).overall, keyframe_drift(out, KEYS).overall
    assert before > 35 and after < before / 8
    far = [f for f in range(FRAMES) if min(abs(f - k) for k in KEYS) > FADE]
    assert torch.equal(out[far], flashed[far]) and torch.equal(out[KEYS], flashed[KEYS])


def test_flash_removed_toward_the_keyframe_images():
    """Matching to the clean keyframe images removes the flash (drift 40x lower) and restores the keyframes' colour."""
    clean, flashed = clip()
    out = match_colour(flashed, KEYS, FADE, 1.0, clean[KEYS])
    assert keyframe_drift(out, KEYS).overall < keyframe_drift(flashed, KEYS).overall / 40
    assert (out[KEYS] - clean[KEYS]).abs().max() < 2e-3


def test_reference_count_must_fit_the_keyframes():
    """Three reference images for two keyframes is one clear error naming the input."""
    _, flashed = clip()
    with pytest.raises(ColourMatchError, match=r"reference: expected 1 or 2 images"):
        match_colour(flashed, KEYS, FADE, 1.0, torch.rand(3, 8, 8, 3))
