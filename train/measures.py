"""Temporal-consistency measures a reader can check by hand, on clips of shape (frames, 1, H, W) in [-1, 1].

- digit identity: each frame's foreground, centred on its centroid, is matched against the ten clean glyphs
  (normalised correlation); the score is the share of consecutive frame pairs given the same digit.
- shape correlation: Pearson correlation of consecutive frames' centred foreground patches.
- smoothness: mean length of the centroid path's second difference (pixels/frame², 0 for constant velocity).
- speed: mean centroid step (pixels/frame), so a clip that merely stands still is visible as such.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .moving_digits import glyphs

PATCH = 20  # side of the centred patch compared between frames and against the glyphs


def ink(frames: torch.Tensor) -> torch.Tensor:
    """Foreground intensity in [0, 1], shape (frames, H, W)."""
    return ((frames[:, 0].float() + 1) / 2).clamp(0, 1)


def centroids(frames: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centroid (y, x) of each frame, shape (frames, 2); the centre for an empty frame."""
    w = ink(frames)
    h, wd = w.shape[1:]
    total = w.sum((1, 2))
    ys = (w.sum(2) * torch.arange(h)).sum(1) / total.clamp_min(1e-6)
    xs = (w.sum(1) * torch.arange(wd)).sum(1) / total.clamp_min(1e-6)
    centre = torch.tensor([(h - 1) / 2, (wd - 1) / 2])
    return torch.where((total > 1e-3)[:, None], torch.stack([ys, xs], 1), centre)


def centred_patches(images: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """PATCH×PATCH crops of (n, H, W) images around sub-pixel centres (n, 2), by bilinear sampling."""
    n, h, w = images.shape
    offsets = torch.arange(PATCH, dtype=torch.float32) - (PATCH - 1) / 2
    ys = (centres[:, 0:1] + offsets) / (h - 1) * 2 - 1  # (n, PATCH), grid_sample's [-1, 1] coordinates
    xs = (centres[:, 1:2] + offsets) / (w - 1) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), -1)  # (n, PATCH, PATCH, 2)
    return F.grid_sample(images[:, None], grid, align_corners=True, padding_mode="zeros")[:, 0]


def _normalised(patches: torch.Tensor) -> torch.Tensor:
    """Each patch flattened, zero-mean and unit-norm (rows of an (n, PATCH²) matrix)."""
    flat = patches.flatten(1)
    flat = flat - flat.mean(1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-6)


def templates(digit_height: int) -> torch.Tensor:
    """The ten clean glyphs as normalised centred patches, shape (10, PATCH²)."""
    pads = []
    for g in glyphs(digit_height):
        canvas = torch.zeros(PATCH + 8, PATCH + 8)
        h, w = g.shape
        y, x = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
        canvas[y:y + h, x:x + w] = torch.from_numpy(g)
        pads.append(canvas)
    stack = torch.stack(pads)
    return _normalised(centred_patches(stack, centroids(stack[:, None] * 2 - 1)))


def classify(frames: torch.Tensor, digit_height: int) -> torch.Tensor:
    """The best-matching digit class of each frame, shape (frames,)."""
    patches = _normalised(centred_patches(ink(frames), centroids(frames)))
    return (patches @ templates(digit_height).T).argmax(1)


def clip_measures(frames: torch.Tensor, digit_height: int) -> dict[str, float]:
    """The four measures of one clip."""
    labels = classify(frames, digit_height)
    patches = _normalised(centred_patches(ink(frames), centroids(frames)))
    path = centroids(frames)
    return {
        "identity": float((labels[1:] == labels[:-1]).float().mean()),
        "shape_corr": float((patches[1:] * patches[:-1]).sum(1).mean()),
        "accel": float(path.diff(n=2, dim=0).norm(dim=1).mean()),
        "speed": float(path.diff(dim=0).norm(dim=1).mean()),
    }


def summarise(all_clips: list[torch.Tensor], digit_height: int) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each measure over clips."""
    rows = [clip_measures(c, digit_height) for c in all_clips]
    return {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in rows[0]}


COLUMNS = (("identity", "same digit, consecutive frames ↑"), ("shape_corr", "shape correlation ↑"),
           ("accel", "centroid ‖Δ²‖ px ↓"), ("speed", "centroid speed px/frame"))


def markdown_table(results: dict[str, dict[str, tuple[float, float]]]) -> str:
    """A markdown table: one row per variant, mean ± std of each measure."""
    head = "| clips | " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [head, rule]
    for name, stats in results.items():
        cells = [f"{stats[key][0]:.2f} ± {stats[key][1]:.2f}" for key, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
