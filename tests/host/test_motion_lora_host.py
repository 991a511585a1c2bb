"""MotionLoRA on a real ComfyUI: exact weight math per format, nothing merged into shared weights, clear misfits,
and start/end percent windows."""
from __future__ import annotations

import logging
import re
import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import conditioning  # noqa: E402
from test_attach import sample, tiny_motion  # noqa: E402

ATTN_RE = re.compile(r"\.attention_blocks\.\d\.to_(?:q|k|v|out\.0)\.weight$")
FACTOR_KEYS = {"official": ("_lora.down.weight", "_lora.up.weight"), "peft": (".lora_A.weight", ".lora_B.weight"),
               "kohya": (".lora_down.weight", ".lora_up.weight")}


def _kinema(name: str):
    return import_module(f"kinema.{name}")


def _layer_name(internal: str, style: str) -> str:
    """How each trainer spells one layer: official processor keys, diffusers names under unet., kohya underscores."""
    base = internal.removesuffix(".weight")
    if style == "official":
        return re.sub(r"\.(to_[qkv]|to_out)(?:\.0)?$", r".processor.\1", base)
    if style == "peft":
        base = re.sub(r"\.attention_blocks\.(\d)\.", lambda m: f".attn{int(m[1]) + 1}.", base)
        return "unet." + base.replace(".temporal_transformer.", ".")
    return "lora_unet_" + base.replace(".", "_")


def make_lora(spec, style: str, rank: int = 4, seed: int = 0, alpha: float = 2.0, std: float = 0.05):
    """``(state dict, {internal key: ΔW at strength 1})``; ΔW = (alpha/rank for kohya) · up @ down, in float64."""
    g = torch.Generator().manual_seed(seed)
    down_suffix, up_suffix = FACTOR_KEYS[style]
    sd, deltas = {}, {}
    for key, shape in _kinema("motion_modules").expected_shapes(spec).items():
        if not ATTN_RE.search(key):
            continue
        down = torch.randn(rank, shape[1], generator=g) * std
        up = torch.randn(shape[0], rank, generator=g) * std
        name = _layer_name(key, style)
        sd[name + down_suffix], sd[name + up_suffix] = down, up
        scale = 1.0
        if style == "kohya":
            sd[name + ".alpha"] = torch.tensor(alpha)
            scale = alpha / rank
        deltas[key] = scale * (up.double() @ down.double())
    return sd, deltas


def write(sd: dict, path: Path) -> Path:
    """Official files are torch.save'd .ckpt dicts; the others .safetensors."""
    if path.suffix == ".ckpt":
        torch.save(dict(sd), str(path))
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def lora_file(tmp_path: Path, spec, style: str, **kw) -> tuple[Path, dict]:
    """A MotionLoRA file for ``spec`` in ``style`` and its per-layer deltas."""
    sd, deltas = make_lora(spec, style, **kw)
    suffix = ".ckpt" if style == "official" else ".safetensors"
    return write(sd, tmp_path / f"{style}_{kw.get('seed', 0)}{suffix}"), deltas


def apply(motion, path: Path, strength: float = 1.0, start: float = 0.0, end: float = 1.0):
    return _kinema("comfy_glue.lora").apply_motion_lora(motion, str(path), path.name, strength, start, end)


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def module_outputs(model, seed: int = 0) -> list[torch.Tensor]:
    """Every motion module's output on one seeded 4-frame input (plain SDPA attention)."""
    MotionCall = _kinema("motion_modules.model").MotionCall
    g = torch.Generator().manual_seed(seed)
    outs = []
    with torch.no_grad():
        for name in model.module_names():
            module = model.get_submodule(name)
            c = module.temporal_transformer.proj_in.in_features
            outs.append(module(torch.randn(4, c, 4, 4, generator=g), MotionCall(4)))
    return outs


def reference_outputs(spec, state: dict) -> list[torch.Tensor]:
    """The same outputs from a plain-torch MotionModel holding ``state``."""
    model = _kinema("motion_modules.model").MotionModel(spec)
    model.load_state_dict(state)
    return module_outputs(model.eval())


@pytest.fixture(scope="module")
def base(comfy_host):
    from _tiny import tiny_sd15_patcher

    return tiny_sd15_patcher(seed=0)


