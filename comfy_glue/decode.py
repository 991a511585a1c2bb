"""Decode a latent clip a few frames at a time, so decoding never needs more memory than sampling did."""
from __future__ import annotations

import torch
from torch import Tensor


def decode_frames(vae, latent: Tensor, per_batch: int) -> Tensor:
    """Frames (n, H, W, 3) from ``vae.decode`` of ``per_batch`` latents at a time, written into one output.

    Core's VAEDecode hands the whole batch to ``vae.decode``, which sizes its batches by the free memory,
    so for a clip the decode, not the sampling, sets the run's peak. Video VAEs (5-D latents, where frames
    are not separable) are decoded whole, as core does.
    """
    if per_batch < 1:
        raise ValueError(f"frames_per_batch must be at least 1, but got {per_batch}")
    if latent.is_nested:
        latent = latent.unbind()[0]
    if latent.ndim != 4 or latent.shape[0] <= per_batch:
        return _flat(vae.decode(latent))
    out = None
    for start in range(0, latent.shape[0], per_batch):
        images = _flat(vae.decode(latent[start:start + per_batch]))
        if out is None:  # the first chunk gives the frame shape and dtype; no list of chunks, no cat
            out = torch.empty((latent.shape[0], *images.shape[1:]), dtype=images.dtype, device=images.device)
        out[start:start + images.shape[0]] = images
    return out


def _flat(images: Tensor) -> Tensor:
    """(n, H, W, 3): a 5-D batch of clips is flattened into frames, as core's VAEDecode does."""
    return images.reshape(-1, *images.shape[-3:]) if images.ndim == 5 else images
