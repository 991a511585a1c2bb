"""Decode Frames: the same images as core's VAE Decode, decoded a few frames at a time."""
from __future__ import annotations

from importlib import import_module

import pytest
import torch

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def vae(comfy_host, sd15_file):
    """The VAE of the cached random full-size SD1.5 checkpoint, loaded as core's loader splits it off."""
    import comfy.sd
    import comfy.utils

    sd = comfy.utils.load_torch_file(str(sd15_file))
    prefix = "first_stage_model."
    return comfy.sd.VAE(sd={k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})


def test_chunked_decode_equals_core_vae_decode(comfy_host, vae, monkeypatch):
    """7 frames at 3 per batch: vae.decode sees batches of 3, 3, 1, and the frames equal core's VAEDecode's."""
    nodes = comfy_host.nodes
    latent = torch.randn(7, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    (core,) = nodes.NODE_CLASS_MAPPINGS["VAEDecode"]().decode(vae, {"samples": latent})
    batches = []
    real = vae.decode
    monkeypatch.setattr(vae, "decode", lambda x, *a, **k: batches.append(x.shape[0]) or real(x, *a, **k))
    node = comfy_host.pack_node_classes()["KinemaDecodeFrames"]
    ours = node.execute(samples={"samples": latent}, vae=vae, frames_per_batch=3).args[0]
    assert batches == [3, 3, 1]
    assert ours.shape == core.shape == (7, 64, 64, 3)
    torch.testing.assert_close(ours, core, atol=1e-5, rtol=0)
    assert core.std() > 0.01  # real images, not a constant


def test_frames_per_batch_must_be_positive(comfy_host, vae):
    decode = import_module("kinema.comfy_glue.decode")
    with pytest.raises(ValueError, match="frames_per_batch must be at least 1, but got 0"):
        decode.decode_frames(vae, torch.zeros(2, 4, 8, 8), 0)
