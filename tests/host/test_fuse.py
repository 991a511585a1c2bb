"""Fusing on the live paths, every fuse method, against independent computations: core's window handler with our
weights (whole-UNet windows) and views (windows in the motion module only), on SD1.5 and the SDXL beta."""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
sys.path.append(str(Path(__file__).parents[1] / "core"))
from _tiny import (  # noqa: E402
    conditioning,
    loaded_motion,
    motion_state_dict,
    sdxl_conditioning,
    tiny_sd15_patcher,
    tiny_sdxl_patcher,
)
from _views_reference import reference_views, reference_weights  # noqa: E402

FRAMES, LENGTH, OVERLAP = 20, 8, 4
METHODS = ["flat", "pyramid", "overlap-linear", "gaussian"]


def _windows(frames: int) -> list[list[int]]:
    """standard_static by hand: hop LENGTH - OVERLAP, the last window flush with the clip's end."""
    starts = [*range(0, frames - LENGTH, LENGTH - OVERLAP), frames - LENGTH]
    return [list(range(s, s + LENGTH)) for s in starts]
def _mod(name: str):
    return import_module(f"kinema.{name}")


def _motion(version: str, widths, seed: int = 4):
    """A motion module with O(1) random weights, so the windows' outputs differ measurably."""
    spec = _mod("motion_modules").standard_spec(version, widths=widths)
    return loaded_motion(spec, motion_state_dict(spec, seed), f"tiny_{version}.safetensors")


def _with_context(model, motion, method: str, views: bool):
    ctx, sc = _mod("comfy_glue.context"), _mod("sampling.context")
    opts = sc.ContextOptions(LENGTH, OVERLAP, sc.ContextSchedule.STANDARD_STATIC, sc.FuseMethod(method))
    return ctx.apply_context(model, ctx.ContextPlan(opts, views), motion.spec)


def _predict(model, noise: torch.Tensor, positive, negative) -> torch.Tensor:
    """ComfyUI's own sampling, euler, 1 step at cfg 1: the model's denoised prediction for ``noise``."""
    import comfy.sample

    return comfy.sample.sample(model, noise, 1, 1.0, "euler", "normal", positive, negative,
                               torch.zeros_like(noise), seed=0, disable_pbar=True)


class _ReferenceViews:
    """forward_timestep_embed_patch handler running the independent views transcription at every slot."""

    def __init__(self, motion_model, heads: int, method: str, across_frames: bool):
        self.motion_model, self.heads, self.method, self.across_frames = motion_model, heads, method, across_frames

    def __call__(self, layer, x, emb, context, transformer_options, *args, **kwargs):
        frames = x.shape[0] // len(transformer_options["cond_or_uncond"])
        views = [(w, reference_weights(self.method, w, frames, OVERLAP)) for w in _windows(frames)]
        sd = self.motion_model.get_submodule(layer.name).state_dict()
        return reference_views(sd, x, frames, views, self.heads, self.across_frames)


def _reference_views_model(model, motion, method: str):
    """A clone of the attached ``model`` whose motion slots run the reference instead of our module."""
    attach = _mod("comfy_glue.attach")
    m = model.clone()
    embed = m.model_options["transformer_options"]["patches"]["forward_timestep_embed_patch"]
    across = motion.spec.module_groupnorm == "across_frames"
    reference = _ReferenceViews(motion.patcher.model, motion.spec.heads, method, across)
    embed[:] = [(cls, reference if isinstance(h, attach.Attachment) else h) for cls, h in embed]
    return m


def _reference_windows(model, noise, positive, negative, method: str) -> torch.Tensor:
    """Each window predicted alone (no context options), averaged per frame by the reference weights."""
    total = torch.zeros(FRAMES, 1, 1, 1, dtype=torch.float64)
    expected = torch.zeros_like(noise, dtype=torch.float64)
    for w in _windows(FRAMES):
        weights = torch.tensor(reference_weights(method, w, FRAMES, OVERLAP), dtype=torch.float64).view(-1, 1, 1, 1)
        expected[w] += _predict(model, noise[w], positive, negative).double() * weights
        total[w] += weights
    return (expected / total).float()


def _noise(side: int, seed: int, frames: int = FRAMES) -> torch.Tensor:
    return torch.randn(frames, 4, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def sd15(comfy_host):
    motion = _motion("v2", (32, 64, 128, 128))
    model = _mod("comfy_glue.attach").attach(tiny_sd15_patcher(seed=0), motion)
    return model, motion, conditioning(0), conditioning(1)


@pytest.fixture(scope="module")
def sdxl(comfy_host):
    motion = _motion("sdxl-beta", (32, 64, 128))
    model = _mod("comfy_glue.attach").attach(tiny_sdxl_patcher(seed=0), motion)
    return model, motion, sdxl_conditioning(0), sdxl_conditioning(1)


def _close(got: torch.Tensor, expected: torch.Tensor) -> float:
    """max |got - expected| relative to the expected's largest value."""
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("method", METHODS)
def test_whole_unet_windows_equal_independent_fuse(sd15, method):
    """Core's handler with our weights equals predicting each window alone and fusing by the formulas (1e-5)."""
    model, motion, positive, negative = sd15
    noise = _noise(16, seed=1)
    fused = _predict(_with_context(model, motion, method, views=False), noise, positive, negative)
    assert _close(fused, _reference_windows(model, noise, positive, negative, method)) <= 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_views_equal_independent_computation(sd15, method):
    """Views through the real UNet equal the UNet with the reference views transcription at every slot (1e-5)."""
    model, motion, positive, negative = sd15
    noise = _noise(16, seed=2)
    views = _predict(_with_context(model, motion, method, views=True), noise, positive, negative)
    expected = _predict(_reference_views_model(model, motion, method), noise, positive, negative)
    assert _close(views, expected) <= 1e-5


def test_the_setup_tells_flat_from_pyramid(sd15):
    """Flat and pyramid references differ by far more than the 1e-5 the tests above allow, on both paths."""
    model, motion, positive, negative = sd15
    noise = _noise(16, seed=1)
    flat, pyramid = (_reference_windows(model, noise, positive, negative, m) for m in ("flat", "pyramid"))
    assert _close(flat, pyramid) > 1e-3
    flat, pyramid = (_predict(_reference_views_model(model, motion, m), noise, positive, negative)
                     for m in ("flat", "pyramid"))
    assert _close(flat, pyramid) > 1e-3


@pytest.mark.parametrize("method", ["pyramid", "overlap-linear"])
def test_sdxl_views_equal_independent_computation(sdxl, method):
    """SDXL beta, 36 frames past its 32-row PE: GroupNorm across the whole clip, windowed attention (1e-5)."""
    model, motion, positive, negative = sdxl
    noise = _noise(8, seed=7, frames=36)
    views = _predict(_with_context(model, motion, method, views=True), noise, positive, negative)
    expected = _predict(_reference_views_model(model, motion, method), noise, positive, negative)
    flat = _predict(_reference_views_model(model, motion, "flat"), noise, positive, negative)
    assert _close(views, expected) <= 1e-5
    assert _close(flat, expected) > 1e-3