@pytest.mark.parametrize("style", ["official", "peft", "kohya"])
def test_patched_weights_are_w_plus_strength_delta(comfy_host, tmp_path, style):
    """After the patcher loads, W' = W + strength·scale·up@down for every layer, the output follows, and unpatch restores W."""
    motion = tiny_motion("v2", seed=1)
    original = weights(motion.patcher.model)
    path, deltas = lora_file(tmp_path, motion.spec, style)
    lora = apply(motion, path, strength=0.7)
    lora.patcher.patch_model()
    try:
        patched = weights(lora.patcher.model)
        outs = module_outputs(lora.patcher.model)
    finally:
        lora.patcher.unpatch_model()
    expected = {k: (v.double() + 0.7 * deltas[k]).float() if k in deltas else v for k, v in original.items()}
    assert len(deltas) == 4 * 2 * len(lora.patcher.model.module_names())
    for key, value in patched.items():
        tol = 1e-6 if key in deltas else 0.0
        assert (value - expected[key]).abs().max() <= tol, key
    ref = reference_outputs(motion.spec, expected)
    assert all((a - b).abs().max() <= 1e-5 for a, b in zip(outs, ref, strict=True))
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(outs, module_outputs(motion.patcher.model), strict=True))
    assert all(torch.equal(v, original[k]) for k, v in weights(motion.patcher.model).items())
    assert lora.loras == ((path.name, 0.7),) and motion.patcher.patches == {}


def test_two_loras_stack_as_the_sum_of_deltas(comfy_host, tmp_path):
    """Two chained MotionLoRAs (official at 1.0, kohya at -0.5) give W + Δ1 − 0.5·Δ2."""
    motion = tiny_motion("v3", seed=2)
    original = weights(motion.patcher.model)
    first, d1 = lora_file(tmp_path, motion.spec, "official", seed=1)
    second, d2 = lora_file(tmp_path, motion.spec, "kohya", seed=2)
    chained = apply(apply(motion, first, 1.0), second, -0.5)
    chained.patcher.patch_model()
    try:
        patched = weights(chained.patcher.model)
    finally:
        chained.patcher.unpatch_model()
    for key, delta in d1.items():
        want = (original[key].double() + delta - 0.5 * d2[key]).float()
        assert (patched[key] - want).abs().max() <= 1e-6, key
    assert [n for n, _ in chained.loras] == [first.name, second.name]
    assert all(torch.equal(v, original[k]) for k, v in weights(motion.patcher.model).items())


def test_strength_zero_is_no_lora(base, tmp_path):
    """Strength 0 samples bit-identically to the module without the LoRA; strength 1 does not."""
    attach = _kinema("comfy_glue.attach")
    motion = tiny_motion("v2", seed=3)
    path, _ = lora_file(tmp_path, motion.spec, "peft", std=0.3)
    plain = sample(attach.attach(base, motion), frames=2)
    assert torch.equal(sample(attach.attach(base, apply(motion, path, 0.0)), frames=2), plain)
    assert (sample(attach.attach(base, apply(motion, path, 1.0)), frames=2) - plain).abs().max() > 1e-4


def test_removing_the_lora_restores_the_module(base, tmp_path):
    """After sampling with a LoRA'd module, the same MOTION_MODULE without it samples as never patched, and
    unloading leaves the shared weights exactly as loaded."""
    import comfy.model_management

    attach = _kinema("comfy_glue.attach")
    motion = tiny_motion("v2", seed=4)
    original = weights(motion.patcher.model)
    path, _ = lora_file(tmp_path, motion.spec, "official", std=0.3)
    never = sample(attach.attach(base, motion), frames=2, seed=7)
    with_lora = sample(attach.attach(base, apply(motion, path, 1.0)), frames=2, seed=7)
    after = sample(attach.attach(base, motion), frames=2, seed=7)
    assert (with_lora - never).abs().max() > 1e-4
    assert torch.equal(after, never)
    sample(attach.attach(base, apply(motion, path, 1.0)), frames=2, seed=7)
    comfy.model_management.unload_all_models()
    assert all(torch.equal(v, original[k]) for k, v in weights(motion.patcher.model).items())


