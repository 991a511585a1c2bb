"""Load SparseCtrl and Apply SparseCtrl (AnimateDiff v3's sparse keyframe control; image-to-video with RGB)."""
from __future__ import annotations

import folder_paths
from comfy_api.latest import io, ui

from ..comfy_glue.sparsectrl import FOLDER, apply_sparsectrl, load_by_name
from .types import SparseCtrl

CATEGORY = "animatediff"


class LoadSparseCtrl(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaLoadSparseCtrl",
            display_name="Load SparseCtrl",
            category=CATEGORY,
            description="Loads an AnimateDiff v3 SparseCtrl encoder (v3_sd15_sparsectrl_rgb.ckpt, "
                        "v3_sd15_sparsectrl_scribble.ckpt, or a diffusers SparseControlNetModel) and shows "
                        "what was detected.",
            inputs=[io.Combo.Input("sparsectrl_name", options=folder_paths.get_filename_list(FOLDER),
                                   tooltip="A SparseCtrl file from models/controlnet.")],
            outputs=[SparseCtrl.Output(display_name="SPARSE_CTRL")],
        )

    @classmethod
    def execute(cls, sparsectrl_name: str) -> io.NodeOutput:
        sparse = load_by_name(sparsectrl_name)
        return io.NodeOutput(sparse, ui=ui.PreviewText(sparse.spec.describe()))


class ApplySparseCtrl(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaApplySparseCtrl",
            display_name="Apply SparseCtrl",
            category=CATEGORY,
            description="Steers chosen frames of the clip with keyframe images (RGB pictures or scribbles); "
                        "frames without a keyframe get a zero condition and mask 0. Chains with other "
                        "ControlNets, and follows Kinema's context windows.",
            inputs=[
                io.Conditioning.Input("positive", tooltip="The prompt conditioning to steer."),
                io.Conditioning.Input("negative", tooltip="The negative conditioning (steered too, as core's "
                                                          "Apply ControlNet does)."),
                SparseCtrl.Input("sparse_ctrl", tooltip="From Load SparseCtrl."),
                io.Image.Input("images", tooltip="The keyframe images: one for all listed frames, or one per "
                                                 "listed frame in order. Resized to the latent size x 8."),
                io.String.Input("frame_indices", default="0",
                                tooltip="Which frames the images belong to: '0', '0,15', '0,-1' (last frame), "
                                        "'every 4' or 'every 4 from 2'."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="How strongly the keyframes steer (0 = off, exactly as without it)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Fraction of the sampling at which the control starts."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Fraction of the sampling at which the control ends."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Needed for RGB SparseCtrl, which takes its keyframes as VAE latents."),
            ],
            outputs=[io.Conditioning.Output("positive_out", display_name="positive"),
                     io.Conditioning.Output("negative_out", display_name="negative")],
        )

    @classmethod
    def execute(cls, positive, negative, sparse_ctrl, images, frame_indices: str, strength: float,
                start_percent: float, end_percent: float, vae=None) -> io.NodeOutput:
        pos, neg = apply_sparsectrl(positive, negative, sparse_ctrl, images, frame_indices, strength,
                                    start_percent, end_percent, vae)
        return io.NodeOutput(pos, neg)
