"""Sample an animation with ComfyUI's own sampling (progress bar, previews, interrupt, every sampler)."""
from __future__ import annotations

from dataclasses import replace

import comfy.sample
import comfy.utils
import latent_preview

from ..sampling.frames import check_frame_count
from ..sampling.freenoise import FreeNoiseError
from .attach import attach
from .freeinit import with_freeinit

FREENOISE_NEEDS_CONTEXT = ("noise_type FreeNoise needs context_options from a Context Scheduler (it shuffles the "
                           "noise to the context windows), but no context_options is connected")


def sample_animation(model, motion, positive, negative, latent: dict, seed: int, steps: int, cfg: float,
                     sampler_name: str, scheduler: str, denoise: float = 1.0, context=None,
                     beta_schedule: str = "auto (motion module's)", motion_scale: float = 1.0,
                     use_freenoise: bool = False, free_init=None) -> dict:
    """Attach ``motion`` to a clone of ``model`` and denoise the latent's frames together."""
    if use_freenoise and context is None:
        raise FreeNoiseError(FREENOISE_NEEDS_CONTEXT)
    samples = latent["samples"]
    check_frame_count(samples.shape[0], motion.spec.pe_length, context is not None, motion.name)
    animated = attach(model, motion, scale=motion_scale, beta_schedule=beta_schedule)
    if context is not None:
        from .context import apply_context  # context windows are optional glue
        animated = apply_context(animated, replace(context, freenoise=context.freenoise or use_freenoise),
                                 motion.spec)
    if free_init is not None:  # last, so FreeInit runs inside FreeNoise's wrapper (on the shuffled noise)
        animated = with_freeinit(animated, free_init)
    samples = comfy.sample.fix_empty_latent_channels(animated, samples)
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    callback = latent_preview.prepare_callback(animated, steps)
    out = comfy.sample.sample(
        animated, noise, steps, cfg, sampler_name, scheduler, positive, negative, samples,
        denoise=denoise, noise_mask=latent.get("noise_mask"), callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed,
    )
    return {**latent, "samples": out}
