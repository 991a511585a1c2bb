"""FreeInit on the real samplers: one iteration is plain sampling bit for bit (Sample Animation and KSampler after
Apply Motion Module), the second run starts from the re-initialised noise whose low frequencies are the re-noised
result's (EPS and V, denoise 1 and < 1), matching diffusers' add_noise + mix; context windows and interrupts."""
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

FRAMES, SEED, STEPS, CFG, SIZE = 6, 5, 2, 2.0, 8
AUTO = "auto (motion module's)"
DIMS = (0, 2, 3)  # f c h w: frames, height, width


def _mod(name: str):
    return import_module(f"kinema.{name}")


def _first(out):
    """The first output of a V1 node (a tuple) or a V3 node (io.NodeOutput)."""
    return out.args[0] if hasattr(out, "args") else out[0]


def _options(iterations: int = 2, **kwargs):
    return _mod("sampling.freeinit").FreeInitOptions(iterations, **kwargs)


def _latent(frames: int = FRAMES) -> dict:
    return {"samples": torch.zeros(frames, 4, SIZE, SIZE)}


@pytest.fixture(scope="module")
def env(comfy_host):
    return tiny_sd15_patcher(seed=0), tiny_motion("v2", seed=4), conditioning(0), conditioning(1)


def _sample_animation(env, free_init=None, latent=None, context=None, sampler="euler", denoise=1.0):
    base, motion, positive, negative = env
    return _mod("comfy_glue.sample").sample_animation(
        base, motion, positive, negative, latent or _latent(), SEED, STEPS, CFG, sampler, "normal", denoise,
        context=context, free_init=free_init)["samples"]


def _ksampler(env, free_init=None, sampler="euler"):
    import nodes

    base, motion, positive, negative = env
    model = _first(_mod("nodes.motion_module").ApplyMotionModule.execute(base, motion, 1.0, AUTO, None, free_init))
    return _first(nodes.common_ksampler(model, SEED, STEPS, CFG, sampler, "normal", positive, negative,
                                        _latent()))["samples"]


def test_one_iteration_is_plain_sampling_bit_for_bit(env):
    """iterations=1 gives exactly the plain result, on Sample Animation and on the KSampler path."""
    assert torch.equal(_sample_animation(env, _options(1)), _sample_animation(env))
    assert torch.equal(_ksampler(env, _options(1)), _ksampler(env))


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m_sde"])
def test_two_iterations_differ_and_both_paths_agree(env, sampler):
    """Two iterations change the result; KSampler after Apply Motion Module gives Sample Animation's result."""
    two = _sample_animation(env, _options(2), sampler=sampler)
    assert (two - _sample_animation(env, sampler=sampler)).abs().max() > 1e-2 * two.abs().max()
    assert torch.equal(_ksampler(env, _options(2), sampler=sampler), two)


class _Probe:
    """An inner SAMPLER_SAMPLE wrapper recording each run's (noise, latent, sigmas, result)."""

    def __init__(self, interrupt_after: int | None = None):
        self.runs, self.interrupt_after = [], interrupt_after

    def __call__(self, executor, guider, sigmas, extra_args, callback, noise, latent, *rest, **kwargs):
        result = executor(guider, sigmas, extra_args, callback, noise, latent, *rest, **kwargs)
        self.runs.append((noise.clone(), latent.clone(), sigmas.clone(), result.clone(),
                          executor.class_obj.max_denoise(guider, sigmas), guider.inner_model.model_sampling))
        if self.interrupt_after == len(self.runs):
            import comfy.model_management

            comfy.model_management.interrupt_current_processing(True)  # as POST /interrupt does
        return result


def _probed_run(env, options, v_prediction=False, denoise=1.0, probe=None):
    """KSampler path with FreeInit and a probe inside it; returns the probe."""
    import comfy.patcher_extension as pe

    import nodes

    base, motion, positive, negative = env
    if v_prediction:
        msd = import_module("comfy_extras.nodes_model_advanced").ModelSamplingDiscrete
        base = _first(msd.execute(base, "v_prediction", False) if hasattr(msd, "define_schema")
                      else msd().patch(base, "v_prediction", False))
    model = _first(_mod("nodes.motion_module").ApplyMotionModule.execute(base, motion, 1.0, AUTO, None, options))
    probe = probe or _Probe()
    model.add_wrapper_with_key(pe.WrappersMP.SAMPLER_SAMPLE, "test_probe", probe)
    latent = _latent()
    latent["samples"] = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(3))
    nodes.common_ksampler(model, SEED, STEPS, CFG, "euler", "normal", positive, negative, latent, denoise=denoise)
    return probe


def _spectrum(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fftn(x.double(), dim=DIMS), dim=DIMS)


