"""Keyframe Colour Match in a real ComfyUI: a red flash on frame 0 of a grey clip, through a real server graph."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

NODE = "KinemaKeyframeColourMatch"


def flash_prompt(fade: int) -> dict:
    """Core EmptyImage red (1 frame) + grey (7 frames) -> ImageBatch -> Keyframe Colour Match on '0' -> SaveImage."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0xC04040}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 7, "color": 0x808080}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": NODE, "inputs": {"images": ["3", 0], "keyframes": "0", "fade_frames": fade,
                                             "strength": 1.0}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "kinema_colour"}},
    }


def test_node_runs_in_a_server_graph(comfy_server):
    """The frames near the keyframe turn toward its red, frames past the fade stay grey, and the UI shows the drop."""
    entry = comfy_server.run(flash_prompt(fade=3), timeout=120)
    text = " ".join(entry["outputs"]["4"]["text"])
    assert "keyframe colour drift" in text and "frame 0:" in text
    before, after = (float(v) for v in text.split(": ", 1)[1].split(" (")[0].split(" -> "))
    ramp = 1 - (0.5 * (1 + np.cos(np.pi / 4)) + 0.5) / 2  # flat frames: 1 - mean(w(1), w(2)) of the jump is left
    assert before > 90 and after == pytest.approx(before * ramp, abs=0.2)
    frames = [np.asarray(Image.open(p).convert("RGB"), dtype=np.int32)[0, 0]
              for p in sorted(comfy_server.output_files(entry))]
    assert len(frames) == 8 and frames[1][0] > frames[1][1] + 40  # pulled toward the red keyframe
    assert all(list(f) == [128, 128, 128] for f in frames[4:])  # beyond fade 3: untouched


def test_bad_keyframe_index_is_one_clear_error(comfy_host):
    """A keyframe outside the clip raises KeyframeIndexError naming the input and the clip's frames."""
    node = comfy_host.pack_node_classes()[NODE]
    images = torch.rand(8, 4, 4, 3)
    with pytest.raises(ValueError, match=r"keyframes: frame '9' is outside the clip, which has frames 0 to 7"):
        node.execute(images=images, keyframes="0,9", fade_frames=2, strength=1.0)
