"""Apply a MotionLoRA to a motion module's own ModelPatcher, never to the shared weights.

Whole-run LoRAs are ordinary weight patches (``add_patches``) on a clone of the module's patcher: ComfyUI applies
them when it loads the module with the UNet and restores the weights from its backup when another clone loads.
A LoRA limited to a start/end percent window is a weight wrapper (``add_weight_wrapper``, the mechanism core's
training node uses): the module's layers are ``comfy.ops.manual_cast`` ops, whose ``cast_bias_weight`` runs
every wrapper on the cast weight at each call. The wrapper adds the LoRA only while the current sigma lies in
the window, using core's percent mapping (``model_sampling.percent_to_sigma``, as ControlNet and hook keyframes
do); the sigma arrives per call through ``motion_step``, which the code running the module enters around it.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import comfy.lora
import folder_paths
import torch
from torch import Tensor

from ..motion_modules.io import read_state_dict
from ..motion_modules.lora import MotionLoRAError, plan_motion_lora, skipped_summary
from .loading import LORA_FOLDER, LoadedMotionModule

log = logging.getLogger(__name__)


class MotionLoRAScheduleError(MotionLoRAError):
    """A windowed MotionLoRA ran where no sampling step was given, or was given an impossible window."""


@dataclass(frozen=True)
class Step:
    """Where sampling is: the sigma of the current model call and the model_sampling that maps percents."""

    sigma: float
    model_sampling: object


_STEP: ContextVar[Step | None] = ContextVar("kinema_motion_step", default=None)


@contextlib.contextmanager
def motion_step(sigma: Tensor | float, model_sampling) -> Iterator[None]:
    """Within this block, windowed MotionLoRAs see ``sigma`` (e.g. ``transformer_options["sigmas"]``)."""
    value = float(sigma.reshape(-1)[0]) if isinstance(sigma, Tensor) else float(sigma)
    token = _STEP.set(Step(value, model_sampling))
    try:
        yield
    finally:
        _STEP.reset(token)


@dataclass(frozen=True)
class Window:
    """Full strength while ``start_percent <= percent <= end_percent`` of the run, none outside (core's rule)."""

    start_percent: float
    end_percent: float

    def covers_everything(self) -> bool:
        return self.start_percent <= 0.0 and self.end_percent >= 1.0

    def active(self, step: Step) -> bool:
        """Whether ``step`` falls inside, compared in sigma space as core's ControlNet timestep range is."""
        start = step.model_sampling.percent_to_sigma(self.start_percent)
        end = step.model_sampling.percent_to_sigma(self.end_percent)
        return end <= step.sigma <= start


class WindowedPatch:
    """A weight function: the layer's LoRA patches while the current step is inside ``window``, else the weight."""

    def __init__(self, key: str, patches: list, window: Window, name: str):
        self.key, self.patches, self.window, self.name = key, patches, window, name

    def __call__(self, weight: Tensor) -> Tensor:
        step = _STEP.get()
        if step is None:
            raise MotionLoRAScheduleError(
                f"{self.name}: expected the current sampling step for its start/end percent window, found none "
                f"(the motion module ran outside motion_step); set start 0 and end 1 to apply it to every step.")
        if not self.window.active(step):
            return weight
        patched = comfy.lora.calculate_weight(self.patches, weight.to(torch.float32, copy=True), self.key)
        return patched.to(weight.dtype)


def check_window(start_percent: float, end_percent: float) -> str | None:
    """A one-sentence problem with a start/end percent pair, or None."""
    if not (0.0 <= start_percent <= 1.0 and 0.0 <= end_percent <= 1.0):
        return f"start_percent and end_percent must lie in [0, 1], but got {start_percent} and {end_percent}."
    if start_percent > end_percent:
        return f"start_percent must not exceed end_percent, but got {start_percent} > {end_percent}."
    return None


def load_patches(path: str, motion: LoadedMotionModule, name: str) -> dict:
    """Read, check and map a MotionLoRA file; ComfyUI's LoRA adapters keyed by the module's weight names."""
    state_dict = read_state_dict(path)
    plan = plan_motion_lora(state_dict, motion.spec, source=name, target=motion.name)
    if plan.skipped:
        log.warning("%s: %s", name, skipped_summary(plan, len(state_dict), motion.name))
    log.info("%s: %s MotionLoRA, rank %d, %d layers of %s", name, plan.format, plan.rank, len(plan.key_map),
             motion.name)
    return comfy.lora.load_lora(state_dict, dict(plan.key_map), log_missing=False)


def _add_windowed(patcher, patches: dict, strength: float, window: Window, name: str) -> list[str]:
    """One WindowedPatch per layer, as weight wrappers on ``patcher``; returns the keys it patches."""
    state = patcher.model.state_dict()
    added = []
    for key, adapter in patches.items():
        if key in state:
            patcher.add_weight_wrapper(key, WindowedPatch(key, [(strength, adapter, 1.0, None, None)], window, name))
            added.append(key)
    return added


def apply_motion_lora(motion: LoadedMotionModule, path: str, name: str, strength: float,
                      start_percent: float = 0.0, end_percent: float = 1.0) -> LoadedMotionModule:
    """``motion`` with a MotionLoRA on a clone of its patcher; ``motion`` and its weights stay untouched."""
    if problem := check_window(start_percent, end_percent):
        raise MotionLoRAScheduleError(f"{name}: {problem}")
    patches = load_patches(path, motion, name)
    patcher = motion.patcher.clone()
    if strength != 0.0:
        window = Window(start_percent, end_percent)
        if window.covers_everything():
            added = patcher.add_patches(patches, strength)
        else:
            added = _add_windowed(patcher, patches, strength, window, name)
        if len(added) != len(patches):
            raise MotionLoRAError(f"{name}: expected every mapped layer in {motion.name}, found "
                                  f"{len(added)} of {len(patches)}.")
    return motion.with_patcher(patcher, (name, strength))


def apply_by_name(motion: LoadedMotionModule, lora_name: str, strength: float, start_percent: float = 0.0,
                  end_percent: float = 1.0) -> LoadedMotionModule:
    """Apply a file listed in the ``animatediff_motion_lora`` folder."""
    path = folder_paths.get_full_path_or_raise(LORA_FOLDER, lora_name)
    return apply_motion_lora(motion, path, lora_name, strength, start_percent, end_percent)
