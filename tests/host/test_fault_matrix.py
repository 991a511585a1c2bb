"""Fault matrix ("hard to break"): each bad input is one clear sentence or a correct result, and afterwards no
model holds a MotionSlot and the next run on the same model gives exactly what it gave before.

In-process cases use tiny seeded models (2 frames of 8x8 latents, 1 step) and the pack's node classes;
the interrupt and two-module cases run on a real ``main.py --cpu`` server with the random full-size SD1.5.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
import time
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _comfy import REPO_ROOT  # noqa: E402
from _tiny import conditioning, randomize, tiny_sd15_patcher, tiny_unet_config  # noqa: E402
from test_attach import slots_in, tiny_motion  # noqa: E402

FRAMES, SIZE = 2, 8  # every "next prompt" check: 2 frames of 8x8 latents, 1 euler step at cfg 1 (cheap on CPU)


def _mod(name: str):
    return import_module(f"kinema.{name}")


def _core_fixtures():
    """tests/core/_fixtures.py (the file writers), bound to the ``kinema`` copy of ``motion_modules``."""
    if "kinema_core_fixtures" in sys.modules:
        return sys.modules["kinema_core_fixtures"]
    aliases = {"motion_modules": _mod("motion_modules"), "motion_modules.spec": _mod("motion_modules.spec")}
    saved = {k: sys.modules.get(k) for k in aliases}
    sys.modules.update(aliases)
    try:
        spec = importlib.util.spec_from_file_location("kinema_core_fixtures", REPO_ROOT / "tests/core/_fixtures.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    sys.modules["kinema_core_fixtures"] = module
    return module


# -- models ----------------------------------------------------------------------------------------------------


def _patcher(model):
    import comfy.model_patcher

    model.diffusion_model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def tiny_sdxl_patcher(seed: int = 0):
    """A random SDXL BaseModel (levels 32/64/128, ADM from a 32-wide pooled output) on the CPU."""
    import comfy.model_base
    import comfy.supported_models

    unet = {**tiny_unet_config(), "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4],
            "transformer_depth": [0, 0, 1, 1, 1, 1], "transformer_depth_output": [1] * 6 + [0] * 3,
            "use_linear_in_transformer": True, "num_classes": "sequential", "adm_in_channels": 32 + 6 * 256}
    config = comfy.supported_models.SDXL(unet)
    config.unet_config.update(num_heads=-1, num_head_channels=16)  # SDXL's own 64-wide heads need 64+ channels
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.SDXL(config, device="cpu")
    randomize(model.diffusion_model, seed)
    return _patcher(model)


def tiny_flux_patcher(seed: int = 0):
    """A random one-block Flux (a DiT, not openaimodel.UNetModel) on the CPU."""
    import comfy.model_base
    import comfy.supported_models
    from comfy.ldm.flux.model import FluxParams

    unet = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32, "context_in_dim": 32,
            "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
            "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True, "guidance_embed": False}
    if "txt_ids_dims" in {f.name for f in dataclasses.fields(FluxParams)}:  # 0.8 (model_detection's Flux value)
        unet["txt_ids_dims"] = []
    config = comfy.supported_models.FluxSchnell(unet)
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.Flux(config, device="cpu")
    randomize(model.diffusion_model, seed)
    return _patcher(model)


def micro_sd15_patcher(seed: int = 0):
    """The cheapest SD1.5-family UNet a v3-layout module fits: two 32-wide levels, no attention, no mid seat."""
    import comfy.model_base
    import comfy.supported_models

    unet = {**tiny_unet_config(), "num_res_blocks": [2, 2], "channel_mult": [1, 1], "transformer_depth": [0] * 4,
            "transformer_depth_output": [0] * 6, "transformer_depth_middle": -1}
    config = comfy.supported_models.SD15(unet)
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.BaseModel(config, device="cpu")
    randomize(model.diffusion_model, seed)
    return _patcher(model)


def pooled_conditioning(seed: int, dim: int = 32) -> list:
    """CONDITIONING with a pooled output (SDXL's ADM, Flux's vector input)."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 7, dim, generator=g), {"pooled_output": torch.randn(1, dim, generator=g)}]]


