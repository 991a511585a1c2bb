"""FreeNoise on every sampling path: Sample Animation, the stock KSampler and SamplerCustomAdvanced after Apply
Motion Module give one result for one seed, equal to sampling noise shuffled by an independent FreeNoise; FreeNoise
without context options is refused by ComfyUI's own prompt validation, naming the input."""
from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import conditioning, tiny_sd15_patcher  # noqa: E402
from test_attach import tiny_motion  # noqa: E402

FRAMES, LENGTH, OVERLAP, SEED, STEPS, CFG = 20, 8, 4, 11, 2, 2.0
AUTO = "auto (motion module's)"


def _mod(name: str):
    return import_module(f"kinema.{name}")


def _first(out):
    """The first output of a V1 node (a tuple) or a V3 node (io.NodeOutput)."""
    return out.args[0] if hasattr(out, "args") else out[0]


def _plan(freenoise: bool):
    ctx, sc = _mod("comfy_glue.context"), _mod("sampling.context")
    return ctx.ContextPlan(sc.ContextOptions(LENGTH, OVERLAP, sc.ContextSchedule.STANDARD_STATIC), freenoise=freenoise)


def _latent() -> dict:
    return {"samples": torch.zeros(FRAMES, 4, 16, 16)}


def _independent_freenoise(noise: torch.Tensor, seed: int) -> torch.Tensor:
    """Core 0.8's apply_freenoise where it exists, else the same draws transcribed from Evolved's sample_settings."""
    cw = import_module("comfy.context_windows")
    if hasattr(cw, "apply_freenoise"):
        return cw.apply_freenoise(noise.clone(), 0, LENGTH, OVERLAP, seed)
    out, generator, delta = noise.clone(), torch.Generator().manual_seed(seed), LENGTH - OVERLAP
    for start in range(0, FRAMES - LENGTH, delta):
        place = start + LENGTH
        count = min(delta, FRAMES - place)
        out[place:place + count] = out[torch.randperm(count, generator=generator) + start]
    return out


@pytest.fixture(scope="module")
def env(comfy_host):
    return tiny_sd15_patcher(seed=0), tiny_motion("v2", seed=4), conditioning(0), conditioning(1)


def _sample_animation(env, noise_type: str):
    base, motion, positive, negative = env
    node = _mod("nodes.sample").SampleAnimation
    return _first(node.execute(base, motion, positive, negative, _latent(), SEED, STEPS, CFG, "euler", "normal", 1.0,
                               1.0, AUTO, noise_type, _plan(False)))["samples"]


def _applied(env, freenoise: bool):
    base, motion, _, _ = env
    node = _mod("nodes.motion_module").ApplyMotionModule
    return _first(node.execute(base, motion, 1.0, AUTO, _plan(freenoise)))


def test_stock_samplers_with_freenoise_equal_sample_animation(env):
    """KSampler and SamplerCustomAdvanced on Apply Motion Module (freenoise on the scheduler) = Sample Animation's
    FreeNoise = plain sampling of independently shuffled noise; and FreeNoise really changes the result."""
    import comfy.sample
    import comfy.samplers

    import nodes

    ncs = import_module("comfy_extras.nodes_custom_sampler")
    _, _, positive, negative = env
    ours = _sample_animation(env, "FreeNoise")
    model = _applied(env, freenoise=True)
    ksampler = _first(nodes.common_ksampler(model, SEED, STEPS, CFG, "euler", "normal", positive, negative,
                                            _latent()))["samples"]
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(CFG)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS).cpu()
    args = (ncs.Noise_RandomNoise(SEED), guider, comfy.samplers.sampler_object("euler"), sigmas, _latent())
    node = ncs.SamplerCustomAdvanced
    custom = _first(node.execute(*args) if hasattr(node, "define_schema") else node().sample(*args))["samples"]
    plain = _applied(env, freenoise=False)
    shuffled = _independent_freenoise(comfy.sample.prepare_noise(_latent()["samples"], SEED), SEED)
    independent = comfy.sample.sample(plain, shuffled, STEPS, CFG, "euler", "normal", positive, negative,
                                      _latent()["samples"], seed=SEED, disable_pbar=True)
    for other in (ksampler, custom, independent):
        assert (ours - other).abs().max() <= 1e-5 * ours.abs().max()
    assert (ours - _sample_animation(env, "default")).abs().max() > 1e-2 * ours.abs().max()


