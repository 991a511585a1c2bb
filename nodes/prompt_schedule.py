"""Prompt Schedule: prompts that change along the clip ("0: a bud" / "16: a flower in bloom")."""
from __future__ import annotations

from comfy_api.latest import io

from ..comfy_glue.prompt_schedule import schedule_conditioning
from ..sampling.prompt_schedule import Interpolation, PromptScheduleError, parse_schedule
from .motion_module import CATEGORY

UNLINKED = object()  # validate_inputs: ComfyUI passes a linked input's value as None and omits an unlinked one
ANY_LENGTH = 1 << 30  # with a LATENT linked the frame count is known only at run time: check the rest now


class PromptSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaPromptSchedule",
            display_name="Prompt Schedule",
            category=CATEGORY,
            description="A prompt per keyframe ('16: a flower in bloom'): every frame gets its own conditioning, "
                        "held or blended between keyframes. Use it as positive or negative of Sample Animation "
                        "or any sampler after Apply Motion Module.",
            inputs=[
                io.Clip.Input("clip", tooltip="The checkpoint's CLIP (SD1.5 or SDXL)."),
                io.String.Input("text", multiline=True, default="0: a bud\n16: a flower in bloom\n32: a wilted flower",
                                tooltip="One keyframe per line, 'FRAME: prompt', frames increasing from 0; blank "
                                        "lines and lines starting with # are skipped. Weights such as (word:1.2) "
                                        "work as in CLIP Text Encode."),
                io.String.Input("pre_text", default="", tooltip="Put before every keyframe's prompt (joined "
                                                                "with ', ')."),
                io.String.Input("post_text", default="", tooltip="Put after every keyframe's prompt (joined "
                                                                 "with ', ')."),
                io.Int.Input("frames", default=48, min=1, max=4096,
                             tooltip="Frames in the clip; a linked latent's batch size overrides it."),
                io.Combo.Input("interpolation", options=[i.value for i in Interpolation],
                               default=Interpolation.LINEAR.value,
                               tooltip="linear: frames between two keyframes blend their encoded prompts; "
                                       "hold: each frame keeps the last keyframe's prompt until the next."),
                io.Latent.Input("latent", optional=True,
                                tooltip="The clip's latent: its batch size (frames) replaces the frames value."),
            ],
            outputs=[io.Conditioning.Output(display_name="CONDITIONING")],
        )

    @classmethod
    def validate_inputs(cls, text: str, frames: int, latent=UNLINKED) -> bool | str:
        if text is None:  # linked: checked when it runs
            return True
        try:
            parse_schedule(text, frames if latent is UNLINKED and frames is not None else ANY_LENGTH)
        except PromptScheduleError as error:
            return str(error)
        return True

    @classmethod
    def execute(cls, clip, text: str, pre_text: str, post_text: str, frames: int, interpolation: str,
                latent=None) -> io.NodeOutput:
        if latent is not None:
            frames = latent["samples"].shape[0]
        return io.NodeOutput(schedule_conditioning(clip, text, frames, interpolation, pre_text, post_text))
