"""Temporal attention's backend: ComfyUI's dispatch on accelerators (flags and 0.8's transformer_options override
honoured), chunked SDPA on the CPU; the same numbers either way."""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import conditioning, loaded_motion, motion_state_dict, tiny_sd15_patcher  # noqa: E402

TOL = 1e-5
FRAMES = 6  # no UNet attention of the tiny model at 16x16 has 6 tokens (its middle block has 4)
CORE_BACKENDS = ("attention_basic", "attention_sub_quad", "attention_split", "attention_pytorch")


def _glue(name: str):
    return import_module(f"kinema.comfy_glue.{name}")


def _motion(seed: int = 0):
    spec = import_module("kinema.motion_modules").standard_spec("v2", widths=(32, 64, 128, 128))
    return loaded_motion(spec, motion_state_dict(spec, seed), "tiny_v2.safetensors")


def _module_out(attention_fn, seed: int = 0) -> torch.Tensor:
    """One 64-channel motion module of the tiny v2 file on 4 frames of 8x8, attending with ``attention_fn``."""
    model = import_module("kinema.motion_modules.model")
    module = _motion().patcher.model.get_submodule("down_blocks.1.motion_modules.0")
    x = torch.randn(2 * FRAMES, 64, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return module(x, model.MotionCall(FRAMES, attention_fn=attention_fn))


def _spy(calls: list, fn):
    """``fn`` recording the (batch, tokens) of each call whose tokens are frames (the motion module's)."""
    def spy(q, k, v, heads, *args, **kwargs):
        if q.shape[1] == FRAMES:
            calls.append(tuple(q.shape[:2]))
        return fn(q, k, v, heads, *args, **kwargs)
    return spy


def _sample(model, seed: int = 0) -> torch.Tensor:
    import comfy.sample

    latent = torch.zeros(FRAMES, 4, 16, 16)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, 2, 5.0, "euler", "normal", conditioning(0), conditioning(1),
                               latent, seed=seed, disable_pbar=True)


def test_backend_decides_by_device_and_override(comfy_host):
    """The CPU keeps chunked SDPA; CUDA, MPS and any device whose model carries an override get the dispatch."""
    attention = _glue("attention")
    override = {attention.OVERRIDE_KEY: lambda func, *a, **kw: func(*a, **kw)}
    assert attention.backend("cpu", {}) is attention.Backend.SDPA
    assert attention.backend("cpu", {"patches": {}}) is attention.Backend.SDPA
    for device in ("cuda", "mps", "xpu"):
        assert attention.backend(device, {}) is attention.Backend.DISPATCH
    assert attention.backend("cpu", override) is attention.Backend.DISPATCH


@pytest.mark.parametrize("name", CORE_BACKENDS)
def test_on_a_gpu_every_core_backend_is_called_and_agrees(comfy_host, monkeypatch, name):
    """On a (faked) CUDA device the module calls whatever ComfyUI's flags installed as optimized_attention, and
    the result equals chunked SDPA's to 1e-5; on the CPU that backend is not called."""
    import comfy.ldm.modules.attention as core

    attention = _glue("attention")
    calls = []
    monkeypatch.setattr(core, "optimized_attention", _spy(calls, getattr(core, name)))
    on_cpu = _module_out(attention.motion_attention({}))
    assert calls == []
    monkeypatch.setattr(attention, "device_type", lambda q: "cuda")
    on_gpu = _module_out(attention.motion_attention({}))
    assert calls == [(2 * 8 * 8, FRAMES)] * 2  # two attention blocks, (b h w) sequences of F tokens
    reference = _module_out(import_module("kinema.motion_modules.model").sdpa_attention)
    assert torch.equal(on_cpu, reference)
    torch.testing.assert_close(on_gpu, reference, atol=TOL, rtol=0)
    assert (on_gpu - _module_out(attention.motion_attention({}), seed=1)).abs().max() > 1e-2


def test_dispatch_goes_in_chunks_above_the_batch_heads_limit(comfy_host, monkeypatch):
    """Above SDPA_BATCH_HEADS_LIMIT sequences × heads the dispatched backend gets batch chunks (ragged last one),
    and the result is the one-call result."""
    import comfy.ldm.modules.attention as core

    attention = _glue("attention")
    monkeypatch.setattr(attention, "device_type", lambda q: "cuda")
    whole = _module_out(attention.motion_attention({}))
    calls = []
    monkeypatch.setattr(core, "optimized_attention", _spy(calls, core.attention_pytorch))
    monkeypatch.setattr(attention, "SDPA_BATCH_HEADS_LIMIT", 50 * 8)  # 8 heads: 50 sequences a chunk
    chunked = _module_out(attention.motion_attention({}))
    assert calls == [(50, FRAMES), (50, FRAMES), (28, FRAMES)] * 2
    torch.testing.assert_close(chunked, whole, atol=TOL, rtol=0)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_transformer_options_override_is_called_by_the_motion_module(comfy_host, monkeypatch, device):
    """An optimized_attention_override installed the 0.8 way (model_options["transformer_options"]) is called
    for the motion module's attention, on the CPU as on a (faked) GPU, with ComfyUI's backend as ``func``;
    what it returns is what the module uses."""
    import comfy.ldm.modules.attention as core

    attach, attention = _glue("attach"), _glue("attention")
    if device != "cpu":
        monkeypatch.setattr(attention, "device_type", lambda q: device)
    base = tiny_sd15_patcher(seed=0)
    calls, funcs = [], set()

    def override(func, *args, **kwargs):
        funcs.add(getattr(func, "__name__", "?"))
        if args[0].shape[1] == FRAMES:
            calls.append(tuple(args[0].shape[:2]))
        return func(*args, **kwargs)

    def doubled(func, *args, **kwargs):
        out = func(*args, **kwargs)
        return 2 * out if args[0].shape[1] == FRAMES else out

    animated = attach.attach(base, _motion(), beta_schedule="model's own")
    plain = _sample(animated)
    animated.model_options["transformer_options"][attention.OVERRIDE_KEY] = override
    overridden = _sample(animated)  # random tiny UNet: latents grow to ~400, so the tolerance is relative
    assert (overridden - plain).abs().max() <= TOL * plain.abs().max()
    assert len(calls) > 0 and all(tokens == FRAMES for _, tokens in calls)
    assert funcs == {core.optimized_attention.__name__}
    animated.model_options["transformer_options"][attention.OVERRIDE_KEY] = doubled
    assert (_sample(animated) - plain).abs().max() > 1e-2 * plain.abs().max()
