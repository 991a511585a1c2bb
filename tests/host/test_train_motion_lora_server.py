"""The Train MotionLoRA example on a real ComfyUI server: a short video the test writes, 64x64, a few training steps,
Sample Animation on the trained module in the same prompt, a video and a MotionLoRA file out."""
from __future__ import annotations

import pytest
from _models import write_motion_module
from _workflow import load_workflow, workflow_to_prompt
from test_server_workflows import WORKFLOWS, frames_of, graph_fps, saved_video, video_fps
from test_video_to_video import write_video

pytestmark = [pytest.mark.host, pytest.mark.server]

FRAMES = 4


@pytest.fixture(scope="module")
def train_models(comfy_server, tmp_path_factory) -> dict:
    """A random full-size v2 module on the server and a 4-frame clip moving right in its input/."""
    folder = tmp_path_factory.mktemp("train")
    motion = write_motion_module(folder / "v2.safetensors", "v2")
    (comfy_server.base_dir / "input").mkdir(exist_ok=True)
    write_video(comfy_server.base_dir / "input" / "kinema_train.mp4", frames=FRAMES)
    return {"motion": comfy_server.add_model("animatediff_models", motion, "kinema-train-v2.safetensors"),
            "video": "kinema_train.mp4"}


def test_train_motion_lora_example_trains_saves_and_samples(comfy_server, server_sd15, train_models):
    """64x64, 4 frames, 2 training steps (core's Loss Graph needs 2 values), 2 sampling steps: a playable 4-frame video, a loss graph, and a
    MotionLoRA in models/animatediff_motion_lora that the server then lists for Apply MotionLoRA."""
    overrides = {
        "CheckpointLoaderSimple": {"ckpt_name": server_sd15},
        "KinemaLoadMotionModule": {"model_name": train_models["motion"]},
        "LoadVideo": {"file": train_models["video"]},
        "ImageScale": {"width": 64, "height": 64},
        "ImageFromBatch": {"length": FRAMES},
        "EmptyLatentImage": {"width": 64, "height": 64, "batch_size": FRAMES},
        "KinemaTrainMotionLoRA": {"steps": 2, "rank": 4, "gradient_checkpointing": False,
                                  "filename_prefix": "server/trained"},
        "KinemaSampleAnimation": {"steps": 2},
    }
    workflow = load_workflow(WORKFLOWS / "train_motion_lora.json")
    prompt = workflow_to_prompt(workflow, comfy_server.object_info(), overrides)
    offset = len(comfy_server.log_text())
    entry = comfy_server.run(prompt, timeout=900)
    assert comfy_server.tracebacks(comfy_server.log_since(offset)) == []
    video = saved_video(comfy_server, entry)
    assert len(frames_of(video)) == FRAMES and video_fps(video) == graph_fps(workflow)
    assert "Train MotionLoRA: 2 steps" in comfy_server.log_since(offset)
    saved = list((comfy_server.models_dir / "animatediff_motion_lora" / "server").glob("trained_*.safetensors"))
    assert len(saved) == 1, saved
    spec = comfy_server.object_info(refresh=True)["KinemaApplyMotionLoRA"]["input"]["required"]["lora_name"]
    listed = spec[0] if isinstance(spec[0], list) else spec[1]["options"]  # 0.3.64 V3: ["COMBO", {"options": …}]
    assert f"server/{saved[0].name}" in listed
