"""Keyframe Colour Match: removes the colour flash at conditioned keyframes, and shows the drift before/after."""
from __future__ import annotations

import math

from comfy_api.latest import io, ui

from ..sampling.colour import Drift, keyframe_drift, match_colour
from ..sampling.keyframes import parse_keyframes
from .motion_module import CATEGORY


def drift_text(keyframes: list[int], before: Drift, after: Drift) -> str:
    """'keyframe colour drift … 12.3 -> 0.8 (frame 0: 12.3 -> 0.8, …)' for the node's UI."""
    def fmt(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:.1f}"
    per = ", ".join(f"frame {k}: {fmt(b)} -> {fmt(a)}"
                    for k, b, a in zip(keyframes, before.per_keyframe, after.per_keyframe, strict=True))
    return (f"keyframe colour drift (8-bit levels, mean RGB vs non-keyframes within ±2 frames): "
            f"{fmt(before.overall)} -> {fmt(after.overall)} ({per})")


class KeyframeColourMatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaKeyframeColourMatch",
            display_name="Keyframe Colour Match",
            category=CATEGORY,
            description="Removes the colour shift/flash at SparseCtrl keyframes: frames near each keyframe get "
                        "their per-channel mean and spread pulled toward the keyframe's colours, fading to "
                        "nothing over 'fade_frames'. Frames farther away are returned unchanged.",
            inputs=[
                io.Image.Input("images", tooltip="The decoded animation (frames = batch size)."),
                io.String.Input("keyframes", default="0",
                                tooltip="The conditioned frames, as given to Apply SparseCtrl: '0', '0,15', "
                                        "'0,-1' or 'every 4'."),
                io.Int.Input("fade_frames", default=8, min=0, max=256,
                             tooltip="How many frames on each side of a keyframe are pulled toward it, less "
                                     "with distance (0: the keyframe alone)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="1: full match at the keyframe; 0: images returned unchanged."),
                io.Image.Input("reference", optional=True,
                               tooltip="The keyframe images (one, or one per keyframe): colours are matched to "
                                       "them. Without it, to the keyframes' own output frames."),
            ],
            outputs=[io.Image.Output(display_name="IMAGE")],
        )

    @classmethod
    def execute(cls, images, keyframes: str, fade_frames: int, strength: float, reference=None) -> io.NodeOutput:
        keys = parse_keyframes(keyframes, images.shape[0], "keyframes")
        out = match_colour(images, keys, fade_frames, strength, reference)
        text = drift_text(keys, keyframe_drift(images, keys), keyframe_drift(out, keys))
        return io.NodeOutput(out, ui=ui.PreviewText(text))