def test_mid_block_keys_on_a_v3_module_warn_with_the_count(comfy_host, tmp_path, caplog):
    """A v2 MotionLoRA on a v3 module applies where it fits and logs how many keys were skipped, and why."""
    v2 = tiny_motion("v2").spec
    motion = tiny_motion("v3", seed=5)
    path, deltas = lora_file(tmp_path, v2, "official")
    with caplog.at_level(logging.WARNING):
        lora = apply(motion, path)
    skipped = 8 * sum(1 for k in deltas if k.startswith("mid_block.")) // 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and path.name in r.getMessage()]
    assert len(warnings) == 1
    assert f"{skipped} of its {2 * len(deltas)} keys do not apply" in warnings[0]
    assert "mid_block.motion_modules.0" in warnings[0]
    assert len(lora.patcher.patches) == sum(1 for k in deltas if not k.startswith("mid_block."))


@pytest.mark.parametrize("case", ["sdxl_on_sd15", "sd_lora", "domain_adapter", "sd_checkpoint"])
def test_misfits_raise_one_clear_error_and_patch_nothing(comfy_host, tmp_path, case):
    """SDXL LoRA on SD1.5, SD LoRA, v3 adapter, SD checkpoint: one error naming both sides; nothing stays patched."""
    motion = tiny_motion("v2", seed=6)
    original = weights(motion.patcher.model)
    up, down = torch.zeros(32, 4), torch.zeros(4, 32)
    if case == "sdxl_on_sd15":
        sd, _ = make_lora(tiny_motion("sdxl-beta", widths=(32, 64, 128)).spec, "official")
        phrases, error = ("SDXL", "SD1.5 AnimateDiff v2", motion.name), "MotionLoRAShapeError"
    elif case == "sd_lora":
        key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
        sd = {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(4.0)}
        phrases, error = ("an SD LoRA", "core's LoraLoader"), "NotAMotionLoRAError"
    elif case == "domain_adapter":
        key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora"
        sd = {f"{key}.down.weight": down, f"{key}.up.weight": up}
        phrases, error = ("v3 domain adapter", "core's LoraLoader"), "NotAMotionLoRAError"
    else:
        sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3)}
        phrases, error = ("full Stable Diffusion checkpoint", "Load Checkpoint"), "NotAMotionLoRAError"
    path = write(sd, tmp_path / f"{case}.safetensors")
    with pytest.raises(getattr(_kinema("motion_modules.lora"), error)) as info:
        apply(motion, path)
    message = str(info.value)
    assert message.startswith(f"{path.name}: expected a MotionLoRA")
    assert all(p in message for p in phrases), message
    assert motion.patcher.patches == {} and motion.patcher.weight_wrapper_patches == {}
    assert all(torch.equal(v, original[k]) for k, v in weights(motion.patcher.model).items())


def attach_with_steps(base, motion):
    """attach(): its APPLY_MODEL wrapper runs every model call inside motion_step."""
    return _kinema("comfy_glue.attach").attach(base, motion)


def evaluated_percents(model, steps: int, denoise: float) -> list[float]:
    """The percent of the schedule at each sigma KSampler evaluates (normal scheduler, partial denoise)."""
    import comfy.samplers

    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "normal", int(steps / denoise))[-(steps + 1):-1]
    return [1.0 - float(sampling.timestep(s)) / 999.0 for s in sigmas]


def test_windowed_lora_outside_motion_step_is_a_clear_error(comfy_host, tmp_path):
    """A windowed LoRA run where no sampling step is known fails with one sentence naming the file."""
    motion = tiny_motion("v2", seed=8)
    path, _ = lora_file(tmp_path, motion.spec, "kohya")
    lora = apply(motion, path, 1.0, 0.2, 0.6)
    lora.patcher.patch_model()
    try:
        with pytest.raises(_kinema("comfy_glue.lora").MotionLoRAScheduleError, match=path.name):
            module_outputs(lora.patcher.model)
    finally:
        lora.patcher.unpatch_model()


