"""Kinema beside AnimateDiff-Evolved in one ComfyUI server: the sockets cannot be cross-wired, and neither pack
changes the other's output (random full-size SD1.5 + v2 module in both packs' shared animatediff_models folder).

Evolved patches ``comfy.samplers.sampling_function``, ``torch.nn.GroupNorm.forward`` (v1/PIA only) and
``comfy.k_diffusion.sampling.default_noise_sampler`` inside its own OUTER_SAMPLE wrapper and restores them in a
``finally``, and nothing at import. So the server with both packs runs Evolved, then ours, then Evolved again,
all on the one cached checkpoint: ours sees Evolved imported and after it sampled, Evolved sees ours imported and
after it sampled. Three servers per ComfyUI tree: ours alone (the session's ``comfy_server``), both, Evolved alone.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.append(str(Path(__file__).parent))
from _comfy import REPO_ROOT  # noqa: E402
from _evolved import commit_of, find_evolved, install_evolved  # noqa: E402
from _models import place, write_motion_module  # noqa: E402
from _server import ComfyServer  # noqa: E402
from _workflow import load_workflow, workflow_to_prompt  # noqa: E402

EVOLVED, WHY = find_evolved()
pytestmark = [pytest.mark.host, pytest.mark.server, pytest.mark.skipif(EVOLVED is None, reason=WHY)]

CKPT = "kinema-random-sd15.safetensors"
MOTION = "mm_sd_v15_v2.safetensors"  # one file, listed by both packs (same folder key)
FRAMES, STEPS = 8, 2  # the example cut to 8 frames: each server run costs half
OURS_TYPES = {"KINEMA_MOTION_MODULE", "KINEMA_CONTEXT_OPTIONS"}
EVOLVED_TYPES = {"MOTION_MODEL_ADE", "M_MODELS", "CONTEXT_OPTIONS", "VIEW_OPTS", "SAMPLE_SETTINGS", "MOTION_LORA"}


def ours_prompt(object_info: dict) -> dict:
    """The text-to-video example at 64 px, 2 steps, 8 frames, with its latent saved too."""
    workflow = load_workflow(REPO_ROOT / "example_workflows" / "text_to_video_16_frames.json")
    prompt = workflow_to_prompt(workflow, object_info, {
        "CheckpointLoaderSimple": {"ckpt_name": CKPT}, "KinemaLoadMotionModule": {"model_name": MOTION},
        "EmptyLatentImage": {"width": 64, "height": 64, "batch_size": FRAMES},
        "KinemaSampleAnimation": {"steps": STEPS}})
    sampler = next(i for i, n in prompt.items() if n["class_type"] == "KinemaSampleAnimation")
    prompt["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0], "filename_prefix": "ours"}}
    decoded = next(i for i, n in prompt.items() if n["class_type"] == "KinemaDecodeFrames")
    # the example's mp4 is lossy and h264 need not encode equal frames to equal bytes: compare lossless frames
    prompt["901"] = {"class_type": "SaveAnimatedWEBP", "inputs": {
        "images": [decoded, 0], "filename_prefix": "ours", "fps": 8.0, "lossless": True, "quality": 100,
        "method": "default"}}
    return prompt


def evolved_prompt(object_info: dict, seed: int) -> dict:
    """Evolved's gen2 graph (Load -> Apply -> Use Evolved Sampling -> KSampler) on the same model and prompts."""
    beta = object_info["ADE_UseEvolvedSampling"]["input"]["required"]["beta_schedule"][1]["default"]
    node = lambda kind, **inputs: {"class_type": kind, "inputs": inputs}  # noqa: E731
    return {
        "1": node("CheckpointLoaderSimple", ckpt_name=CKPT),
        "2": node("CLIPTextEncode", clip=["1", 1], text="a corgi running on a beach at sunset"),
        "3": node("CLIPTextEncode", clip=["1", 1], text="blurry, lowres"),
        "4": node("EmptyLatentImage", width=64, height=64, batch_size=FRAMES),
        "10": node("ADE_LoadAnimateDiffModel", model_name=MOTION),
        "11": node("ADE_ApplyAnimateDiffModelSimple", motion_model=["10", 0]),
        "12": node("ADE_UseEvolvedSampling", model=["1", 0], m_models=["11", 0], beta_schedule=beta),
        "13": node("KSampler", model=["12", 0], seed=seed, steps=STEPS, cfg=7.5, sampler_name="euler",
                   scheduler="normal", positive=["2", 0], negative=["3", 0], latent_image=["4", 0], denoise=1.0),
        "14": node("SaveLatent", samples=["13", 0], filename_prefix="evolved"),
    }


def run(server: ComfyServer, prompt: dict) -> dict[str, object]:
    """Run ``prompt``; returns its saved latent tensor and, if it saved an animation, its frames."""
    import numpy as np
    from safetensors.torch import load_file
    from test_server_workflows import frames_of

    offset = len(server.log_text())
    entry = server.run(prompt, timeout=900)
    assert server.tracebacks(server.log_since(offset)) == []
    files = server.output_files(entry)
    out = {"latent": load_file(next(p for p in files if p.suffix == ".latent"))["latent_tensor"]}
    for path in (p for p in files if p.suffix == ".webp"):
        out["frames"] = np.stack(frames_of(path))
    return out


