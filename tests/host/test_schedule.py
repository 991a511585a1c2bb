"""The noise schedule on every model_sampling the host can produce: the UNet receives the timesteps the model's own
patch maps each sigma to, over the motion module's betas; continuous schedules are kept and logged; flow models are
one clear error. Timesteps are measured where the UNet receives them (a forward pre-hook on the tiny UNet)."""
from __future__ import annotations

import logging
import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import conditioning, tiny_sd15_patcher  # noqa: E402
from test_attach import tiny_motion  # noqa: E402

AUTO = "auto (motion module's)"


def _glue(name: str):
    return import_module(f"kinema.comfy_glue.{name}")


def _advanced():
    return import_module("comfy_extras.nodes_model_advanced")


def reference_sigmas(zsnr: bool = False) -> torch.Tensor:
    """AnimateDiff's training sigmas, computed here: betas = linspace(0.00085, 0.012, 1000) (diffusers 'linear')."""
    betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    if zsnr:
        import comfy.model_sampling

        sigmas = comfy.model_sampling.rescale_zero_terminal_snr_sigmas(sigmas)
    return sigmas.float()


def reference_timestep(sigma: float, sigmas: torch.Tensor, skip: int = 1) -> int:
    """The training timestep of ``sigma``: nearest log-sigma index; a distilled grid of every ``skip``-th sigma."""
    grid = sigmas[skip - 1::skip]
    index = int((grid.log() - torch.tensor(sigma).log()).abs().argmin())
    return index * skip + skip - 1


