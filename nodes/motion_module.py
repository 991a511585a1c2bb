"""Load Motion Module and Apply Motion Module."""
from __future__ import annotations

import folder_paths
from comfy_api.latest import io, ui

from ..comfy_glue.attach import attach
from ..comfy_glue.freeinit import with_freeinit
from ..comfy_glue.loading import MODELS_FOLDER, load_by_name
from ..comfy_glue.schedule import BetaSchedule
from .types import ContextOptions, FreeInit, MotionModule

CATEGORY = "animatediff"


def beta_schedule_input() -> io.Combo.Input:
    """The noise-schedule override shared by Apply Motion Module and Sample Animation."""
    return io.Combo.Input(
        "beta_schedule", options=[b.value for b in BetaSchedule], default=BetaSchedule.AUTO.value,
        tooltip="Noise schedule: 'auto' uses the one the motion module was trained with (AnimateDiff's "
                "linear betas); a wrong schedule gives grey, blurry frames.",
    )


class LoadMotionModule(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaLoadMotionModule",
            display_name="Load Motion Module",
            category=CATEGORY,
            description="Loads an AnimateDiff motion module (v1/v2/v3, SDXL, AnimateLCM, Lightning, "
                        "HotshotXL, diffusers MotionAdapter) and shows what was detected.",
            inputs=[io.Combo.Input("model_name", options=folder_paths.get_filename_list(MODELS_FOLDER),
                                   tooltip="A motion-module file from models/animatediff_models."),
                    io.Boolean.Input("compile", default=False, optional=True,
                                     tooltip="torch.compile the motion module: the first run of each new size "
                                             "compiles (tens of seconds), later steps are faster. Needs a C++ "
                                             "compiler; without one it runs uncompiled and logs why.")],
            outputs=[MotionModule.Output(display_name="MOTION_MODULE")],
        )

    @classmethod
    def execute(cls, model_name: str, compile: bool = False) -> io.NodeOutput:
        motion = load_by_name(model_name, compile)
        return io.NodeOutput(motion, ui=ui.PreviewText(motion.spec.describe()))


class ApplyMotionModule(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaApplyMotionModule",
            display_name="Apply Motion Module",
            category=CATEGORY,
            description="Returns a clone of the model that animates its latent batch as one clip, so the "
                        "stock KSampler, KSamplerAdvanced and SamplerCustomAdvanced animate too.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.5 or SDXL model; it is cloned, never changed."),
                MotionModule.Input("motion_module", tooltip="From Load Motion Module or Apply MotionLoRA."),
                io.Float.Input("motion_scale", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="Strength of the motion module's contribution (1 = as trained)."),
                beta_schedule_input(),
                ContextOptions.Input("context_options", optional=True,
                                     tooltip="From Context Scheduler: sample clips longer than the "
                                             "module's limit in overlapping windows."),
                FreeInit.Input("free_init", optional=True,
                               tooltip="From FreeInit: every sampler node that runs this model samples several "
                                       "times, re-initialising the noise's low frequencies each time."),
            ],
            outputs=[io.Model.Output(display_name="MODEL")],
        )

    @classmethod
    def execute(cls, model, motion_module, motion_scale: float, beta_schedule: str,
                context_options=None, free_init=None) -> io.NodeOutput:
        animated = attach(model, motion_module, scale=motion_scale, beta_schedule=beta_schedule)
        if context_options is not None:
            from ..comfy_glue.context import apply_context
            animated = apply_context(animated, context_options, motion_module.spec)
        if free_init is not None:  # last: FreeInit runs inside FreeNoise's wrapper, on the shuffled noise
            animated = with_freeinit(animated, free_init)
        return io.NodeOutput(animated)