# -- running ---------------------------------------------------------------------------------------------------


def nodes_of(comfy_host) -> dict:
    return comfy_host.pack_node_classes()


def plain(model, frames: int = FRAMES, channels: int = 4, cond=None, cfg: float = 1.0) -> torch.Tensor:
    """Core sampling of ``model`` as it is (no motion module)."""
    import comfy.sample

    latent = torch.zeros(frames, channels, SIZE, SIZE)
    pos, neg = cond or (conditioning(0), conditioning(1))
    return comfy.sample.sample(model, comfy.sample.prepare_noise(latent, 0), 1, cfg, "euler", "normal", pos, neg,
                               latent, seed=0, disable_pbar=True)


def animate(nodes, model, motion, frames: int = FRAMES, cond=None, context=None, steps: int = 1, cfg: float = 1.0,
            size: int = SIZE) -> torch.Tensor:
    """The Sample Animation node, as a prompt would run it."""
    pos, neg = cond or (conditioning(0), conditioning(1))
    latent = {"samples": torch.zeros(frames, 4, size, size)}
    out = nodes["KinemaSampleAnimation"].execute(
        model=model, motion_module=motion, positive=pos, negative=neg, latent_image=latent, seed=0, steps=steps,
        cfg=cfg, sampler_name="euler", scheduler="normal", denoise=1.0, motion_scale=1.0,
        beta_schedule="auto (motion module's)", noise_type="default", context_options=context)
    return out.args[0]["samples"]


@pytest.fixture(scope="module")
def env(comfy_host):
    """The tiny SD1.5 base, a good v2 module loaded through the node from a file, and reference outputs."""
    import folder_paths

    nodes = nodes_of(comfy_host)
    folder = Path(folder_paths.get_folder_paths("animatediff_models")[0])
    folder.mkdir(parents=True, exist_ok=True)
    good = tiny_motion("v2")
    fx = _core_fixtures()
    fx.write_safetensors(good.patcher.model.state_dict(), folder / "fm_good_v2.safetensors")
    motion = nodes["KinemaLoadMotionModule"].execute(model_name="fm_good_v2.safetensors").args[0]
    base = tiny_sd15_patcher(seed=0)
    env = dataclasses.make_dataclass("Env", ["nodes", "folder", "base", "motion", "plain", "animated"])(
        nodes, folder, base, motion, plain(base), animate(nodes, base, motion))
    yield env
    comfy_host.unload_models()


def assert_next_prompt_normal(env) -> None:
    """No MotionSlot in the base; a plain run and an animated run on it equal the references bit for bit."""
    assert slots_in(env.base) == 0
    assert torch.equal(plain(env.base), env.plain)
    assert torch.equal(animate(env.nodes, env.base, env.motion), env.animated)
    assert slots_in(env.base) == 0


def one_sentence(message: str) -> None:
    assert "\n" not in message and message.count(". ") == 0, message


# -- wrong model -----------------------------------------------------------------------------------------------


def test_sd15_module_on_sdxl_model(env):
    """An SD1.5 module on an SDXL model is refused naming both; the SDXL model then animates with an SDXL module."""
    sdxl = tiny_sdxl_patcher()
    cond = (pooled_conditioning(0), pooled_conditioning(1))
    before = plain(sdxl, cond=cond)
    with pytest.raises(ValueError) as info:
        animate(env.nodes, sdxl, env.motion, cond=cond)
    assert str(info.value) == ("motion module 'fm_good_v2.safetensors' is an SD1.5 module (levels 32/64/128/128) but "
                               "the model is SDXL (levels 32/64/128); use an SD1.5 checkpoint or a motion module made "
                               "for SDXL")
    assert slots_in(sdxl) == 0
    assert torch.equal(plain(sdxl, cond=cond), before)
    animated = animate(env.nodes, sdxl, tiny_motion("sdxl-beta", widths=(32, 64, 128)), cond=cond)
    assert torch.isfinite(animated).all() and not torch.equal(animated, before)
    assert slots_in(sdxl) == 0


