"""Synthetic Moving MNIST: digit glyphs drawn with Pillow's bundled font, bouncing inside a small square.

No download: the ten glyphs come from ``ImageFont.load_default`` (a FreeType font shipped with Pillow), drawn
large with a stroke, cropped and scaled to ``digit`` pixels high. Each clip moves 1-2 digits at a constant
integer velocity and reflects them off the walls, as in Srivastava et al. 2015 (arXiv 1502.04681). Pixels are
in [-1, 1] (background -1); everything is deterministic given the seed.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

GLYPH_DRAW_SIZE = 48  # the font size glyphs are drawn at before scaling down


@dataclass(frozen=True)
class DigitsConfig:
    """The data's geometry: canvas size, glyph height, frames per clip and digits per clip."""

    size: int = 32
    digit: int = 14
    frames: int = 16
    digits: int = 1
    max_speed: int = 2  # pixels per frame along each axis: a random non-zero integer in ±[1, max_speed]

    def speeds(self) -> tuple[int, ...]:
        """The velocities one axis can take."""
        return tuple(v for v in range(-self.max_speed, self.max_speed + 1) if v)


@functools.lru_cache(maxsize=8)
def glyphs(height: int) -> tuple[np.ndarray, ...]:
    """The ten digit glyphs as float arrays in [0, 1], ``height`` pixels high, tightly cropped."""
    font = ImageFont.load_default(size=GLYPH_DRAW_SIZE)
    out = []
    for d in range(10):
        canvas = Image.new("L", (GLYPH_DRAW_SIZE * 2, GLYPH_DRAW_SIZE * 2))
        ImageDraw.Draw(canvas).text((8, 8), str(d), font=font, fill=255, stroke_width=3, stroke_fill=255)
        glyph = canvas.crop(canvas.getbbox())
        width = max(1, round(glyph.width * height / glyph.height))
        out.append(np.asarray(glyph.resize((width, height), Image.LANCZOS), dtype=np.float32) / 255.0)
    return tuple(out)


def _paste(frame: np.ndarray, glyph: np.ndarray, y: int, x: int) -> None:
    """Overlay ``glyph`` at (y, x) by maximum, as overlapping Moving MNIST digits combine."""
    h, w = glyph.shape
    np.maximum(frame[y:y + h, x:x + w], glyph, out=frame[y:y + h, x:x + w])


def _bounce(pos: int, vel: int, limit: int) -> tuple[int, int]:
    """One step of a position in [0, limit] with reflection off both walls."""
    pos += vel
    if pos < 0:
        return -pos, -vel
    if pos > limit:
        return 2 * limit - pos, -vel
    return pos, vel


def clip(seed: int, cfg: DigitsConfig = DigitsConfig(), vx: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """One clip, shape (frames, 1, size, size) in [-1, 1], and the digit classes in it. With ``vx`` every digit moves
    ``vx`` px/frame horizontally from a start that keeps it off the side walls for the whole clip (no bounce)."""
    rng = np.random.default_rng(seed)
    table = glyphs(cfg.digit)
    classes = [int(c) for c in rng.integers(0, 10, cfg.digits)]
    movers = []
    for c in classes:
        h, w = table[c].shape
        limits = (cfg.size - h, cfg.size - w)
        pos = [int(rng.integers(0, lim + 1)) for lim in limits]
        vel = [int(rng.choice(cfg.speeds())) for _ in limits]
        if vx is not None:
            room = limits[1] - abs(vx) * (cfg.frames - 1)
            if room < 0:
                raise ValueError(f"vx = {vx}: a {w}-px-wide digit cannot cross the {cfg.size}-px frame for "
                                 f"{cfg.frames} frames without bouncing")
            pos[1] = int(rng.integers(0, room + 1)) + (abs(vx) * (cfg.frames - 1) if vx < 0 else 0)
            vel[1] = vx
        movers.append((table[c], limits, pos, vel))
    frames = np.zeros((cfg.frames, cfg.size, cfg.size), dtype=np.float32)
    for f in range(cfg.frames):
        for glyph, limits, pos, vel in movers:
            _paste(frames[f], glyph, pos[0], pos[1])
            for axis in (0, 1):
                pos[axis], vel[axis] = _bounce(pos[axis], vel[axis], limits[axis])
    return torch.from_numpy(frames * 2 - 1).unsqueeze(1), classes


def clips(seeds: list[int], cfg: DigitsConfig = DigitsConfig()) -> torch.Tensor:
    """A batch of clips, shape (len(seeds) * frames, 1, size, size), each clip's frames contiguous."""
    return torch.cat([clip(s, cfg)[0] for s in seeds])


def still_frames(seed: int, count: int, cfg: DigitsConfig = DigitsConfig()) -> torch.Tensor:
    """``count`` single frames (one random frame of a random clip each), shape (count, 1, size, size)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, 2**31, count)
    which = rng.integers(0, cfg.frames, count)
    return torch.stack([clip(int(s), cfg)[0][int(f)] for s, f in zip(picks, which, strict=True)])