@pytest.mark.parametrize("v_prediction,denoise", [(False, 1.0), (True, 1.0), (False, 0.6)])
def test_second_run_starts_from_low_of_renoised_and_high_of_fresh(env, v_prediction, denoise):
    """The second run's start x_T (the sampler's own noise_scaling of the noise it got) has exactly the low
    frequencies of the first result re-noised to the first sigma with the initial noise, and the high ones of
    where a plain run with fresh noise starts; box filter, so low and high are disjoint bins."""
    options = _options(2, filter="box", spatial_stop=0.5, temporal_stop=0.5)
    probe = _probed_run(env, options, v_prediction, denoise)
    (noise_0, latent, sigmas, result_0, max_denoise, ms), (noise_1, latent_1, sigmas_1, *_ ) = probe.runs
    assert torch.equal(latent, latent_1) and torch.equal(sigmas, sigmas_1) and max_denoise == (denoise == 1.0)
    sigma = float(sigmas[0])
    assert (sigma < 0.9 * float(ms.sigma_max)) == (denoise < 1.0)
    start = ms.noise_scaling(sigmas[0], noise_1, latent, max_denoise)  # what the sampler starts from
    renoised = result_0 + sigma * noise_0  # q(x_sigma | x0) in ComfyUI's space, written out
    fresh = _mod("comfy_glue.freeinit").fresh_noise(noise_0, SEED, 1)
    fresh_start = latent + (sigma ** 2 + 1) ** 0.5 * fresh if max_denoise else latent + sigma * fresh
    lpf = _mod("sampling.freeinit").low_pass_filter((FRAMES, SIZE, SIZE), options).double()[:, None]  # f 1 h w
    assert 0 < lpf.sum() < lpf.numel()
    tol = 1e-5 * _spectrum(renoised).abs().max()
    assert (lpf * (_spectrum(start) - _spectrum(renoised))).abs().max() <= tol
    assert ((1 - lpf) * (_spectrum(start) - _spectrum(fresh_start))).abs().max() <= tol


def test_reinitialisation_matches_diffusers_add_noise_and_mix(env):
    """At sigma_max, the re-initialised start / sqrt(1 + sigma^2) equals diffusers: DDPM add_noise at t = 999 with
    the initial noise, mixed with N(0, 1) noise by its _apply_freq_filter (SD1.5 betas, gaussian filter)."""
    schedulers = pytest.importorskip("diffusers.schedulers")
    mixin = import_module("diffusers.pipelines.free_init_utils").FreeInitMixin()
    fi = _mod("comfy_glue.freeinit")
    ms = env[0].get_model_object("model_sampling")  # SD1.5 "linear" = diffusers' scaled_linear
    options = _options(2, filter="gaussian", spatial_stop=0.3, temporal_stop=0.4)
    gen = torch.Generator().manual_seed(0)
    result, noise, fresh = (torch.randn(FRAMES, 4, 8, 8, generator=gen) for _ in range(3))
    latent = torch.zeros_like(result)
    sigma = ms.sigma_max
    next_noise = fi.reinitialised_noise(ms, sigma, True, result, latent, noise, fresh, options)[0]
    ours = ms.noise_scaling(sigma, next_noise, latent, True) / (1 + sigma ** 2) ** 0.5
    ddpm = schedulers.DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    z_t = ddpm.add_noise(result, noise, torch.full((FRAMES,), 999)).transpose(0, 1)  # f c h w -> c f h w
    lpf = mixin._get_free_init_freq_filter((1, FRAMES, 8, 8), "cpu", "gaussian", 4, 0.3, 0.4)
    expected = mixin._apply_freq_filter(z_t, fresh.transpose(0, 1), lpf).transpose(0, 1)
    torch.testing.assert_close(ours, expected, rtol=0, atol=2e-5)


def test_context_windows(env):
    """Under a Context Scheduler (with FreeNoise) FreeInit runs over the whole clip and changes the result."""
    ctx, sc = _mod("comfy_glue.context"), _mod("sampling.context")
    plan = ctx.ContextPlan(sc.ContextOptions(4, 1, sc.ContextSchedule.STANDARD_STATIC), freenoise=True)
    plain = _sample_animation(env, latent=_latent(7), context=plan)
    two = _sample_animation(env, _options(2, fix_noise=True), latent=_latent(7), context=plan)
    assert two.shape == plain.shape and (two - plain).abs().max() > 1e-2 * plain.abs().max()


def test_interrupt_between_iterations_raises(env):
    """An interrupt requested during the first iteration stops FreeInit before the second sampling run."""
    import comfy.model_management as mm

    probe = _Probe(interrupt_after=1)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _probed_run(env, _options(3), probe=probe)
    finally:
        mm.interrupt_current_processing(False)
    assert len(probe.runs) == 1


def test_node_validates_and_builds_options(comfy_host):
    """The FreeInit node turns its inputs into options; out-of-range values are one sentence naming the input."""
    node = _mod("nodes.freeinit").FreeInit
    out = _first(node.execute(3, "gaussian", 0.4, 0.2, 2, True))
    assert out == _options(3, filter="gaussian", spatial_stop=0.4, temporal_stop=0.2, order=2, fix_noise=True)
    assert node.validate_inputs(0, 0.25, 0.25, 4) == "iterations must be at least 1, but got 0"
    assert node.validate_inputs(2, 0.25, 0.25, 4) is True