def test_sdxl_module_on_sd15_model(env):
    """The reverse: an SDXL module on the SD1.5 model is refused before anything runs."""
    with pytest.raises(ValueError) as info:
        animate(env.nodes, env.base, tiny_motion("sdxl-beta", widths=(32, 64, 128)))
    assert str(info.value) == ("motion module 'tiny_sdxl-beta.safetensors' is an SDXL module (levels 32/64/128) "
                               "but the model is SD1.5 (levels 32/64/128/128); use an SDXL checkpoint or a motion "
                               "module made for SD1.5")
    assert_next_prompt_normal(env)


@pytest.mark.parametrize("node", ["KinemaSampleAnimation", "KinemaApplyMotionModule"])
def test_module_on_flux_model(env, node):
    """A non-UNet model (Flux) is refused by both entry points; it then samples exactly as before."""
    flux = tiny_flux_patcher()
    cond = (pooled_conditioning(0), pooled_conditioning(1))
    before = plain(flux, channels=16, cond=cond, cfg=1.0)
    with pytest.raises(ValueError) as info:
        if node == "KinemaSampleAnimation":
            animate(env.nodes, flux, env.motion, cond=cond)
        else:
            env.nodes[node].execute(model=flux, motion_module=env.motion, motion_scale=1.0,
                                    beta_schedule="auto (motion module's)")
    assert str(info.value) == ("motion module 'fm_good_v2.safetensors' needs an SD1.5 or SDXL UNet, but the model "
                               "is FluxSchnell (Flux); load an SD1.5 or SDXL checkpoint")
    assert not any(type(m).__name__ == "MotionSlot" for m in flux.model.modules())
    assert torch.equal(plain(flux, channels=16, cond=cond, cfg=1.0), before)


# -- bad files through Load Motion Module -------------------------------------------------------------------------


def _good_sd() -> dict:
    return tiny_motion("v2").patcher.model.state_dict()


