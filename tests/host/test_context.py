"""Context windows on core ComfyUI's machinery: exact equivalences and an independent fused computation."""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import conditioning, tiny_sd15_patcher  # noqa: E402
from test_attach import tiny_motion  # noqa: E402


def _mod(name: str):
    return import_module(f"kinema.{name}")


def options(length=16, overlap=4, schedule="standard_static", fuse="pyramid", **kw):
    ctx = _mod("sampling.context")
    return ctx.ContextOptions(length, overlap, ctx.ContextSchedule(schedule), ctx.FuseMethod(fuse), **kw)


def run(model, noise: torch.Tensor, steps: int = 1, cfg: float = 1.0) -> torch.Tensor:
    """ComfyUI's own sampling of ``noise``-shaped latents (euler; 1 step at cfg 1 = the denoised prediction)."""
    import comfy.sample

    latent = torch.zeros_like(noise)
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", conditioning(0), conditioning(1),
                               latent, seed=0, disable_pbar=True)


@pytest.fixture(scope="module")
def animated(comfy_host):
    base = tiny_sd15_patcher(seed=0)
    return base, _mod("comfy_glue.attach").attach(base, tiny_motion("v2", seed=4))


def with_context(model, opts, views=False):
    ctx = _mod("comfy_glue.context")
    return ctx.apply_context(model, ctx.ContextPlan(opts, views), tiny_motion().spec)


def noise_for(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("views", [False, True])
def test_frames_within_one_window_equal_no_context(animated, views):
    """Fewer frames than the context length: one window, equal to running without context options."""
    _, model = animated
    noise = noise_for(12)
    plain = run(model, noise, steps=2, cfg=3.0)
    windowed = run(with_context(model, options(), views), noise, steps=2, cfg=3.0)
    assert (plain - windowed).abs().max() <= 1e-5


def test_48_frames_fused_prediction_equals_independent_computation(animated):
    """At one step, the windowed prediction equals running each window alone and fusing by pyramid weights."""
    _, model = animated
    frames, length, overlap = 48, 16, 4
    noise = noise_for(frames, seed=1)
    fused = run(with_context(model, options(length, overlap)), noise)
    starts = [*range(0, frames - length, length - overlap), frames - length]  # standard_static windows
    total = torch.zeros(frames, 1, 1, 1)
    expected = torch.zeros_like(noise)
    pyramid = torch.tensor([min(i + 1, length - i) for i in range(length)], dtype=torch.float32).view(-1, 1, 1, 1)
    for s in starts:
        expected[s:s + length] += run(model, noise[s:s + length]) * pyramid
        total[s:s + length] += pyramid
    expected /= total
    scale = expected.abs().max()
    assert (fused - expected).abs().max() <= 1e-5 * scale, ((fused - expected).abs().max(), scale)
    # the windows are really fused: frame 13 (two windows) is not either window's own prediction
    assert (fused[13] - run(model, noise[:16])[13]).abs().max() > 1e-4


@pytest.mark.parametrize("schedule, fuse", [("standard_static", "flat"), ("standard_uniform", "overlap-linear"),
                                            ("looped_uniform", "gaussian"), ("batched", "pyramid")])
def test_every_schedule_and_fuse_method_samples(animated, schedule, fuse):
    """Each schedule and each fuse method samples 24 frames for 3 steps (several steps: 0.3.64's step lookup).

    Every schedule x fuse pair is covered by the pure property tests in tests/core.
    """
    _, model = animated
    out = run(with_context(model, options(8, 2, schedule, fuse)), noise_for(24, seed=3), steps=3, cfg=2.0)
    assert out.shape[0] == 24 and torch.isfinite(out).all()


def test_context_validation_before_anything_runs(animated):
    """overlap >= length and length > PE length are one sentence each at apply time."""
    _, model = animated
    with pytest.raises(ValueError, match="must be smaller than context_length"):
        with_context(model, options(16, 16))
    with pytest.raises(ValueError, match="exceeds this motion module's limit of 32"):
        with_context(model, options(48, 4))


def test_memory_estimate_uses_the_window(animated):
    """ComfyUI's prepare-sampling sees a noise shape of one window, not the whole clip."""
    import comfy.patcher_extension as pe

    _, model = animated
    windowed = with_context(model, options(16, 4))
    seen = []
    wrappers = windowed.wrappers[pe.WrappersMP.PREPARE_SAMPLING]
    fn = [w for ws in wrappers.values() for w in ws][0]
    fn(lambda m, shape, *a, **k: seen.append(list(shape)), windowed, [1024, 4, 16, 16],
       model_options=windowed.model_options)
    assert seen == [[16, 4, 16, 16]]
