"""Decode Frames: the clip's latents to images, a few frames at a time."""
from __future__ import annotations

from comfy_api.latest import io

from ..comfy_glue.decode import decode_frames
from .motion_module import CATEGORY


class DecodeFrames(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaDecodeFrames",
            display_name="Decode Frames",
            category=CATEGORY,
            description="VAE Decode for animations: decodes a few frames at a time, so decoding a long clip "
                        "never needs more memory than sampling it did. Same images as VAE Decode.",
            inputs=[
                io.Latent.Input("samples", tooltip="The animation's latents (frames = batch size)."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE."),
                io.Int.Input("frames_per_batch", default=4, min=1, max=4096,
                             tooltip="Frames decoded together. Fewer: lower peak memory; more: a little faster "
                                     "on a large GPU."),
            ],
            outputs=[io.Image.Output(display_name="IMAGE")],
        )

    @classmethod
    def execute(cls, samples, vae, frames_per_batch: int) -> io.NodeOutput:
        return io.NodeOutput(decode_frames(vae, samples["samples"], frames_per_batch))
