"""The noise schedule a motion module was trained with, applied as a model_sampling object patch."""
from __future__ import annotations

import logging
from enum import Enum

from comfy.model_sampling import ModelSamplingDiscrete

log = logging.getLogger(__name__)


class BetaSchedule(str, Enum):
    """User choice of noise schedule; AUTO takes the one the motion module was trained with."""

    AUTO = "auto (motion module's)"
    MODEL = "model's own"
    SQRT_LINEAR = "sqrt_linear (AnimateDiff)"
    LINEAR = "linear (SD default)"


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


def motion_model_sampling(model, spec, choice: str):
    """A new model_sampling object with the schedule for ``spec``, or None to leave the model's."""
    wanted = schedule_for(spec, choice)
    current = model.get_model_object("model_sampling")
    if wanted is None:
        return None
    if not isinstance(current, ModelSamplingDiscrete):
        log.warning("model uses %s sampling; keeping its own noise schedule", type(current).__name__)
        return None
    name, start, end = wanted
    sampling = type(current)(model.model.model_config)
    sampling._register_schedule(given_betas=None, beta_schedule=name, timesteps=current.num_timesteps,
                                linear_start=start, linear_end=end, zsnr=getattr(current, "zsnr", False))
    return sampling
