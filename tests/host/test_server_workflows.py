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


@pytest.fixture(scope="module")
def server_animatelcm(comfy_server, tmp_path_factory) -> str:
    """A random full-size AnimateLCM-layout module (v2 seats, no position tables) in animatediff_models."""
    path = write_motion_module(tmp_path_factory.mktemp("mm") / "kinema-random-animatelcm.safetensors", "animatelcm")
    return comfy_server.add_model("animatediff_models", path, path.name)


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


def test_animatelcm_8_steps(comfy_server, server_sd15, server_animatelcm):
    """The AnimateLCM example (core's Model Sampling Discrete lcm, lcm sampler, sgm_uniform, cfg 1.5) gives 16 frames,
    and Load Motion Module showed the module's detection text naming what it wants."""
    offset = len(comfy_server.log_text())
    frames = run_example(comfy_server, "animatelcm_8_steps", server_sd15, server_animatelcm, 16)
    assert len(frames) == 16 and all(f.std() > 0 for f in frames)
    log = comfy_server.log_since(offset)
    assert "AnimateLCM" in log and "sgm_uniform" in log
    assert "no LCM sampling" not in log and "keeping its own noise schedule" not in log


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


def sampler_custom_advanced_prompt(ckpt: str, motion: str, seed: int, frames: int = 8) -> dict:
    """Apply Motion Module → core's SamplerCustomAdvanced (RandomNoise, CFGGuider, KSamplerSelect euler_ancestral,
    BasicScheduler karras, 2 steps) at 64 px → Decode Frames → lossless WEBP."""
    def node(class_type: str, **inputs) -> dict:
        return {"class_type": class_type, "inputs": inputs}

    return {
        "1": node("CheckpointLoaderSimple", ckpt_name=ckpt),
        "2": node("KinemaLoadMotionModule", model_name=motion, compile=False),
        "3": node("KinemaApplyMotionModule", model=["1", 0], motion_module=["2", 0], motion_scale=1.0,
                  beta_schedule="auto (motion module's)"),
        "4": node("CLIPTextEncode", clip=["1", 1], text="a corgi running on a beach"),
        "5": node("CLIPTextEncode", clip=["1", 1], text="blurry"),
        "6": node("RandomNoise", noise_seed=seed),
        "7": node("CFGGuider", model=["3", 0], positive=["4", 0], negative=["5", 0], cfg=4.0),
        "8": node("KSamplerSelect", sampler_name="euler_ancestral"),
        "9": node("BasicScheduler", model=["3", 0], scheduler="karras", steps=2, denoise=1.0),
        "10": node("EmptyLatentImage", width=64, height=64, batch_size=frames),
        "11": node("SamplerCustomAdvanced", noise=["6", 0], guider=["7", 0], sampler=["8", 0], sigmas=["9", 0],
                   latent_image=["10", 0]),
        "12": node("KinemaDecodeFrames", samples=["11", 0], vae=["1", 2], frames_per_batch=4),
        "13": node("SaveAnimatedWEBP", images=["12", 0], filename_prefix="kinema_sca", fps=8.0, lossless=True,
                   quality=100, method="default"),
    }


def test_sampler_custom_advanced_node_animates_deterministically(comfy_server, server_sd15, server_motion):
    """The SamplerCustomAdvanced node samples an Apply Motion Module model: 8 frames, no traceback; seed 1, seed 2,
    then seed 1 again (so the sampler re-runs) gives seed 1's frames exactly, and seed 2 other frames."""
    import numpy as np

    offset = len(comfy_server.log_text())
    runs = []
    for seed in (1, 2, 1):
        entry = comfy_server.run(sampler_custom_advanced_prompt(server_sd15, server_motion, seed), timeout=900)
        webps = [p for p in comfy_server.output_files(entry) if p.suffix == ".webp"]
        assert len(webps) == 1, comfy_server.output_files(entry)
        runs.append(np.stack(frames_of(webps[0])))
    assert comfy_server.tracebacks(comfy_server.log_since(offset)) == []
    assert runs[0].shape == (8, 64, 64, 3) and all(f.std() > 0 for f in runs[0])
    assert np.array_equal(runs[0], runs[2])
    assert not np.array_equal(runs[0], runs[1])