def server_with(tree: Path, base: Path, models: dict[str, Path], *, ours: bool, evolved: bool) -> ComfyServer:
    """A server (not started) whose base directory holds the models and, if asked, a copy of Evolved."""
    for folder, path in models.items():
        place(path, base / "models" / folder / path.name)
    if evolved:
        install_evolved(EVOLVED, base / "custom_nodes")
    return ComfyServer(tree, base, with_pack=ours)


@pytest.fixture(scope="module")
def models(sd15_file, tmp_path_factory) -> dict[str, Path]:
    """The random SD1.5 checkpoint and v2 module, under the names both packs' prompts use."""
    folder = tmp_path_factory.mktemp("beside_models")
    place(sd15_file, folder / CKPT)
    return {"checkpoints": folder / CKPT, "animatediff_models": write_motion_module(folder / MOTION, "v2")}


@pytest.fixture(scope="module")
def runs(comfy_server, comfy_tree, models, tmp_path_factory) -> dict:
    """Every run, server by server (one server up at a time besides the session's, which is freed first)."""
    out = {}
    for folder, path in models.items():
        comfy_server.add_model(folder, path)
    out["ours alone"] = run(comfy_server, ours_prompt(comfy_server.object_info()))
    comfy_server.free()
    with server_with(comfy_tree, tmp_path_factory.mktemp("both"), models, ours=True, evolved=True) as both:
        info = out["object_info"] = both.object_info()
        out["evolved first, ours present"] = run(both, evolved_prompt(info, seed=1))
        out["ours beside"] = run(both, ours_prompt(info))
        out["evolved beside"] = run(both, evolved_prompt(info, seed=2))
        out["log"] = both.log_text()
    with server_with(comfy_tree, tmp_path_factory.mktemp("evolved"), models, ours=False, evolved=True) as alone:
        info = alone.object_info()
        assert not any(k.startswith("Kinema") for k in info)
        out["evolved first, alone"] = run(alone, evolved_prompt(info, seed=1))
        out["evolved alone"] = run(alone, evolved_prompt(info, seed=2))
    return out


def _types(spec) -> set[str]:
    """The socket types an /object_info input or output names ("A,B" accepts A and B)."""
    return set(spec.split(",")) if isinstance(spec, str) else set()


def test_sockets_cannot_be_cross_wired(runs):
    """In /object_info of a server with both packs, our nodes' custom inputs and outputs are typed KINEMA_*, and no
    Evolved output type is an input type of ours nor the other way round, so the frontend cannot link them."""
    info = runs["object_info"]
    ours = {k: v for k, v in info.items() if k.startswith("Kinema")}
    evolved = {k: v for k, v in info.items() if k.startswith("ADE_")}
    assert len(ours) >= 6 and len(evolved) >= 20, (sorted(ours), len(evolved))

    def inputs(nodes):
        return {t for n in nodes.values() for g in ("required", "optional")
                for spec in (n["input"].get(g) or {}).values() for t in _types(spec[0])}

    def outputs(nodes):
        return {t for n in nodes.values() for spec in n["output"] for t in _types(spec)}

    assert inputs({k: ours[k] for k in ("KinemaSampleAnimation", "KinemaApplyMotionModule")}) >= OURS_TYPES
    assert outputs(ours) >= OURS_TYPES and outputs(evolved) >= EVOLVED_TYPES
    core = {"MODEL", "LATENT", "CONDITIONING", "VAE", "IMAGE", "CLIP", "MASK", "INT", "FLOAT", "STRING", "BOOLEAN",
            "SIGMAS", "NOISE", "SAMPLER", "GUIDER", "CONTROL_NET", "*"}
    assert (outputs(evolved) - core) & inputs(ours) == set()
    assert (outputs(ours) - core) & inputs(evolved) == set()


def test_our_output_is_bit_identical_beside_evolved(runs):
    """Our example's latent and frames with Evolved loaded (and after Evolved sampled on the same checkpoint)
    are bit-identical to those from a server without Evolved."""
    alone, beside = runs["ours alone"], runs["ours beside"]
    assert torch.equal(beside["latent"], alone["latent"])
    assert (beside["frames"] == alone["frames"]).all()
    assert beside["latent"].shape == (FRAMES, 4, 8, 8) and beside["latent"].std() > 0


def test_evolved_output_is_unchanged_by_us(runs):
    """Evolved's own sampling, before and after ours ran in the same server, is bit-identical to Evolved's
    in a server without our pack (and its motion module really ran: seed 1 and seed 2 differ)."""
    assert "Using motion module" in runs["log"], f"Evolved did not animate; Evolved commit {commit_of(EVOLVED)}"
    assert torch.equal(runs["evolved first, ours present"]["latent"], runs["evolved first, alone"]["latent"])
    assert torch.equal(runs["evolved beside"]["latent"], runs["evolved alone"]["latent"])
    assert not torch.equal(runs["evolved beside"]["latent"], runs["evolved first, alone"]["latent"])
