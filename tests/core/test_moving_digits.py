"""The Moving-MNIST data and measures: clips are deterministic bouncing digits, and each measure separates real
clips from the failure it is meant to catch (another digit per frame, jumping positions)."""
from __future__ import annotations

import torch

from train import measures
from train.moving_digits import DigitsConfig, clip

CFG = DigitsConfig(size=16, digit=10, frames=16, max_speed=1)


def test_clips_are_seeded_bouncing_digits():
    """Same seed, same clip; values in [-1, 1]; the digit moves one pixel per axis per frame and stays inside."""
    a, classes = clip(3, CFG)
    b, _ = clip(3, CFG)
    assert torch.equal(a, b) and not torch.equal(a, clip(4, CFG)[0])
    assert a.shape == (16, 1, 16, 16) and a.min() >= -1 and a.max() <= 1 and len(classes) == 1
    steps = measures.centroids(a).diff(dim=0).abs()
    assert torch.allclose(steps, torch.ones_like(steps), atol=0.05)


def test_forced_horizontal_velocity_crosses_without_bouncing():
    """With vx, the digit steps exactly vx px right (or left) every frame, never bounces sideways, and the vertical
    motion and the seed's other draws are those of the free clip."""
    cfg = DigitsConfig(size=16, digit=10, frames=8, max_speed=1)
    for seed in range(6):
        for vx in (1, -1):
            moved = clip(seed, cfg, vx=vx)[0]
            free = clip(seed, cfg)[0]
            dx = measures.centroids(moved)[:, 1].diff()
            assert torch.allclose(dx, torch.full_like(dx, float(vx)), atol=1e-4), (seed, vx, dx)
            assert torch.allclose(measures.centroids(moved)[:, 0], measures.centroids(free)[:, 0], atol=1e-4)


def test_measures_separate_real_from_broken_clips():
    """Real clips: same digit throughout, smooth path; a digit swapped per frame or frames shuffled is caught."""
    real = [clip(s, CFG)[0] for s in range(8)]
    mixed = [torch.stack([real[(i + k) % 8][k] for k in range(16)]) for i in range(8)]  # another clip per frame
    shuffled = [c[torch.randperm(16, generator=torch.Generator().manual_seed(0))] for c in real]
    r, m, s = (measures.summarise(x, CFG.digit) for x in (real, mixed, shuffled))
    assert r["identity"][0] == 1.0 and r["shape_corr"][0] > 0.99
    assert m["identity"][0] < 0.5 and m["shape_corr"][0] < 0.9
    assert s["accel"][0] > 3 * r["accel"][0]
    assert [int(measures.classify(c, CFG.digit)[0]) for c in real] == [clip(s, CFG)[1][0] for s in range(8)]
