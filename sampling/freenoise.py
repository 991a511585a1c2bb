"""FreeNoise noise rescheduling (Qiu et al. 2023, arXiv 2310.15169).

Frames past the first context window reuse earlier noise frames, shuffled within each hop, so each
window of the ``standard_static`` schedule sees a permutation of the same ``length`` noise frames.
Same hop walk and random draws as core's ``apply_freenoise`` (ComfyUI 0.8.0), without its in-place write.
"""

from __future__ import annotations

import torch

from .context import check_length_overlap


class FreeNoiseError(ValueError):
    """The noise tensor or its frame dimension does not fit FreeNoise."""


def freenoise_sources(num_frames: int, length: int, overlap: int, seed: int) -> list[int]:
    """For each output frame, the input frame (always < length) it copies; FreeNoise sec. 3.2."""
    check_length_overlap(length, overlap)
    hop = length - overlap
    generator = torch.Generator(device="cpu").manual_seed(seed)
    sources = list(range(num_frames))
    for start in range(0, num_frames - length, hop):
        place = start + length  # the hop after window [start, start + length) ...
        count = min(hop, num_frames - place)
        perm = torch.randperm(count, generator=generator).tolist()
        for k, p in enumerate(perm):  # ... takes the shuffled frames of that window's first hop
            sources[place + k] = sources[start + p]
    return sources


def freenoise(noise: torch.Tensor, length: int, overlap: int, seed: int, dim: int = 0) -> torch.Tensor:
    """New tensor whose frames along `dim` are FreeNoise-shuffled copies of the first `length` frames."""
    check_length_overlap(length, overlap)
    if not -noise.ndim <= dim < noise.ndim:
        raise FreeNoiseError(f"dim must index one of the noise's {noise.ndim} dimensions, but got {dim}")
    sources = freenoise_sources(noise.shape[dim], length, overlap, seed)
    return noise.index_select(dim, torch.tensor(sources, device=noise.device))
