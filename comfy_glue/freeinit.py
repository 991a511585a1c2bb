"""FreeInit (Wu et al. 2023, arXiv 2312.07537) on whichever ComfyUI sampler runs the model.

One SAMPLER_SAMPLE wrapper (under ``KEY``) runs the sampler ``iterations`` times inside one sampling run, so
the model stays loaded, the conds are processed once and context windows, ControlNets and FreeNoise work
as in a plain run. Everything happens in the sampler's own space (after ``process_latent_in``), where a
run starts from ``x_T = model_sampling.noise_scaling(sigmas[0], noise, latent)``:

- the previous result ``x0`` is re-noised to the first sigma of the schedule actually used (denoise < 1
  included) with the initial noise: ``z = noise_scaling(sigma_0, noise_0, x0)`` (``x0 + sigma_0 * noise_0``
  for EPS and V models, ``(1 - sigma_0) x0 + sigma_0 noise_0`` for flow models);
- the fresh start is where a plain run with fresh noise (or, with ``fix_noise``, the initial noise) starts;
- the next start is ``mix(z, fresh)``: low frequencies of ``z``, high ones of the fresh start, so the
  low frequencies of the re-initialised start equal those of the re-noised latent exactly. The sampler
  gets the noise that ``noise_scaling`` (affine in the noise) maps to that start.
With ``max_denoise`` (EPS/V at sigma_max) this equals diffusers' add_noise at t = T - 1 and its mix with
N(0, 1) noise, times the constant ``sqrt(1 + sigma_0 ** 2)``. One iteration is the plain run, untouched.
"""
from __future__ import annotations

import logging

import comfy.model_management
import comfy.patcher_extension as pe
import torch
from torch import Tensor

from ..sampling.freeinit import FreeInitOptions, mix_frames_first

KEY = "kinema_freeinit"
log = logging.getLogger(__name__)


def fresh_noise(like: Tensor, seed: int, iteration: int) -> Tensor:
    """Unit Gaussian noise for ``iteration`` (>= 1), drawn on the CPU from ``seed + iteration`` like core's noise."""
    generator = torch.Generator(device="cpu").manual_seed(seed + iteration)
    return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)


def reinitialised_noise(model_sampling, sigma_0: Tensor, max_denoise: bool, result: Tensor, latent: Tensor,
                        initial: Tensor, fresh: Tensor, options: FreeInitOptions) -> tuple[Tensor, Tensor, Tensor]:
    """(noise for the next run, re-noised latent z, fresh start): the next run starts at mix(z, fresh start)."""
    z = model_sampling.noise_scaling(sigma_0, initial.float(), result.float(), False)
    start = model_sampling.noise_scaling(sigma_0, fresh.float(), latent.float(), max_denoise)
    mixed = mix_frames_first(z, start, options)
    zeros = torch.zeros_like(mixed)
    offset = model_sampling.noise_scaling(sigma_0, zeros, latent.float(), max_denoise)  # start with zero noise
    gain = model_sampling.noise_scaling(sigma_0, torch.ones_like(mixed), zeros, max_denoise) - \
        model_sampling.noise_scaling(sigma_0, zeros, zeros, max_denoise)  # d start / d noise
    return ((mixed - offset) / gain).to(initial.dtype), z, start


def _wrapper(options: FreeInitOptions):
    def wrapper(executor, *args, **kwargs):
        """SAMPLER_SAMPLE: sample, then re-initialise the noise's high frequencies and sample again."""
        if options.iterations == 1:
            return executor(*args, **kwargs)
        guider, sigmas, extra_args, callback, noise, latent_arg, *rest = args
        latent = torch.zeros_like(noise) if latent_arg is None else latent_arg
        max_denoise = executor.class_obj.max_denoise(guider, sigmas)
        model_sampling = guider.inner_model.model_sampling
        seed = extra_args.get("seed") or 0
        run_noise, result = noise, None
        for i in range(options.iterations):
            if i:
                comfy.model_management.throw_exception_if_processing_interrupted()
                fresh = noise if options.fix_noise else fresh_noise(noise, seed, i)
                run_noise = reinitialised_noise(model_sampling, sigmas[0], max_denoise, result, latent, noise,
                                                fresh, options)[0]
            log.info("Kinema FreeInit: iteration %d/%d", i + 1, options.iterations)
            # a fresh extra_args per run: samplers may add to it (denoise_mask, post-CFG functions)
            result = executor(guider, sigmas, dict(extra_args), callback, run_noise, latent_arg, *rest, **kwargs)
        return result
    return wrapper


def with_freeinit(model, options: FreeInitOptions | None):
    """A clone of ``model`` whose every sampling run is FreeInit with ``options`` (None: FreeInit off)."""
    m = model.clone()
    m.remove_wrappers_with_key(pe.WrappersMP.SAMPLER_SAMPLE, KEY)
    if options is not None:
        m.add_wrapper_with_key(pe.WrappersMP.SAMPLER_SAMPLE, KEY, _wrapper(options))
    return m