def test_freenoise_on_the_scheduler_equals_the_noise_type_option(env):
    """Sample Animation with freenoise set on the Context Scheduler equals its noise_type FreeNoise."""
    base, motion, positive, negative = env
    sample = _mod("comfy_glue.sample").sample_animation
    via_plan = sample(base, motion, positive, negative, _latent(), SEED, STEPS, CFG, "euler", "normal",
                      context=_plan(True))["samples"]
    assert torch.equal(via_plan, _sample_animation(env, "FreeNoise"))


def test_freenoise_without_context_is_refused_in_glue(env):
    """Calling the glue directly with FreeNoise and no context options raises one sentence naming the inputs."""
    base, motion, positive, negative = env
    with pytest.raises(ValueError, match="^noise_type FreeNoise needs context_options .* no context_options is connected$"):
        _mod("comfy_glue.sample").sample_animation(base, motion, positive, negative, _latent(), SEED, 1, CFG,
                                                   "euler", "normal", use_freenoise=True)


def _validation_errors(monkeypatch, noise_type: str, linked: bool) -> list[dict]:
    """ComfyUI's own validate_inputs for a Sample Animation node in a prompt; that node's errors."""
    import execution

    import nodes

    _mod("comfy_glue.loading").register_folders()  # what the extension does when ComfyUI loads it
    for cls in _mod("nodes").NODES:
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, cls.GET_SCHEMA().node_id, cls)
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "2": {"class_type": "KinemaLoadMotionModule", "inputs": {"model_name": "x.safetensors"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 20}},
        "5": {"class_type": "KinemaContextScheduler", "inputs": {
            "context_length": 8, "context_overlap": 4, "context_schedule": "standard_static", "fuse_method": "pyramid",
            "context_stride": 1, "closed_loop": False, "views": False, "freenoise": False}},
        "6": {"class_type": "KinemaSampleAnimation", "inputs": {
            "model": ["1", 0], "motion_module": ["2", 0], "positive": ["3", 0], "negative": ["3", 0],
            "latent_image": ["4", 0], "seed": 0, "steps": 1, "cfg": 1.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "motion_scale": 1.0, "beta_schedule": AUTO,
            "noise_type": noise_type, **({"context_options": ["5", 0]} if linked else {})}},
    }
    _, errors, _ = asyncio.run(execution.validate_inputs("p", prompt, "6", {}))
    return [e for e in errors if e["type"] == "custom_validation_failed"]


def test_freenoise_without_context_fails_prompt_validation(comfy_host, monkeypatch):
    """ComfyUI's validation rejects noise_type FreeNoise with nothing in context_options, naming noise_type."""
    (error,) = _validation_errors(monkeypatch, "FreeNoise", linked=False)
    assert error["details"].startswith("noise_type - noise_type FreeNoise needs context_options"), error
    assert _validation_errors(monkeypatch, "FreeNoise", linked=True) == []
    assert _validation_errors(monkeypatch, "default", linked=False) == []
    bad = _validation_errors(monkeypatch, "PinkNoise", linked=True)  # ComfyUI files it under each input it passed
    assert bad and all("noise_type must be one of default, FreeNoise, but got 'PinkNoise'" in e["details"] for e in bad)


def test_reattaching_drops_the_freenoise_wrapper(env):
    """Sample Animation on a model that already carries FreeNoise (from Apply Motion Module) without asking for
    it samples plain noise: attaching again replaces every wrapper under our key."""
    base, motion, positive, negative = env
    sample = _mod("comfy_glue.sample").sample_animation
    out = sample(_applied(env, freenoise=True), motion, positive, negative, _latent(), SEED, STEPS, CFG, "euler",
                 "normal", context=replace(_plan(False)))["samples"]
    assert torch.equal(out, _sample_animation(env, "default"))
