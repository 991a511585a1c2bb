"""Context Scheduler: animations longer than the motion module's limit, in overlapping windows."""
from __future__ import annotations

from comfy_api.latest import io

from ..comfy_glue.context import ContextPlan
from ..sampling.context import ContextOptions, ContextOptionsError, ContextSchedule, FuseMethod
from .motion_module import CATEGORY
from .types import ContextOptions as ContextOptionsSocket


class ContextScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaContextScheduler",
            display_name="Context Scheduler",
            category=CATEGORY,
            description="Samples long clips as overlapping windows of frames fused at every step, at the "
                        "memory cost of one window.",
            inputs=[
                io.Int.Input("context_length", default=16, min=1, max=128,
                             tooltip="Frames per window; at most the motion module's limit (16 is best "
                                     "for most modules)."),
                io.Int.Input("context_overlap", default=4, min=0, max=127,
                             tooltip="Frames shared by neighbouring windows; must be below the length."),
                io.Combo.Input("context_schedule", options=[s.value for s in ContextSchedule],
                               default=ContextSchedule.LOOPED_UNIFORM.value,
                               tooltip="standard_static: fixed windows; standard_uniform: windows shift "
                                       "each step so seams move; looped_uniform: also wraps around for "
                                       "seamless loops; batched: disjoint windows."),
                io.Combo.Input("fuse_method", options=[f.value for f in FuseMethod],
                               default=FuseMethod.PYRAMID.value,
                               tooltip="How overlapping windows are blended per frame."),
                io.Int.Input("context_stride", default=1, min=1, max=8,
                             tooltip="Uniform schedules also add windows of every 2nd, 4th, … frame up to "
                                     "2^(stride-1); 1 = contiguous windows only."),
                io.Boolean.Input("closed_loop", default=False,
                                 tooltip="looped_uniform only: make the last frame lead into the first."),
                io.Boolean.Input("views", default=False,
                                 tooltip="Run the UNet on all frames and window only the motion module "
                                         "(faster when every frame fits in memory at once)."),
                io.Boolean.Input("freenoise", default=False, optional=True,
                                 tooltip="FreeNoise (Qiu et al. 2023): later windows reuse the first window's "
                                         "noise, shuffled, which reduces drift between windows. Works with "
                                         "Apply Motion Module and any sampler node, and with Sample Animation."),
            ],
            outputs=[ContextOptionsSocket.Output(display_name="CONTEXT_OPTIONS")],
        )

    @classmethod
    def validate_inputs(cls, context_length: int, context_overlap: int, context_stride: int,
                        **kwargs) -> bool | str:
        try:
            ContextOptions(length=context_length, overlap=context_overlap, stride=context_stride).validate()
        except ContextOptionsError as error:
            return str(error)
        return True

    @classmethod
    def execute(cls, context_length: int, context_overlap: int, context_schedule: str, fuse_method: str,
                context_stride: int, closed_loop: bool, views: bool, freenoise: bool = False) -> io.NodeOutput:
        options = ContextOptions(context_length, context_overlap, ContextSchedule(context_schedule),
                                 FuseMethod(fuse_method), context_stride, closed_loop)
        options.validate()
        return io.NodeOutput(ContextPlan(options, views, freenoise))
