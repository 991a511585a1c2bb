"""Attaching a motion module to a real ComfyUI model: it animates, leaks nothing, and guards its inputs."""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import conditioning, loaded_motion, tiny_sd15_patcher  # noqa: E402

TINY_WIDTHS = (32, 64, 128, 128)


def _glue(name: str):
    return import_module(f"kinema.comfy_glue.{name}")


def _random_state_dict(spec, seed: int = 0, std: float = 0.05) -> dict:
    mm = import_module("kinema.motion_modules")
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in mm.expected_shapes(spec).items():
        if key.endswith("pos_encoder.pe"):
            sd[key] = mm.sinusoidal_pe(shape[1], shape[2])
        else:
            sd[key] = torch.randn(shape, generator=g) * std + (1.0 if key.endswith("norm.weight") else 0.0)
    return sd


def tiny_motion(version: str = "v2", seed: int = 0, widths=TINY_WIDTHS):
    """A LoadedMotionModule with random weights in the layout of ``version``, shrunk to ``widths``."""
    spec = import_module("kinema.motion_modules").standard_spec(version, widths=widths)
    return loaded_motion(spec, _random_state_dict(spec, seed), f"tiny_{version}.safetensors")


def sample(model, frames: int = 4, steps: int = 2, seed: int = 0) -> torch.Tensor:
    """Denoise ``frames`` latents of 16x16 with ComfyUI's own sampling."""
    import comfy.sample

    latent = torch.zeros(frames, 4, 16, 16)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, 5.0, "euler", "normal", conditioning(0), conditioning(1),
                               latent, seed=seed, disable_pbar=True)


def slots_in(patcher) -> int:
    attach = _glue("attach")
    return sum(isinstance(m, attach.MotionSlot) for m in patcher.model.diffusion_model.modules())


@pytest.fixture(scope="module")
def base(comfy_host):
    return tiny_sd15_patcher(seed=0)


def test_motion_module_changes_frames_and_scale_zero_is_identity(base):
    """With the model's own schedule, motion_scale 0 reproduces plain sampling; scale 1 changes it."""
    attach = _glue("attach")
    motion = tiny_motion()
    plain = sample(base)
    off = sample(attach.attach(base, motion, scale=0.0, beta_schedule="model's own"))
    on = sample(attach.attach(base, motion, scale=1.0, beta_schedule="model's own"))
    assert torch.equal(off, plain)
    assert torch.isfinite(on).all()
    assert (on - plain).abs().max() > 1e-3


def test_no_leak_into_the_base_model(base):
    """After animating, the same base MODEL samples exactly as if never patched, and holds no slots."""
    attach = _glue("attach")
    before = sample(base, seed=3)
    animated = sample(attach.attach(base, tiny_motion()), seed=3)
    after = sample(base, seed=3)
    assert not torch.allclose(animated, before)
    assert (after - before).abs().max() <= 1e-6
    assert slots_in(base) == 0


def test_applied_model_is_repeatable(base):
    """A MODEL from attach, sampled twice, gives identical results (the patch survives its first run)."""
    attach = _glue("attach")
    animated = attach.attach(base, tiny_motion())
    first, second = sample(animated, seed=5), sample(animated, seed=5)
    assert torch.equal(first, second)
    assert slots_in(base) == 0


def test_frames_interact_only_through_the_motion_module(base):
    """Changing one frame's noise changes the other frames' results only when the module is attached."""
    import comfy.sample

    attach = _glue("attach")
    latent = torch.zeros(4, 4, 16, 16)
    noise = comfy.sample.prepare_noise(latent, 0)
    bumped = noise.clone()
    bumped[0] += 1.0

    def run(model, n):
        return comfy.sample.sample(model, n, 2, 5.0, "euler", "normal", conditioning(0), conditioning(1),
                                   latent, seed=0, disable_pbar=True)

    animated = attach.attach(base, tiny_motion(), beta_schedule="model's own")
    assert torch.equal(run(base, noise)[1:], run(base, bumped)[1:])
    assert (run(animated, noise)[1:] - run(animated, bumped)[1:]).abs().max() > 1e-4


def test_attaching_twice_replaces(base):
    """Attaching to an already animated MODEL replaces the module instead of running two."""
    attach = _glue("attach")
    once = attach.attach(base, tiny_motion(seed=1))
    twice = attach.attach(attach.attach(base, tiny_motion(seed=2)), tiny_motion(seed=1))
    assert torch.equal(sample(once), sample(twice))


def test_v1_groupnorm_across_frames_differs_from_v2_handling(base):
    """The same weights give different results with v1's across-frames ResNet GroupNorms than per frame."""
    import dataclasses

    attach = _glue("attach")
    motion = tiny_motion("v3")  # no mid block, like v1
    v1 = dataclasses.replace(motion, spec=dataclasses.replace(motion.spec, groupnorm="across_frames"))
    per_frame = sample(attach.attach(base, motion, beta_schedule="model's own"))
    across = sample(attach.attach(base, v1, beta_schedule="model's own"))
    assert (per_frame - across).abs().max() > 1e-4
    assert slots_in(base) == 0


@pytest.mark.parametrize("frames", [0, 33])
def test_frame_guardrails(base, frames):
    """0 frames, or more than the PE length without context, is one clear error before sampling."""
    sample_mod = _glue("sample")
    latent = {"samples": torch.zeros(frames, 4, 16, 16)}
    with pytest.raises(ValueError, match="add a Context Scheduler|expected at least 1"):
        sample_mod.sample_animation(base, tiny_motion(), conditioning(0), conditioning(1), latent, 0, 1, 5.0,
                                    "euler", "normal")
    assert slots_in(base) == 0


def test_one_frame_works(base):
    """A single frame samples without error."""
    attach = _glue("attach")
    out = sample(attach.attach(base, tiny_motion()), frames=1)
    assert out.shape[0] == 1 and torch.isfinite(out).all()


def test_sdxl_module_on_sd15_model_is_refused(base):
    """An SDXL-shaped module on an SD1.5 model: one sentence naming both, before anything runs."""
    attach = _glue("attach")
    motion = tiny_motion("sdxl-beta", widths=(32, 64, 128))
    with pytest.raises(ValueError, match=r"an SDXL module .* but the model is SD1\.5 "):
        attach.attach(base, motion)
