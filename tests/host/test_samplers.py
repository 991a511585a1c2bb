"""Samplers beyond euler (ancestral, SDE, multistep) and two schedulers on an animated model, the way Apply Motion
Module hands it to KSampler and SamplerCustomAdvanced: each run is finite, the same seed gives the same frames,
another seed other frames, and the motion module takes part in every model call."""
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

SAMPLERS = ["euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m"]
SCHEDULERS = ["karras", "sgm_uniform"]


@pytest.fixture(scope="module")
def models(comfy_host):
    """The tiny base model and the same model with a v2 module attached (the auto noise schedule)."""
    base = tiny_sd15_patcher(seed=0)
    return base, import_module("kinema.comfy_glue.attach").attach(base, tiny_motion("v2", seed=1))


def run(model, sampler: str, scheduler: str, seed: int, frames: int = 4, steps: int = 3) -> torch.Tensor:
    """Sample through core's CFGGuider with a KSamplerSelect sampler and BasicScheduler sigmas (SamplerCustomAdvanced's
    path), noise made as RandomNoise makes it."""
    import comfy.sample
    import comfy.samplers

    latent = torch.zeros(frames, 4, 8, 8)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conditioning(0), conditioning(1))
    guider.set_cfg(4.0)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
    noise = comfy.sample.prepare_noise(latent, seed)
    return guider.sample(noise, latent, comfy.samplers.sampler_object(sampler), sigmas, disable_pbar=True, seed=seed)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_is_deterministic_finite_and_animated(models, sampler, scheduler):
    """Same seed → bit-identical frames; another seed → other frames; finite; and not the unanimated model's."""
    base, animated = models
    first, again = run(animated, sampler, scheduler, seed=7), run(animated, sampler, scheduler, seed=7)
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert (run(animated, sampler, scheduler, seed=8) - first).abs().max() > 1e-3
    assert (run(base, sampler, scheduler, seed=7) - first).abs().max() > 1e-3
