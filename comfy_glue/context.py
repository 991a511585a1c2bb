"""Sliding context windows on core ComfyUI's machinery (``comfy/context_windows.py``).

The handler is a subclass of core's IndexListContextHandler fed with our pure schedules and fuse
weights from ``sampling/``; it is installed as ``model_options["context_handler"]`` with core's
prepare-sampling wrapper, so ComfyUI's memory estimate sees one window, not the whole clip.

Everything in a cond with one entry per frame follows the windows through ``per_frame`` (core leaves
control hints unsliced on both hosts, and per-frame model conds on 0.3.64): each window's ControlNets see
that window's hint frames. An OUTER_SAMPLE wrapper gives each sampling run its own handler copy holding
the per-window control copies, dropped when the run ends.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import comfy.context_windows as cw
import comfy.patcher_extension as pe
import torch

from ..sampling.context import ContextOptions, fuse_weights, windows
from .per_frame import WindowControls, window_cond

KEY = "kinema_context"


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
        self.controls: WindowControls | None = None  # set on the per-run copy (``for_run``)

    def for_run(self) -> KinemaContextHandler:
        """A copy for one sampling run, holding that run's per-window control copies."""
        run = copy.copy(self)
        run.controls = WindowControls()
        return run

    def _schedule(self, num_frames: int, handler, model_options) -> list[list[int]]:
        return windows(num_frames, self.options, self._step)

    def _weights(self, length: int, full_length: int = 0, idxs=None, **kwargs) -> list[float]:
        return fuse_weights(self.options.fuse, idxs, full_length, self.options.overlap).tolist()

    def set_step(self, timestep: torch.Tensor, model_options: dict):
        # 0.3.64 compares every frame's timestep with the sigmas (fails unless frames == steps + 1)
        return super().set_step(timestep[:1], model_options)

    def execute(self, calc_cond_batch, model, conds, x_in, timestep, model_options):
        if self.controls is not None:
            self.controls.next_call()
        return super().execute(calc_cond_batch, model, conds, x_in, timestep, model_options)

    def get_resized_cond(self, cond_in, x_in, window, device=None):
        """Core's resize, then every per-frame model cond and control hint cut to the window's frames."""
        resized = super().get_resized_cond(cond_in, x_in, window, device)
        if resized is None:
            return None
        controls = self.controls if self.controls is not None else WindowControls()
        frames = x_in.size(self.dim)
        return [window_cond(c, window.index_list, frames, controls, device) for c in resized]


def _run_handler_wrapper(executor, *args, **kwargs):
    """OUTER_SAMPLE: this run samples with its own handler copy; its window controls go when it ends."""
    options = executor.class_obj.model_options  # this run's clone of the model options
    handler = options.get("context_handler")
    if not isinstance(handler, KinemaContextHandler):
        return executor(*args, **kwargs)
    options["context_handler"] = run = handler.for_run()
    try:
        return executor(*args, **kwargs)
    finally:
        run.controls.clear()
        options["context_handler"] = handler


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
    m.remove_wrappers_with_key(pe.WrappersMP.OUTER_SAMPLE, KEY)
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, KEY, _run_handler_wrapper)
    return m
