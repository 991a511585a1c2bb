"""Sliding context windows on core ComfyUI's machinery (``comfy/context_windows.py``).

The handler is a subclass of core's IndexListContextHandler fed with our pure schedules and fuse
weights from ``sampling/``; it is installed as ``model_options["context_handler"]`` with core's
prepare-sampling wrapper, so ComfyUI's memory estimate sees one window, not the whole clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import comfy.context_windows as cw
import torch

from ..sampling.context import ContextOptions, fuse_weights, windows


@dataclass(frozen=True)
class ContextPlan:
    """The CONTEXT_OPTIONS socket value."""

    options: ContextOptions
    views: bool = False  # True: UNet on all frames, windows only in the motion module's attention
    freenoise: bool = False  # True: FreeNoise-shuffle the initial noise to these windows, whichever sampler runs


class KinemaContextHandler(cw.IndexListContextHandler):
    """Core's window handler, with our schedules and fuse weights and a version-proof step lookup."""

    def __init__(self, options: ContextOptions):
        schedule = cw.ContextSchedule(options.schedule.value, self._schedule)
        fuse = cw.ContextFuseMethod(options.fuse.value, self._weights)
        super().__init__(context_schedule=schedule, fuse_method=fuse, context_length=options.length,
                         context_overlap=options.overlap, context_stride=options.stride,
                         closed_loop=options.closed_loop, dim=0)
        self.options = options

    def _schedule(self, num_frames: int, handler, model_options) -> list[list[int]]:
        return windows(num_frames, self.options, self._step)

    def _weights(self, length: int, full_length: int = 0, idxs=None, **kwargs) -> list[float]:
        return fuse_weights(self.options.fuse, idxs, full_length, self.options.overlap).tolist()

    def set_step(self, timestep: torch.Tensor, model_options: dict):
        # 0.3.64 compares every frame's timestep with the sigmas (fails unless frames == steps + 1)
        return super().set_step(timestep[:1], model_options)


def apply_context(model, plan: ContextPlan, spec):
    """Validate ``plan`` against the motion module and install it on a clone of ``model``."""
    plan.options.validate(spec.pe_length)
    m = model.clone()
    from .attach import with_freenoise, with_views
    if plan.freenoise:
        with_freenoise(m, plan.options)
    if plan.views:
        return with_views(m, plan.options)
    m.model_options["context_handler"] = KinemaContextHandler(plan.options)
    cw.create_prepare_sampling_wrapper(m)
    return m
