"""The video-to-video example on a real ComfyUI server: a short video the test writes, Canny hints, Apply ControlNet,
context windows, Sample Animation at denoise 0.6, and a playable video out with the source's frame count and fps."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from _comfy import REPO_ROOT
from _models import sd15_controlnet, write_motion_module
from _workflow import load_workflow, workflow_to_prompt

pytestmark = [pytest.mark.host, pytest.mark.server]

WORKFLOW = REPO_ROOT / "example_workflows" / "video_to_video_controlnet.json"
FRAMES, FPS = 20, 10  # 20 frames: two context windows of 16 (overlap 4)


def write_video(path: Path, frames: int = FRAMES, fps: int = FPS, size: int = 64) -> Path:
    """An mp4 of a white square moving right over a gradient, ``frames`` frames at ``fps``."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.tile(np.linspace(0, 160, size, dtype=np.uint8)[None, :, None], (size, 1, 3))
            x = 4 + 2 * i
            img[20:40, x:x + 16] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


def read_video(path: Path) -> tuple[int, Fraction, tuple[int, int]]:
    """(decoded frame count, average frame rate, (height, width)) of a video file."""
    import av

    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(stream)]
        return len(frames), stream.average_rate, frames[0].shape[:2]


@pytest.fixture(scope="module")
def v2v_models(comfy_core, comfy_server, tmp_path_factory) -> dict:
    """A random full-size SD1.5 ControlNet and v2 module on the server, and the source video in its input/."""
    folder = tmp_path_factory.mktemp("v2v")
    motion = write_motion_module(folder / "v2.safetensors", "v2")
    (comfy_server.base_dir / "input").mkdir(exist_ok=True)
    write_video(comfy_server.base_dir / "input" / "kinema_source.mp4")
    return {"controlnet": comfy_server.add_model("controlnet", sd15_controlnet(), "kinema-random-canny.safetensors"),
            "motion": comfy_server.add_model("animatediff_models", motion, "kinema-v2v-v2.safetensors"),
            "video": "kinema_source.mp4"}


def test_video_to_video_example_writes_a_playable_video(comfy_server, server_sd15, v2v_models):
    """64x64, 2 steps: the saved video is playable and has the source's 20 frames at its 10 fps."""
    overrides = {
        "CheckpointLoaderSimple": {"ckpt_name": server_sd15},
        "KinemaLoadMotionModule": {"model_name": v2v_models["motion"]},
        "ControlNetLoader": {"control_net_name": v2v_models["controlnet"]},
        "LoadVideo": {"file": v2v_models["video"]},
        "ImageScale": {"width": 64, "height": 64},
        "KinemaSampleAnimation": {"steps": 2},
    }
    workflow = load_workflow(WORKFLOW)
    prompt = workflow_to_prompt(workflow, comfy_server.object_info(), overrides)
    sampler = next(v for v in prompt.values() if v["class_type"] == "KinemaSampleAnimation")
    assert sampler["inputs"]["denoise"] == 0.6
    offset = len(comfy_server.log_text())
    entry = comfy_server.run(prompt, timeout=900)
    assert comfy_server.tracebacks(comfy_server.log_since(offset)) == []
    videos = [p for p in comfy_server.output_files(entry) if p.suffix in (".mp4", ".webm", ".mov")]
    assert len(videos) == 1, comfy_server.output_files(entry)
    frames, rate, shape = read_video(videos[0])
    assert (frames, rate, shape) == (FRAMES, FPS, (64, 64))