def test_active_window_equals_the_static_patch(comfy_host, tmp_path):
    """Inside its window a windowed LoRA gives exactly the static patch's outputs; outside, the plain module's."""
    lora_mod = _kinema("comfy_glue.lora")
    motion = tiny_motion("v2", seed=9)
    path, _ = lora_file(tmp_path, motion.spec, "official")
    plain = module_outputs(motion.patcher.model)
    static = apply(motion, path, 0.8)
    static.patcher.patch_model()
    try:
        want = module_outputs(static.patcher.model)
    finally:
        static.patcher.unpatch_model()
    windowed = apply(motion, path, 0.8, 0.25, 0.75)
    from comfy.model_sampling import ModelSamplingDiscrete

    model_sampling = ModelSamplingDiscrete()
    windowed.patcher.patch_model()
    try:
        with lora_mod.motion_step(model_sampling.percent_to_sigma(0.5), model_sampling):
            inside = module_outputs(windowed.patcher.model)
        with lora_mod.motion_step(model_sampling.percent_to_sigma(0.9), model_sampling):
            outside = module_outputs(windowed.patcher.model)
    finally:
        windowed.patcher.unpatch_model()
    assert all(torch.equal(a, b) for a, b in zip(inside, want, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(outside, plain, strict=True))


def test_start_end_percent_windows_through_sampling(base, tmp_path):
    """Through ComfyUI's sampler at denoise 0.5: a window before the run equals no LoRA, [0, 1] equals the
    unscheduled LoRA, and a window holding only the middle step differs from both."""
    import comfy.sample

    motion = tiny_motion("v2", seed=10)
    path, _ = lora_file(tmp_path, motion.spec, "official", std=0.3)
    steps, denoise = 3, 0.5
    percents = evaluated_percents(attach_with_steps(base, motion), steps, denoise)
    assert 0.4 < percents[0] < 0.7 < percents[1] < 0.9 < percents[2]  # so the windows below mean what they say
    latent = torch.zeros(2, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 0)

    def run(lora_args=None):
        m = motion if lora_args is None else apply(motion, path, *lora_args)
        return comfy.sample.sample(attach_with_steps(base, m), noise, steps, 5.0, "euler", "normal",
                                   conditioning(0), conditioning(1), latent, denoise=denoise, seed=0,
                                   disable_pbar=True)

    plain, unscheduled = run(), run((1.0,))
    assert torch.equal(run((1.0, 0.0, 0.4)), plain)
    assert torch.equal(run((1.0, 0.0, 1.0)), unscheduled)
    middle = run((1.0, 0.7, 0.9))
    assert (middle - plain).abs().max() > 1e-4 and (middle - unscheduled).abs().max() > 1e-4
    assert (unscheduled - plain).abs().max() > 1e-4


def test_node_schema_and_window_validation(comfy_host):
    """The node lists its widgets in the order the workflow generator writes them and refuses start > end."""
    _kinema("comfy_glue.loading").register_folders()
    node = _kinema("nodes.lora").ApplyMotionLoRA
    schema = node.define_schema()
    assert schema.node_id == "KinemaApplyMotionLoRA" and schema.display_name == "Apply MotionLoRA"
    assert [i.id for i in schema.inputs] == ["motion_module", "lora_name", "strength", "start_percent", "end_percent"]
    assert all(i.tooltip for i in schema.inputs)
    strength = schema.inputs[2]
    assert (strength.min, strength.max, strength.default) == (-10.0, 10.0, 1.0)
    assert node.validate_inputs(start_percent=0.2, end_percent=0.8) is True
    assert "must not exceed" in node.validate_inputs(start_percent=0.8, end_percent=0.2)


@pytest.mark.server
def test_server_lists_the_node_and_its_lora_files(comfy_server, tmp_path):
    """A real server registers Apply MotionLoRA (V3 schema accepted) and lists files in animatediff_motion_lora."""
    path = tmp_path / "v2_lora_ZoomIn.safetensors"
    save_file({"down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0"
               ".processor.to_q_lora.down.weight": torch.zeros(4, 32)}, str(path))
    name = comfy_server.add_model("animatediff_motion_lora", path)
    info = comfy_server.object_info(refresh=True).get("KinemaApplyMotionLoRA")
    assert info is not None, comfy_server.log_text()[-4000:]
    assert info["display_name"] == "Apply MotionLoRA"
    required = info["input"]["required"]
    assert list(required) == ["motion_module", "lora_name", "strength", "start_percent", "end_percent"]
    combo = required["lora_name"]
    options = combo[0] if isinstance(combo[0], list) else combo[1].get("options", [])
    assert name in options