def _truncate(path: Path, write) -> tuple[int, int]:
    """Write a good file with ``write`` and keep only its first half; returns (full size, kept size)."""
    write(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return len(data), len(data) // 2


def _random_bytes(path: Path) -> bytes:
    data = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    path.write_bytes(data.numpy().tobytes())
    return path.read_bytes()[:8]


def bad_file(case: str, path: Path) -> str:
    """Write the file for ``case`` at ``path``; returns the exact message (or a regex, prefixed 're:') expected."""
    fx, n = _core_fixtures(), path.name
    good = _good_sd()
    if case == "truncated_safetensors":
        full, kept = _truncate(path, lambda p: fx.write_safetensors(good, p))
        return f"{n}: expected {full} bytes as its safetensors header describes, found a truncated file of {kept} bytes."
    if case == "truncated_ckpt":
        _truncate(path, lambda p: fx.write_ckpt(good, p))
        return rf"re:{re.escape(n)}: expected a readable PyTorch checkpoint, found a damaged or truncated one \(.+\)\."
    if case == "empty":
        path.write_bytes(b"")
        return f"{n}: expected a weights file, found an empty file (0 bytes)."
    if case == "random_bytes":
        head = _random_bytes(path)
        return (f"{n}: expected .safetensors or a PyTorch checkpoint, found unrecognised content (it starts with "
                f"bytes {head.hex(' ')}).")
    if case == "html":
        path.write_bytes(b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Log in</body></html>")
        return (f"{n}: expected a weights file, found what looks like an HTML page (a web page was saved instead "
                f"of the file; download it again).")
    if case == "sd_checkpoint":
        fx.write_safetensors(fx.sd_checkpoint_state_dict(), path)
        return (f"{n}: expected an AnimateDiff motion module, found a full Stable Diffusion checkpoint; load it "
                f"with Load Checkpoint.")
    if case == "sd_lora":
        fx.write_safetensors(fx.sd_lora_state_dict(), path)
        return f"{n}: expected an AnimateDiff motion module, found an SD LoRA; load it with core's LoraLoader."
    if case == "motion_lora":
        fx.write_ckpt(fx.motion_lora_state_dict("official"), path)
        return f"{n}: expected an AnimateDiff motion module, found a MotionLoRA; load it with Apply MotionLoRA."
    if case == "v3_adapter":
        fx.write_ckpt(fx.domain_adapter_state_dict(), path, nest="state_dict")
        return (f"{n}: expected an AnimateDiff motion module, found an SD LoRA in diffusers attention-processor "
                f"layout, like the AnimateDiff v3 domain adapter (v3_sd15_adapter.ckpt); load it with core's "
                f"LoraLoader.")
    if case == "unknown_keys":
        fx.write_safetensors({"foo.weight": torch.zeros(3, 3), "bar.bias": torch.zeros(3)}, path)
        return (f"{n}: expected AnimateDiff motion-module keys such as down_blocks.0.motion_modules.0."
                f"temporal_transformer.norm.weight, found none among its 2 keys (first: bar.bias, foo.weight).")
    if case == "renamed_keys":
        fx.write_safetensors({k.replace("temporal_transformer", "temporal_mixer"): v for k, v in good.items()}, path)
        return f"{n}: expected a norm or proj_in weight in down_blocks.0.motion_modules.0, found neither."
    if case == "missing_level":
        fx.write_safetensors({k: v for k, v in good.items() if not k.startswith("up_blocks.1.")}, path)
        return f"{n}: expected motion modules at every up_blocks level 0..3, found none at level 1."
    if case == "extra_key":
        extra = "down_blocks.0.motion_modules.0.temporal_transformer.extra.weight"
        fx.write_safetensors({**good, extra: torch.zeros(3)}, path)
        return (f"{n}: expected the {len(good)} keys of an SD1.5 AnimateDiff v2 motion module, found 1 unexpected "
                f"(first: {extra}).")
    if case == "wrong_shape":
        key = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"
        fx.write_safetensors({**good, key: torch.zeros(5, 5)}, path)
        return (f"{n}: expected the {len(good)} keys of an SD1.5 AnimateDiff v2 motion module, found 1 with the "
                f"wrong shape or dtype (first: {key} (found [5, 5], expected [32, 32])).")
    raise ValueError(f"unknown case {case!r}")


BAD_FILES = {"truncated_safetensors": "safetensors", "truncated_ckpt": "ckpt", "empty": "safetensors",
             "random_bytes": "ckpt", "html": "safetensors", "sd_checkpoint": "safetensors",
             "sd_lora": "safetensors", "motion_lora": "ckpt", "v3_adapter": "ckpt", "unknown_keys": "safetensors",
             "renamed_keys": "safetensors", "missing_level": "safetensors", "extra_key": "safetensors",
             "wrong_shape": "safetensors"}


@pytest.fixture
def no_build(monkeypatch):
    """Records every MotionModel the loader builds (a bad file must never reach that point)."""
    loading = _mod("comfy_glue.loading")
    built = []
    real = loading.build_motion_model
    monkeypatch.setattr(loading, "build_motion_model", lambda *a, **k: built.append(a) or real(*a, **k))
    return built


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_through_load_motion_module(env, no_build, case):
    """Each broken or wrong file is one sentence naming it; nothing is half-loaded; the next prompt is normal."""
    path = env.folder / f"fm_{case}.{BAD_FILES[case]}"
    expected = bad_file(case, path)
    no_build.clear()
    with pytest.raises(ValueError) as info:
        env.nodes["KinemaLoadMotionModule"].execute(model_name=path.name)
    message = str(info.value)
    assert type(info.value).__module__ == "kinema.motion_modules.errors"
    if expected.startswith("re:"):
        assert re.fullmatch(expected[3:], message), message
    else:
        assert message == expected
    one_sentence(message)
    assert no_build == []
    assert_next_prompt_normal(env)


@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_never_runs(env, monkeypatch, no_build, zip_format):
    """A code-running pickle is refused by weights-only loading; its marker is never written; no unsafe retry."""
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or real_load(*a, **k))
    marker = env.folder / f"PWNED_{zip_format}"
    path = _core_fixtures().write_malicious_pickle(env.folder / f"fm_evil_{zip_format}.ckpt", marker, zip_format)
    calls.clear()
    with pytest.raises(ValueError) as info:
        env.nodes["KinemaLoadMotionModule"].execute(model_name=path.name)
    refused = "GLOBAL exec" if zip_format else "GLOBAL torch.storage._load_from_bytes"
    assert str(info.value) == (f"{path.name}: expected a checkpoint of plain tensors, found a pickle refused by "
                               f"weights-only loading: Unsupported global: {refused} was not an allowed global by "
                               f"default.")
    assert not marker.exists()
    assert calls == [True]
    assert no_build == []
    assert_next_prompt_normal(env)


# -- frame counts and context options -----------------------------------------------------------------------------


def scheduler(env, length: int, overlap: int, schedule: str = "looped_uniform"):
    """CONTEXT_OPTIONS from the Context Scheduler node."""
    return env.nodes["KinemaContextScheduler"].execute(context_length=length, context_overlap=overlap,
                                                        context_schedule=schedule, fuse_method="pyramid",
                                                        context_stride=1, closed_loop=False, views=False).args[0]


def ksampler(comfy_host, model, frames: int, seed: int = 0) -> torch.Tensor:
    """Core's KSampler (common_ksampler) on ``frames`` 8x8 latents, 1 euler step at cfg 1."""
    latent = {"samples": torch.zeros(frames, 4, SIZE, SIZE)}
    out = comfy_host.nodes.common_ksampler(model, seed, 1, 1.0, "euler", "normal", conditioning(0), conditioning(1),
                                           latent)
    return out[0]["samples"]


def applied(env, scale: float = 1.0):
    """Apply Motion Module (for the stock KSampler)."""
    return env.nodes["KinemaApplyMotionModule"].execute(model=env.base, motion_module=env.motion, motion_scale=scale,
                                                        beta_schedule="auto (motion module's)").args[0]


@pytest.mark.parametrize("overlap", [16, 20])
def test_overlap_not_below_length(env, overlap):
    """overlap >= length: the node's validate_inputs returns the sentence (ComfyUI answers 400) and execute raises."""
    message = f"context_overlap {overlap} must be smaller than context_length 16"
    node = env.nodes["KinemaContextScheduler"]
    assert node.validate_inputs(context_length=16, context_overlap=overlap, context_stride=1) == message
    with pytest.raises(ValueError, match=f"^{message}$"):
        scheduler(env, 16, overlap)
    assert_next_prompt_normal(env)


def test_context_length_beyond_pe_length(env):
    """A 48-frame window on a PE-32 module is refused at sampling, before the UNet is touched."""
    with pytest.raises(ValueError) as info:
        animate(env.nodes, env.base, env.motion, context=scheduler(env, 48, 4))
    assert str(info.value) == "context_length 48 exceeds this motion module's limit of 32 frames; use 32 or less"
    assert_next_prompt_normal(env)


@pytest.mark.parametrize("path", ["SampleAnimation", "KSampler"])
@pytest.mark.parametrize("frames, message", [
    (33, "the latent has 33 frames but motion module 'fm_good_v2.safetensors' takes at most 32 per pass; add a "
         "Context Scheduler"),
    (0, "the latent has 0 frames; expected at least 1"),
])
def test_frame_count_guardrails(env, comfy_host, path, frames, message):
    """Too many frames without context, or none at all: one sentence from either entry point, nothing patched."""
    with pytest.raises(ValueError) as info:
        if path == "SampleAnimation":
            animate(env.nodes, env.base, env.motion, frames=frames)
        else:
            ksampler(comfy_host, applied(env), frames)
    assert str(info.value) == message
    assert_next_prompt_normal(env)


def test_one_frame(env, comfy_host):
    """One frame animates: the node and Apply + core KSampler agree exactly, and the module is active."""
    node = animate(env.nodes, env.base, env.motion, frames=1)
    stock = ksampler(comfy_host, applied(env), 1)
    off = ksampler(comfy_host, applied(env, scale=0.0), 1)
    assert node.shape == (1, 4, SIZE, SIZE) and torch.isfinite(node).all()
    assert torch.equal(node, stock)
    assert (node - off).abs().max() > 1e-3
    assert_next_prompt_normal(env)


def test_1024_frames_with_context_16(env, comfy_host, monkeypatch):
    """1,024 frames in 16-frame windows (8x8 latents, 2 steps): memory is estimated for one window, progress
    advances once per step, every frame is covered at every step, the motion module never sees more than a window."""
    import comfy.sampler_helpers
    import comfy.utils

    attach, context = _mod("comfy_glue.attach"), _mod("comfy_glue.context")
    model, motion = micro_sd15_patcher(), tiny_motion("v3", widths=(32, 32))
    before = plain(model)
    shapes, progress, windows, batches = [], [], [], []
    estimate, schedule, call = comfy.sampler_helpers.estimate_memory, context.windows, attach.Attachment.__call__
    monkeypatch.setattr(comfy.sampler_helpers, "estimate_memory",
                        lambda m, shape, *a, **k: shapes.append(list(shape)) or estimate(m, shape, *a, **k))
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, *a, **k: progress.append((value, total)))
    monkeypatch.setattr(context, "windows", lambda n, *a: windows.append((n, schedule(n, *a))) or windows[-1][1])
    monkeypatch.setattr(attach.Attachment, "__call__", lambda self, layer, x, *a, **k: (
        batches.append(x.shape[0]) if isinstance(layer, attach.MotionSlot) else None) or call(self, layer, x, *a, **k))
    started = time.monotonic()
    out = animate(env.nodes, model, motion, frames=1024, context=scheduler(env, 16, 4), steps=2)
    elapsed = time.monotonic() - started
    monkeypatch.undo()
    assert shapes == [[16, 4, SIZE, SIZE]]
    assert progress == [(1, 2), (2, 2)]
    assert len(windows) >= 2 and all(n == 1024 for n, _ in windows)
    for _, step_windows in windows:
        assert max(len(w) for w in step_windows) == 16
        assert set().union(*map(set, step_windows)) == set(range(1024))
    assert max(batches) == 16
    assert out.shape == (1024, 4, SIZE, SIZE) and torch.isfinite(out).all()
    assert (out.flatten(1).std(dim=1) > 0).all()
    print(f"1024 frames, 2 steps: {elapsed:.1f}s, {len(windows[0][1])} windows per step")
    assert slots_in(model) == 0
    assert torch.equal(plain(model), before)