def measure(model, steps: int = 4, sampler: str = "euler", scheduler: str = "sgm_uniform") -> list[tuple[float, float]]:
    """``(sigma, UNet timestep)`` for every model call of a 4-frame sample (cfg 1: one UNet call per step)."""
    import comfy.sample

    seen, sigmas = [], []
    model = model.clone()

    def unet_function(apply, args):
        sigmas.append(float(args["timestep"].flatten()[0]))
        return apply(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(unet_function)
    unet = model.model.diffusion_model
    hook = unet.register_forward_pre_hook(lambda m, args: seen.append(float(args[1].flatten()[0])))
    try:
        latent = torch.zeros(4, 4, 8, 8)
        noise = comfy.sample.prepare_noise(latent, 0)
        out = comfy.sample.sample(model, noise, steps, 1.0, sampler, scheduler, conditioning(0), conditioning(1),
                                  latent, seed=0, disable_pbar=True)
    finally:
        hook.remove()
    assert torch.isfinite(out).all()
    assert len(seen) == len(sigmas) > 0
    return list(zip(sigmas, seen, strict=True))


def patched(base, sampling: str, zsnr: bool = False):
    """``base`` through core's Model Sampling Discrete node."""
    return _advanced().ModelSamplingDiscrete().patch(base, sampling, zsnr)[0]


@pytest.fixture(scope="module")
def base(comfy_host):
    return tiny_sd15_patcher(seed=0)


@pytest.mark.parametrize("sampling, zsnr, version, sampler, skip", [
    ("eps", False, "v2", "euler", 1),
    ("v_prediction", False, "v2", "euler", 1),
    ("x0", False, "v2", "euler", 1),
    ("eps", True, "v2", "euler", 1),
    ("lcm", False, "animatelcm", "lcm", 20),
    ("lcm", True, "animatelcm", "lcm", 20),
])
def test_unet_gets_the_patch_timesteps_over_the_module_betas(base, sampling, zsnr, version, sampler, skip):
    """Through core's Model Sampling Discrete (each sampling, zsnr on/off) the UNet receives, for every sigma, the
    timestep the patch maps it to on the motion module's own sigmas; the prediction type stays the patch's."""
    model = patched(base, sampling, zsnr)
    animated = _glue("attach").attach(model, tiny_motion(version), beta_schedule=AUTO)
    reference = reference_sigmas(zsnr)
    pairs = measure(animated, sampler=sampler)
    got = [t for _, t in pairs]
    want = [reference_timestep(s, reference, skip) for s, _ in pairs]
    assert got == want, f"UNet timesteps {got}, expected {want}"
    assert max(got) <= 999
    torch.testing.assert_close(torch.tensor(pairs[0][0]), reference[-1], rtol=1e-4, atol=0)  # the module's sigma_max
    ours, theirs = animated.get_model_object("model_sampling"), model.get_model_object("model_sampling")
    assert type(ours).calculate_denoised is type(theirs).calculate_denoised


def test_animatelcm_under_core_lcm_patch_measures_the_distilled_timesteps(base):
    """The issue's case, lcm sampler, 4 steps sgm_uniform (today's code gave 19999, 14999, 9999, 5019): with either
    noise schedule the UNet gets timesteps on the 50-step distilled grid, 999, 759, ·, 259. The third is a tie by
    construction: sgm_uniform asks for t = 509, core's distilled sigma() puts it exactly halfway in log sigma
    between grid timesteps 499 and 519, and timestep() takes whichever float rounding leaves nearer (CPUs differ;
    argmin takes 499 on an exact tie)."""
    attach, motion = _glue("attach").attach, tiny_motion("animatelcm")
    for schedule in ("model's own", AUTO):
        got = [t for _, t in measure(attach(patched(base, "lcm"), motion, beta_schedule=schedule), sampler="lcm")]
        assert [got[0], got[1], got[3]] == [999, 759, 259] and got[2] in (499, 519), f"{schedule}: {got}"


def test_discrete_edm_keeps_its_log_sigma_timesteps(base):
    """A ModelSamplingDiscreteEDM (a discrete schedule with EDM's timestep = log(sigma)/4) gets the module's sigmas and
    keeps its own mapping."""
    import comfy.model_sampling as ms

    class DiscreteEDM(ms.ModelSamplingDiscreteEDM, ms.EPS):
        pass

    model = base.clone()
    model.add_object_patch("model_sampling", DiscreteEDM(base.model.model_config))
    animated = _glue("attach").attach(model, tiny_motion("v2"), beta_schedule=AUTO)
    pairs = measure(animated, scheduler="normal")
    for sigma, t in pairs:
        assert t == pytest.approx(0.25 * torch.tensor(sigma).log().item(), abs=1e-5)
    torch.testing.assert_close(torch.tensor(pairs[0][0]), reference_sigmas()[-1], rtol=1e-4, atol=0)


@pytest.mark.parametrize("sampling", ["eps", "v_prediction", "edm"])
def test_continuous_edm_is_kept_and_logged(base, sampling, caplog):
    """Core's Model Sampling Continuous EDM has no betas to replace: the patch is kept as it is, and the log says so."""
    model = _advanced().ModelSamplingContinuousEDM().patch(base, sampling, 120.0, 0.002)[0]
    with caplog.at_level(logging.WARNING):
        animated = _glue("attach").attach(model, tiny_motion("v2"), beta_schedule=AUTO)
    assert animated.get_model_object("model_sampling") is model.get_model_object("model_sampling")
    assert any("keeping its own noise schedule" in r.getMessage() for r in caplog.records)
    pairs = measure(animated, steps=2, scheduler="karras")
    assert all(t == pytest.approx(0.25 * torch.tensor(s).log().item(), abs=1e-5) for s, t in pairs)


def test_flow_sampling_is_one_clear_error(base):
    """An SD3-style flow patch cannot take a DDPM schedule: one sentence naming the patch and the way out; with
    "model's own" it attaches."""
    model = _advanced().ModelSamplingSD3().patch(base, 3.0)[0]
    with pytest.raises(ValueError, match=r"flow.*ModelSamplingDiscreteFlow.*'model's own'"):
        _glue("attach").attach(model, tiny_motion("v2"), beta_schedule=AUTO)
    kept = _glue("attach").attach(model, tiny_motion("v2"), beta_schedule="model's own")
    assert kept.get_model_object("model_sampling") is model.get_model_object("model_sampling")


def test_animatelcm_without_the_lcm_patch_says_what_it_wants(base, caplog):
    """AnimateLCM on a model without core's lcm model sampling logs the node to add; with it, nothing is said."""
    with caplog.at_level(logging.WARNING):
        _glue("attach").attach(base, tiny_motion("animatelcm"), beta_schedule=AUTO)
    assert any("Model Sampling Discrete (lcm)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _glue("attach").attach(patched(base, "lcm"), tiny_motion("animatelcm"), beta_schedule=AUTO)
    assert not any("Model Sampling Discrete" in r.getMessage() for r in caplog.records)
