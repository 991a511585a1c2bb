"""The noise schedule a motion module was trained with, applied as a model_sampling object patch.

The model's current model_sampling may itself be a patch (core's Model Sampling Discrete with eps, v_prediction,
x0, lcm or zsnr; another pack's subclass). It is rebuilt through its own class, so its prediction type and its
sigma-to-timestep mapping stay (lcm: 50 distilled timesteps, skip 20) and only the betas become the module's.
Schedules without betas (continuous EDM / V) are kept and logged; flow matching is an error.
"""
from __future__ import annotations

import logging
from enum import Enum
from types import SimpleNamespace

from comfy.model_sampling import CONST, ModelSamplingDiscrete

log = logging.getLogger(__name__)


class BetaSchedule(str, Enum):
    """User choice of noise schedule; AUTO takes the one the motion module was trained with."""

    AUTO = "auto (motion module's)"
    MODEL = "model's own"
    SQRT_LINEAR = "sqrt_linear (AnimateDiff)"
    LINEAR = "linear (SD default)"


class ScheduleError(ValueError):
    """The model's sampling cannot take the motion module's noise schedule."""


# ComfyUI's names: "linear" = linspace(√start, √end)² (SD's scaled-linear), "sqrt_linear" = plain linspace.
_EXPLICIT = {
    BetaSchedule.SQRT_LINEAR: ("sqrt_linear", 0.00085, 0.012),
    BetaSchedule.LINEAR: ("linear", 0.00085, 0.012),
}


def schedule_for(spec, choice: str) -> tuple[str, float, float] | None:
    """(beta_schedule, linear_start, linear_end) to use, or None to keep the model's own."""
    choice = BetaSchedule(choice)
    if choice is BetaSchedule.MODEL:
        return None
    if choice is BetaSchedule.AUTO:
        return spec.beta_schedule, spec.linear_start, spec.linear_end
    return _EXPLICIT[choice]


def _rebuilt(current: ModelSamplingDiscrete, model_config, wanted: tuple[str, float, float]):
    """``type(current)`` constructed over the wanted betas (its own __init__ derives the rest), or None."""
    name, start, end = wanted
    settings = {**(getattr(model_config, "sampling_settings", None) or {}), "beta_schedule": name,
                "linear_start": start, "linear_end": end}
    try:  # Discrete constructors read only ``sampling_settings`` from the model config
        return type(current)(SimpleNamespace(sampling_settings=settings), zsnr=getattr(current, "zsnr", False))
    except (TypeError, AttributeError):  # a subclass with another constructor (e.g. Stable Cascade's)
        return None


def _sampling_name(sampling) -> str:
    """The class that gives ``sampling`` its schedule, past the mixin classes core builds on the fly."""
    return next(c.__name__ for c in type(sampling).__mro__ if c.__name__ not in _MIXIN_NAMES)


_MIXIN_NAMES = {"ModelSamplingAdvanced", "ModelSampling"}  # core's nodes and model_base name their mixes so


def _top_timestep(sampling) -> float:
    """The timestep ``sampling`` gives the UNet at its largest sigma."""
    return float(sampling.timestep(sampling.sigma_max.reshape(1)))


def motion_model_sampling(model, spec, choice: str, source: str = "the motion module"):
    """A new model_sampling object with the schedule for ``spec``, or None to leave the model's."""
    wanted = schedule_for(spec, choice)
    current = model.get_model_object("model_sampling")
    described = _sampling_name(current)
    if spec.sampler_hint == "lcm" and not hasattr(current, "skip_steps"):
        log.warning("Kinema: %s is consistency-distilled but the model has no LCM sampling; put core's Model "
                    "Sampling Discrete (lcm) before it and sample with lcm + sgm_uniform", source)
    if wanted is None:
        return None
    if isinstance(current, CONST):
        raise ScheduleError(
            f"{source} needs a DDPM noise schedule, but the model samples by flow matching ({described}); "
            f"remove that Model Sampling patch or set the noise schedule to '{BetaSchedule.MODEL.value}'.")
    if not isinstance(current, ModelSamplingDiscrete):
        log.warning("Kinema: the model uses %s sampling, which has no betas; keeping its own noise schedule "
                    "instead of %s's", described, source)
        return None
    sampling = _rebuilt(current, model.model.model_config, wanted)
    if sampling is None or abs(_top_timestep(sampling) - _top_timestep(current)) > 1.0:
        log.warning("Kinema: cannot rebuild the model's %s sampling over %s's betas; keeping its own noise "
                    "schedule", described, source)
        return None
    return sampling
