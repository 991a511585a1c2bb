"""Measure window seams in an animation you made: python scripts/seams.py CLIP [--length 16 --overlap 4]

CLIP is an animated WEBP/GIF/PNG or a folder of frames. Prints the seam ratio: mean change between
adjacent frames that straddle a context-window boundary divided by the mean change inside windows
(1.0 = seams are invisible in the statistics; well above 1 = visible jumps). Windows are those of the
given schedule at its first step (the static schedule's windows are the same at every step).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageSequence  # noqa: E402

from sampling.context import ContextOptions, ContextSchedule, windows  # noqa: E402
from sampling.seams import seam_metric  # noqa: E402


def read_frames(path: Path) -> torch.Tensor:
    """(f, c, h, w) float frames from an animated image or a folder of images."""
    if path.is_dir():
        images = [Image.open(p) for p in sorted(path.iterdir()) if p.suffix.lower() in {".png", ".jpg", ".webp"}]
    else:
        images = list(ImageSequence.Iterator(Image.open(path)))
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # f h w c -> f c h w


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", type=Path)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--schedule", default=ContextSchedule.STANDARD_STATIC.value,
                        choices=[s.value for s in ContextSchedule])
    args = parser.parse_args()
    frames = read_frames(args.clip)
    opts = ContextOptions(args.length, args.overlap, ContextSchedule(args.schedule))
    ratio = seam_metric(frames, windows(frames.shape[0], opts, 0))
    print(f"{args.clip.name}: {frames.shape[0]} frames, seam ratio {ratio:.3f} "
          f"(context {args.length}, overlap {args.overlap}, {args.schedule})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
