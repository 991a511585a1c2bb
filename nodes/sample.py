"""Sample Animation: the one node between a checkpoint and an animated latent."""
from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..comfy_glue.sample import FREENOISE_NEEDS_CONTEXT, sample_animation
from .motion_module import CATEGORY, beta_schedule_input
from .types import ContextOptions, FreeInit, MotionModule

NOISE_TYPES = {"default": False, "FreeNoise": True}
UNLINKED = object()  # validate_inputs: ComfyUI passes a linked input's value as None and omits an unlinked one


class SampleAnimation(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaSampleAnimation",
            display_name="Sample Animation",
            category=CATEGORY,
            description="Denoises the latent batch as one animation (frames = batch size) with the motion "
                        "module attached to a clone of the model, using ComfyUI's own samplers.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.5 or SDXL model (any finetune, LoRAs applied)."),
                MotionModule.Input("motion_module", tooltip="From Load Motion Module or Apply MotionLoRA."),
                io.Conditioning.Input("positive", tooltip="What every frame should show."),
                io.Conditioning.Input("negative", tooltip="What no frame should show."),
                io.Latent.Input("latent_image", tooltip="The frames to denoise; the batch size is the "
                                                        "number of frames."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the initial noise."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Denoising steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS,
                               tooltip="Any ComfyUI sampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS,
                               tooltip="Any ComfyUI scheduler."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="How much of the input latent to replace (1 = text-to-video)."),
                io.Float.Input("motion_scale", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="Strength of the motion module's contribution (1 = as trained)."),
                beta_schedule_input(),
                io.Combo.Input("noise_type", options=list(NOISE_TYPES), default="default",
                               tooltip="FreeNoise (Qiu et al. 2023) repeats and shuffles the first "
                                       "window's noise across later windows, which reduces drift between "
                                       "windows; it needs context options (or set freenoise there)."),
                ContextOptions.Input("context_options", optional=True,
                                     tooltip="From Context Scheduler: needed for more frames than the "
                                             "motion module sees at once."),
                FreeInit.Input("free_init", optional=True,
                               tooltip="From FreeInit: sample several times, re-initialising the noise's low "
                                       "frequencies from the previous result (more consistent clips)."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT")],
        )

    @classmethod
    def validate_inputs(cls, noise_type: str, context_options=UNLINKED) -> bool | str:
        if noise_type not in NOISE_TYPES:  # naming it here turns off ComfyUI's own combo check for it
            return f"noise_type must be one of {', '.join(NOISE_TYPES)}, but got {noise_type!r}"
        if NOISE_TYPES[noise_type] and context_options is UNLINKED:
            return FREENOISE_NEEDS_CONTEXT
        return True

    @classmethod
    def execute(cls, model, motion_module, positive, negative, latent_image, seed: int, steps: int,
                cfg: float, sampler_name: str, scheduler: str, denoise: float, motion_scale: float,
                beta_schedule: str, noise_type: str, context_options=None, free_init=None) -> io.NodeOutput:
        out = sample_animation(model, motion_module, positive, negative, latent_image, seed, steps, cfg,
                               sampler_name, scheduler, denoise, context=context_options,
                               beta_schedule=beta_schedule, motion_scale=motion_scale,
                               use_freenoise=NOISE_TYPES[noise_type], free_init=free_init)
        return io.NodeOutput(out)