def test_interrupt_inside_a_window_leaves_nothing_patched(env, monkeypatch):
    """An interrupt requested while the first window runs (slots seated) stops the run at the next window with core's
    exception; the slots come out and the next run is normal."""
    import comfy.model_management as mm

    attach = _mod("comfy_glue.attach")
    seated, call = [], attach.Attachment.__call__

    def first_call_interrupts(self, layer, x, *args, **kwargs):
        if not seated:
            seated.append(slots_in(env.base))
            mm.interrupt_current_processing(True)  # as POST /interrupt does; core checks it before each window
        return call(self, layer, x, *args, **kwargs)

    monkeypatch.setattr(attach.Attachment, "__call__", first_call_interrupts)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            animate(env.nodes, env.base, env.motion, frames=20, context=scheduler(env, 16, 4))
    finally:
        mm.interrupt_current_processing(False)
        monkeypatch.undo()
    assert seated and seated[0] > 0
    assert_next_prompt_normal(env)


# -- dtypes and partial loading -----------------------------------------------------------------------------------


def test_dtype_matrix_fp32_compute(env):
    """fp32 compute with fp32/fp16/bf16 module files: the weights are stored in the dtype core picks for a UNet here
    (fp32 on the CPU, so no per-call cast), no NaN, and the fp16 and bf16 files within 5e-2 of fp32 (max difference
    over the output's std: only the files' rounding differs)."""
    import comfy.model_management as mm

    expected = mm.unet_dtype(mm.get_torch_device(), supported_dtypes=[torch.float16, torch.bfloat16, torch.float32])
    fx, good = _core_fixtures(), _good_sd()
    out = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        name = f"fm_dtype_{str(dtype)[6:]}.safetensors"
        fx.write_safetensors({k: v.to(dtype) for k, v in good.items()}, env.folder / name)
        motion = env.nodes["KinemaLoadMotionModule"].execute(model_name=name).args[0]
        assert {p.dtype for p in motion.patcher.model.parameters()} == {expected}, dtype
        out[dtype] = animate(env.nodes, env.base, motion)
        assert torch.isfinite(out[dtype]).all()
    scale = out[torch.float32].std().item()  # 1 euler step from sigma_max: latents of a few hundred
    fp16 = (out[torch.float16] - out[torch.float32]).abs().max().item() / scale
    bf16 = (out[torch.bfloat16] - out[torch.float32]).abs().max().item() / scale
    print(f"max |fp16 - fp32| / std = {fp16:.1e}, max |bf16 - fp32| / std = {bf16:.1e} (std {scale:.1f})")
    assert fp16 <= 5e-2 and bf16 <= 5e-2
    assert_next_prompt_normal(env)


