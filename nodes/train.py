"""Train MotionLoRA: a camera move learnt from your own clip (or clips), saved as a MotionLoRA file."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..comfy_glue.train import TrainSettings, clip_latents, train_motion_lora
from .motion_module import CATEGORY, beta_schedule_input
from .types import LossMap, MotionModule


class TrainMotionLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaTrainMotionLoRA",
            display_name="Train MotionLoRA",
            category=CATEGORY,
            description="Trains low-rank updates of the motion module's temporal attention (q, k, v, out) on one "
                        "clip or several of the same move, image model and motion module frozen (AnimateDiff's "
                        "MotionLoRA stage), saves them to models/animatediff_motion_lora and returns the module with "
                        "them applied.",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The SD1.5/SDXL model to train on top of (frozen, never changed)."),
                MotionModule.Input("motion_module", tooltip="The motion module to adapt (frozen, never changed)."),
                io.Conditioning.Input("positive", tooltip="A prompt describing the clip."),
                io.Image.Input("images", optional=True, tooltip="The clip as images (frames = batch); needs vae."),
                io.Vae.Input("vae", optional=True, tooltip="Encodes images; not needed with a latent."),
                io.Latent.Input("latent", optional=True, tooltip="The clip as latents instead of images."),
                io.Int.Input("rank", default=8, min=1, max=256, tooltip="LoRA rank (official MotionLoRAs: 4-8)."),
                io.Int.Input("steps", default=200, min=1, max=100000, tooltip="Optimizer steps."),
                io.Float.Input("learning_rate", default=1e-4, min=1e-7, max=1.0, step=1e-5,
                               tooltip="AdamW learning rate."),
                io.Int.Input("noise_levels", default=1, min=1, max=64,
                             tooltip="Noise levels per step: the clip is noised this many times (one random level "
                                     "each), run one after another, and the losses averaged."),
                io.Int.Input("clip_frames", default=0, min=0, max=4096,
                             tooltip="Frames per clip when the batch holds several clips of the same move, one after "
                                     "another (0: the whole batch is one clip). Each noise level takes the next clip "
                                     "of a shuffled round."),
                io.Boolean.Input("learn_reverse", default=False,
                                 tooltip="Also learn the move backwards at strength -1: every second noise level "
                                         "trains the LoRA at -1 on the clip played in reverse, so one file gives "
                                         "zoom in and out, pan left and right."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="Seeds noise, levels, init."),
                io.Boolean.Input("gradient_checkpointing", default=False,
                                 tooltip="Recompute UNet layers in the backward pass: much less memory, ~30% slower."),
                beta_schedule_input(),
                io.String.Input("filename_prefix", default="kinema_motion_lora",
                                tooltip="File name in models/animatediff_motion_lora (a counter is added)."),
            ],
            outputs=[MotionModule.Output("trained_motion_module", display_name="MOTION_MODULE"),
                     LossMap.Output("loss_map", display_name="loss_map")],
        )

    @classmethod
    def execute(cls, model, motion_module, positive, rank: int, steps: int, learning_rate: float,
                noise_levels: int, clip_frames: int, learn_reverse: bool, seed: int, gradient_checkpointing: bool, beta_schedule: str,
                filename_prefix: str, images=None, vae=None, latent=None) -> io.NodeOutput:
        x0 = clip_latents(latent, images, vae)
        settings = TrainSettings(rank, steps, learning_rate, noise_levels, seed, gradient_checkpointing,
                                 beta_schedule, clip_frames, learn_reverse)
        result = train_motion_lora(model, motion_module, positive, x0, settings, filename_prefix)
        text = f"{result.lora_name}: loss {result.losses[0]:.4g} -> {result.losses[-1]:.4g} in {steps} steps"
        return io.NodeOutput(result.motion, {"loss": result.losses}, ui=ui.PreviewText(text))
