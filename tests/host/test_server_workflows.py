"""The example workflows on a real ComfyUI server: random full-size SD1.5 + v2 module, small and fast."""
from __future__ import annotations

from pathlib import Path

import pytest
from _comfy import REPO_ROOT
from _models import write_motion_module
from _server import execution_error
from _workflow import load_workflow, workflow_to_prompt

pytestmark = [pytest.mark.host, pytest.mark.server]

WORKFLOWS = REPO_ROOT / "example_workflows"
MOTION_NAME = "kinema-random-v2.safetensors"


@pytest.fixture(scope="module")
def server_motion(comfy_server, tmp_path_factory) -> str:
    """A random full-size v2-layout module (fp16) in the server's animatediff_models folder."""
    path = write_motion_module(tmp_path_factory.mktemp("mm") / MOTION_NAME, "v2")
    return comfy_server.add_model("animatediff_models", path, MOTION_NAME)


def official_motion_lora(seed: int, rank: int = 4) -> dict:
    """A random MotionLoRA for a full-size v2 module in the official key layout (processor.to_q_lora...)."""
    import torch

    widths = (320, 640, 1280, 1280)
    seats = [(f"down_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(widths) for j in range(2)]
    seats += [("mid_block.motion_modules.0", 1280)]
    seats += [(f"up_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(reversed(widths)) for j in range(3)]
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, c in seats:
        for a in (0, 1):
            for proj in ("q", "k", "v", "out"):
                key = f"{prefix}.temporal_transformer.transformer_blocks.0.attention_blocks.{a}.processor.to_{proj}_lora"
                sd[f"{key}.down.weight"] = (torch.randn(rank, c, generator=g) * 0.05).half()
                sd[f"{key}.up.weight"] = (torch.randn(c, rank, generator=g) * 0.05).half()
    return sd


@pytest.fixture(scope="module")
def server_loras(comfy_server, tmp_path_factory) -> list[str]:
    """ZoomIn and PanLeft stand-ins (random, official layout) under the names the example uses."""
    import torch

    folder = tmp_path_factory.mktemp("loras")
    names = []
    for seed, name in enumerate(["v2_lora_ZoomIn.ckpt", "v2_lora_PanLeft.ckpt"]):
        torch.save(official_motion_lora(seed), folder / name)
        names.append(comfy_server.add_model("animatediff_motion_lora", folder / name, name))
    return names


def frames_of(path: Path) -> list:
    """Every frame of an animated WEBP or a video file as an RGB float array."""
    import numpy as np

    if path.suffix == ".webp":
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return [np.asarray(f.convert("RGB"), dtype=np.float32) for f in ImageSequence.Iterator(im)]
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]


def video_fps(path: Path) -> float:
    """The frame rate a video file's stream declares."""
    import av

    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate)


def graph_fps(workflow: dict) -> float:
    """The frame rate of a UI workflow, which must appear once: on its one Create Video node."""
    timed = [n for n in workflow["nodes"] if n["type"] in ("CreateVideo", "SaveAnimatedWEBP", "SaveAnimatedPNG",
                                                            "SaveWEBM")]
    assert [n["type"] for n in timed] == ["CreateVideo"], [n["type"] for n in timed]
    return float(timed[0]["widgets_values"][0])


def saved_video(server, entry: dict) -> Path:
    """The one mp4 a history entry's outputs list (Save Video)."""
    videos = [p for p in server.output_files(entry) if p.suffix == ".mp4"]
    assert len(videos) == 1, server.output_files(entry)
    return videos[0]


def run_example(server, name: str, ckpt: str, motion: str, frames: int, **extra) -> list:
    """Run ``example_workflows/<name>.json`` at 64x64, 2 steps; returns the saved animation's frames."""
    workflow = load_workflow(WORKFLOWS / f"{name}.json")
    overrides = {
        "CheckpointLoaderSimple": {"ckpt_name": ckpt},
        "KinemaLoadMotionModule": {"model_name": motion},
        "EmptyLatentImage": {"width": 64, "height": 64, "batch_size": frames},
        "KinemaSampleAnimation": {"steps": 2, **extra},
    }
    prompt = workflow_to_prompt(workflow, server.object_info(), overrides)
    offset = len(server.log_text())
    entry = server.run(prompt, timeout=900)
    assert server.tracebacks(server.log_since(offset)) == []
    video = saved_video(server, entry)
    assert video_fps(video) == graph_fps(workflow)
    return frames_of(video)


def test_object_info_lists_our_nodes_with_tooltips(comfy_server):
    """/object_info lists every node of the pack, and every input has a tooltip."""
    info = comfy_server.object_info()
    ours = {k: v for k, v in info.items() if k.startswith("Kinema")}
    assert {"KinemaLoadMotionModule", "KinemaApplyMotionModule", "KinemaSampleAnimation",
            "KinemaContextScheduler", "KinemaApplyMotionLoRA", "KinemaDecodeFrames"} <= set(ours)
    for node_id, node in ours.items():
        for group in ("required", "optional"):
            for name, spec in (node["input"].get(group) or {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_text_to_video_16_frames(comfy_server, server_sd15, server_motion):
    """The 16-frame text-to-video example finishes with 16 non-blank frames and no traceback."""
    frames = run_example(comfy_server, "text_to_video_16_frames", server_sd15, server_motion, 16)
    assert len(frames) == 16
    assert all(f.shape == (64, 64, 3) and f.std() > 0 for f in frames)


def test_long_video_64_frames_with_context_windows(comfy_server, server_sd15, server_motion):
    """The 64-frame context-window example (context 16, overlap 4, looped uniform) gives 64 frames."""
    frames = run_example(comfy_server, "long_video_64_frames_context_windows", server_sd15, server_motion, 64,
                         cfg=1.0)
    assert len(frames) == 64
    assert all(f.std() > 0 for f in frames)


def test_motion_lora_example_zoom_in_and_pan_left(comfy_server, server_sd15, server_motion, server_loras):
    """ZoomIn 0.8 stacked with PanLeft 0.5 on 16 frames runs and saves 16 frames."""
    frames = run_example(comfy_server, "motion_lora_zoom_in_and_pan_left", server_sd15, server_motion, 16)
    assert len(frames) == 16 and all(f.std() > 0 for f in frames)


@pytest.mark.parametrize("frames, message", [
    (40, f"the latent has 40 frames but motion module '{MOTION_NAME}' takes at most 32 per pass; add a Context "
         "Scheduler"),
])
def test_guardrail_is_an_execution_error_and_next_prompt_runs(comfy_server, server_sd15, server_motion,
                                                              frames, message):
    """A guardrail fails the prompt with its sentence; the next prompt on the same model runs normally."""
    workflow = load_workflow(WORKFLOWS / "text_to_video_16_frames.json")
    overrides = {"CheckpointLoaderSimple": {"ckpt_name": server_sd15},
                 "KinemaLoadMotionModule": {"model_name": server_motion},
                 "EmptyLatentImage": {"width": 64, "height": 64, "batch_size": frames},
                 "KinemaSampleAnimation": {"steps": 1, "cfg": 1.0}}
    prompt = workflow_to_prompt(workflow, comfy_server.object_info(), overrides)
    entry = comfy_server.wait(comfy_server.post_prompt(prompt), timeout=600)
    assert entry["status"]["status_str"] == "error"
    assert message in execution_error(entry)
    overrides["EmptyLatentImage"]["batch_size"] = 4
    ok = comfy_server.run(workflow_to_prompt(workflow, comfy_server.object_info(), overrides), timeout=600)
    assert ok["status"]["status_str"] == "success"
