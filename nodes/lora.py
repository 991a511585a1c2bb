"""Apply MotionLoRA: a camera move (zoom, pan, roll …) trained on top of a motion module."""
from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from ..comfy_glue.loading import LORA_FOLDER
from ..comfy_glue.lora import apply_by_name, check_window
from .motion_module import CATEGORY
from .types import MotionModule


class ApplyMotionLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaApplyMotionLoRA",
            display_name="Apply MotionLoRA",
            category=CATEGORY,
            description="Adds a MotionLoRA (official v2_lora_*.ckpt, diffusers/PEFT or kohya files) to a motion "
                        "module; chain several to combine moves. The loaded module itself is never changed.",
            inputs=[
                MotionModule.Input("motion_module", tooltip="From Load Motion Module or another Apply MotionLoRA."),
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list(LORA_FOLDER),
                               tooltip="A MotionLoRA file from models/animatediff_motion_lora."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="How strongly the move is applied; 0 = off, negative reverses it "
                                       "(zoom in becomes zoom out)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the run the LoRA switches on (0 = first step), measured as "
                                       "core's ControlNet and conditioning ranges are."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where it switches off again (1 = last step); set the move early and "
                                       "let the module finish on its own."),
            ],
            outputs=[MotionModule.Output(display_name="MOTION_MODULE")],
        )

    @classmethod
    def validate_inputs(cls, start_percent: float = 0.0, end_percent: float = 1.0, **kwargs) -> bool | str:
        return check_window(start_percent, end_percent) or True

    @classmethod
    def execute(cls, motion_module, lora_name: str, strength: float, start_percent: float,
                end_percent: float) -> io.NodeOutput:
        return io.NodeOutput(apply_by_name(motion_module, lora_name, strength, start_percent, end_percent))