def test_partial_loading_animates_identically(env, comfy_host, monkeypatch):
    """ComfyUI's low-VRAM partial load (a third of each model's weights loaded, the rest cast per layer) gives the
    same animation bit for bit.

    On a CPU load device core always full-loads (load_models_gpu sets vram_set_state = DISABLED), whatever
    --lowvram or --reserve-vram say, so the budget is forced at its single entry, LoadedModel.model_load; everything
    after it (partially_load, load with lowvram_model_memory, comfy_cast_weights, LowVramPatch) is core's own code.
    """
    import comfy.model_management as mm

    comfy_host.unload_models()
    budgets = []
    real = mm.LoadedModel.model_load

    def partial(self, lowvram_model_memory=0, force_patch_weights=False):
        budgets.append(type(self.model.model).__name__)
        return real(self, self.model.model_size() // 3, force_patch_weights=force_patch_weights)

    monkeypatch.setattr(mm.LoadedModel, "model_load", partial)
    out = animate(env.nodes, env.base, env.motion)
    unet, motion = env.base.model, env.motion.patcher.model
    lowvram = [unet.model_lowvram, motion.model_lowvram]
    loaded = [unet.model_loaded_weight_memory / env.base.model_size(),
              motion.model_loaded_weight_memory / env.motion.patcher.model_size()]
    monkeypatch.undo()
    comfy_host.unload_models()
    assert sorted(budgets) == ["BaseModel", "MotionModel"]
    assert lowvram == [True, True], loaded
    assert all(0 < f < 0.5 for f in loaded), loaded
    assert torch.equal(out, env.animated)
    assert_next_prompt_normal(env)


# -- on a real server: interrupt, and two motion modules in one prompt ---------------------------------------------


@pytest.fixture(scope="module")
def server_modules(comfy_server, tmp_path_factory) -> dict[str, str]:
    """Two different random full-size v2 modules (seeds 0 and 1), each also under a second name ("-solo") so a
    prompt using it is not answered from ComfyUI's cache."""
    from _models import write_motion_module

    folder = tmp_path_factory.mktemp("fm_modules")
    names = {}
    for tag, seed in (("a", 0), ("b", 1)):
        path = write_motion_module(folder / f"{tag}.safetensors", "v2", seed=seed)
        for suffix in ("", "-solo"):
            names[tag + suffix] = comfy_server.add_model("animatediff_models", path, f"fm-v2-{tag}{suffix}.safetensors")
    return names


def graph(ckpt: str, modules: list[str], frames: int, seed: int, steps: int = 1, context: tuple | None = None) -> dict:
    """An API prompt: one checkpoint -> one Sample Animation (and Save Latent, node ``<i>2``) per motion module."""
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
              "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a boat on a lake", "clip": ["1", 1]}},
              "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
              "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": frames}}}
    if context:
        prompt["5"] = {"class_type": "KinemaContextScheduler", "inputs": {
            "context_length": context[0], "context_overlap": context[1], "context_schedule": "standard_static",
            "fuse_method": "pyramid", "context_stride": 1, "closed_loop": False, "views": False}}
    for i, name in enumerate(modules, start=1):
        sample = {"model": ["1", 0], "motion_module": [f"{i}0", 0], "positive": ["2", 0], "negative": ["3", 0],
                  "latent_image": ["4", 0], "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "euler",
                  "scheduler": "normal", "denoise": 1.0, "motion_scale": 1.0,
                  "beta_schedule": "auto (motion module's)", "noise_type": "default"}
        if context:
            sample["context_options"] = ["5", 0]
        prompt[f"{i}0"] = {"class_type": "KinemaLoadMotionModule", "inputs": {"model_name": name}}
        prompt[f"{i}1"] = {"class_type": "KinemaSampleAnimation", "inputs": sample}
        prompt[f"{i}2"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"{i}1", 0],
                                                                  "filename_prefix": f"fault_matrix/{i}"}}
    return prompt


def saved_latent(server, entry: dict, node_id: str) -> torch.Tensor:
    """The tensor a Save Latent node of a finished prompt wrote."""
    from safetensors.torch import load_file

    item = entry["outputs"][node_id]["latents"][0]
    return load_file(str(server.output_dir / item["subfolder"] / item["filename"]))["latent_tensor"]


@pytest.mark.server
def test_interrupt_during_windowed_run(comfy_server, server_sd15, server_modules):
    """POST /interrupt mid-way through a windowed run: the history entry says execution_interrupted (no error, no
    traceback), and the next prompt on the same checkpoint gives exactly the result it gave before."""
    server = comfy_server
    before = server.run(graph(server_sd15, [server_modules["a"]], frames=2, seed=3), timeout=900)
    offset = len(server.log_text())
    prompt_id = server.post_prompt(graph(server_sd15, [server_modules["a"]], frames=12, seed=4, steps=10,
                                         context=(8, 4)))
    deadline = time.monotonic() + 900
    while not re.search(r"\b1/10 \[", server.log_since(offset)):  # tqdm: the first of 10 steps is done
        assert time.monotonic() < deadline and server.alive(), f"no sampling progress{server.log_since(offset)[-3000:]}"
        time.sleep(0.5)
    server.interrupt()
    entry = server.wait(prompt_id, timeout=600)
    status = entry["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    assert [kind for kind, _ in status["messages"]] == ["execution_start", "execution_cached", "execution_interrupted"]
    interrupted = status["messages"][-1][1]
    assert set(interrupted) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
    assert (interrupted["prompt_id"], interrupted["node_id"], interrupted["node_type"]) == (
        prompt_id, "11", "KinemaSampleAnimation")
    assert "11" not in interrupted["executed"] and "12" not in entry.get("outputs", {})
    assert server.tracebacks(server.log_since(offset)) == []
    after = server.run(graph(server_sd15, [server_modules["a-solo"]], frames=2, seed=3), timeout=900)
    assert torch.equal(saved_latent(server, after, "12"), saved_latent(server, before, "12"))


@pytest.mark.server
def test_two_motion_modules_on_one_checkpoint_in_one_prompt(comfy_server, server_sd15, server_modules):
    """One checkpoint feeding two Sample Animation nodes with different modules: both run, they differ, and each
    equals the same module's run alone (no state leaks between the two clones)."""
    server = comfy_server
    both = server.run(graph(server_sd15, [server_modules["a"], server_modules["b"]], frames=2, seed=7), timeout=900)
    a, b = saved_latent(server, both, "12"), saved_latent(server, both, "22")
    assert a.shape == b.shape == (2, 4, 8, 8) and torch.isfinite(a).all() and torch.isfinite(b).all()
    assert (a - b).abs().max() > 1e-4
    for name, together in ((server_modules["a-solo"], a), (server_modules["b-solo"], b)):
        alone = server.run(graph(server_sd15, [name], frames=2, seed=7), timeout=900)
        assert torch.equal(saved_latent(server, alone, "12"), together), name
