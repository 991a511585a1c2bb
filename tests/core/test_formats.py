"""Every supported motion-module layout is detected from keys and shapes alone and converts exactly."""
from __future__ import annotations

import math

import pytest
import torch
from _fixtures import (
    bundle_with_unet,
    diffusers_config,
    original_state_dict,
    tiny_spec,
    to_diffusers_keys,
    to_hotshot_keys,
    write_ckpt,
    write_diffusers_dir,
    write_safetensors,
)

from motion_modules import (
    detect,
    expected_shapes,
    identify_wrong_kind,
    load_motion_module,
    read_state_dict,
    sinusoidal_pe,
    standard_spec,
    to_internal,
    validate,
)
from motion_modules.model import MotionModel
from motion_modules.spec import USAGE_NOTES, is_pe_key

VERSIONS = ["v1", "v2", "v3", "animatelcm", "sdxl-beta", "hotshotxl"]
EXPECTED = {  # version -> (family, layout, pe_length, has_mid, base GroupNorm, sweet spot)
    "v1": ("sd15", "original", 24, False, "across_frames", 16),
    "v2": ("sd15", "original", 32, True, "per_frame", 16),
    "v3": ("sd15", "original", 32, False, "per_frame", 16),
    "animatelcm": ("sd15", "original", 64, True, "per_frame", 16),
    "sdxl-beta": ("sdxl", "original", 32, False, "per_frame", 16),
    "hotshotxl": ("sdxl", "hotshotxl", 24, False, "across_frames", 8),
}


def _file_layout(version: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """(spec, internal weights, weights as the real file stores them) for a tiny module of ``version``."""
    spec = tiny_spec(version)
    internal = original_state_dict(spec, dtype, seed)
    stored = original_state_dict(spec, dtype, seed, with_pe=version != "animatelcm")
    return spec, internal, to_hotshot_keys(stored) if version == "hotshotxl" else stored


def _write(sd, tmp_path, name: str, container: str):
    """Write ``sd`` as ``name`` in ``container`` ("safetensors" or "ckpt")."""
    if container == "safetensors":
        return write_safetensors(sd, tmp_path / f"{name}.safetensors")
    return write_ckpt(sd, tmp_path / f"{name}.ckpt")


def _assert_same(loaded: dict, reference: dict) -> None:
    """Same keys, and every tensor bit-identical with the same dtype."""
    assert loaded.keys() == reference.keys()
    for key, tensor in reference.items():
        assert loaded[key].dtype == tensor.dtype, key
        assert torch.equal(loaded[key], tensor), key


@pytest.mark.parametrize("container", ["safetensors", "ckpt"])
@pytest.mark.parametrize("version", VERSIONS)
def test_each_release_layout_is_detected_and_loaded_exactly(tmp_path, version, container):
    """Tiny random weights in each release's exact key layout load as that release, tensors unchanged."""
    spec, internal, stored = _file_layout(version)
    loaded_spec, loaded = load_motion_module(_write(stored, tmp_path, "motion", container))
    family, layout, pe, mid, groupnorm, sweet = EXPECTED[version]
    assert (loaded_spec.version, loaded_spec.family, loaded_spec.source_layout) == (version, family, layout)
    assert (loaded_spec.pe_length, loaded_spec.has_mid_block, loaded_spec.groupnorm) == (pe, mid, groupnorm)
    assert loaded_spec.sweet_spot_frames == sweet
    assert loaded_spec.widths == spec.widths
    assert loaded_spec.down_modules_per_level == (2,) * len(spec.widths)
    assert loaded_spec.up_modules_per_level == (3,) * len(spec.widths)
    assert loaded_spec.param_count == sum(t.numel() for k, t in internal.items() if not is_pe_key(k))
    _assert_same(loaded, internal)


@pytest.mark.parametrize("container", ["safetensors", "ckpt"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_repacks_keep_their_dtype(tmp_path, dtype, container):
    """fp16/bf16 repacks (same keys) are detected the same and keep their stored dtype."""
    _, internal, stored = _file_layout("v2", dtype)
    spec, loaded = load_motion_module(_write(stored, tmp_path, "mm_fp16", container))
    assert spec.version == "v2"
    assert spec.dtype == str(dtype).removeprefix("torch.")
    _assert_same(loaded, internal)


def test_checkpoint_nested_under_state_dict_with_extras(tmp_path):
    """A .ckpt holding {"state_dict": …, "epoch": …, "animatediff_config": …} loads its tensors only."""
    _, internal, stored = _file_layout("v3")
    path = write_ckpt(stored, tmp_path / "v3_sd15_mm.ckpt", nest="state_dict",
                      extra={"epoch": 3, "global_step": 100, "animatediff_config": "v3"})
    spec, loaded = load_motion_module(path)
    assert spec.version == "v3"
    _assert_same(loaded, internal)


def test_legacy_pre_zip_checkpoint_loads(tmp_path):
    """A checkpoint saved in torch's legacy (non-zip) pickle format loads through weights-only unpickling."""
    _, internal, stored = _file_layout("v1")
    spec, loaded = load_motion_module(write_ckpt(stored, tmp_path / "mm_sd_v14.ckpt", legacy=True))
    assert spec.version == "v1"
    _assert_same(loaded, internal)


def test_training_checkpoint_with_ddp_prefix_and_full_unet(tmp_path):
    """train.py saves (``module.`` keys, whole UNet, under state_dict) yield just the motion modules."""
    _, internal, stored = _file_layout("v2")
    path = write_ckpt(bundle_with_unet(stored), tmp_path / "checkpoint.ckpt", nest="state_dict",
                      extra={"epoch": 1})
    spec, loaded = load_motion_module(path)
    assert (spec.key_prefix, spec.bundled_unet, spec.version) == ("module.", True, "v2")
    _assert_same(loaded, internal)


def test_file_name_never_decides_the_version(tmp_path):
    """v1 weights named like a v2 file are still v1 (and v2 weights named v1 are v2)."""
    _, _, v1 = _file_layout("v1")
    _, _, v2 = _file_layout("v2")
    assert load_motion_module(write_safetensors(v1, tmp_path / "mm_sd_v15_v2.safetensors"))[0].version == "v1"
    assert load_motion_module(write_safetensors(v2, tmp_path / "mm_sd_v14.safetensors"))[0].version == "v2"


@pytest.mark.parametrize("with_pe", [True, False])
@pytest.mark.parametrize("version", ["v2", "v3", "sdxl-beta"])
def test_diffusers_folder_round_trips_to_the_original_weights(tmp_path, version, with_pe):
    """MotionAdapter folder (weights + config.json) → internal equals the original checkpoint exactly."""
    spec, internal, _ = _file_layout(version)
    folder = write_diffusers_dir(to_diffusers_keys(internal, with_pe), tmp_path / "adapter",
                                 diffusers_config(spec))
    loaded_spec, loaded = load_motion_module(folder)
    assert (loaded_spec.version, loaded_spec.source_layout) == (version, "diffusers")
    assert loaded_spec.pe_stored is with_pe
    _assert_same(loaded, internal)


def test_diffusers_bin_folder_and_full_unet_motion_model(tmp_path):
    """A folder with diffusion_pytorch_model.bin, and a whole UNetMotionModel save, both yield the modules."""
    spec, internal, _ = _file_layout("v2")
    diffusers = to_diffusers_keys(internal)
    folder = write_diffusers_dir(diffusers, tmp_path / "bin", diffusers_config(spec),
                                 weights_name="diffusion_pytorch_model.bin")
    _assert_same(load_motion_module(folder)[1], internal)
    whole = write_safetensors(bundle_with_unet(diffusers, prefix=""), tmp_path / "unet_motion.safetensors")
    loaded_spec, loaded = load_motion_module(whole)
    assert (loaded_spec.source_layout, loaded_spec.bundled_unet) == ("diffusers", True)
    _assert_same(loaded, internal)


def test_diffusers_single_file_without_config(tmp_path):
    """A lone MotionAdapter .safetensors (no config.json) loads, PE from its stored pos_embed tables."""
    spec, internal, _ = _file_layout("v1")
    path = write_safetensors(to_diffusers_keys(internal), tmp_path / "animatediff_v1_diffusers.safetensors")
    loaded_spec, loaded = load_motion_module(path)
    assert (loaded_spec.version, loaded_spec.pe_length) == ("v1", 24)
    _assert_same(loaded, internal)


def test_diffusers_config_supplies_pe_length_and_heads(tmp_path):
    """Without stored tables, config.json's motion_max_seq_length sets the PE; heads come from it too."""
    spec, internal, _ = _file_layout("v1")
    folder = write_diffusers_dir(to_diffusers_keys(internal, with_pe=False), tmp_path / "v1",
                                 diffusers_config(spec, motion_num_attention_heads=4))
    loaded_spec, loaded = load_motion_module(folder)
    assert (loaded_spec.version, loaded_spec.pe_length, loaded_spec.heads) == ("v1", 24, 4)
    _assert_same(loaded, internal)


def test_diffusers_pos_embed_feeds_both_attention_blocks():
    """One stored diffusers ``pos_embed.pe`` becomes both attention blocks' ``pos_encoder.pe``."""
    spec = tiny_spec("v2")
    internal = original_state_dict(spec)
    diffusers = to_diffusers_keys(internal)
    key = "down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe"
    diffusers[key] = torch.randn(1, 32, 32)
    out = to_internal(diffusers, detect(diffusers))
    base = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks"
    assert torch.equal(out[f"{base}.0.pos_encoder.pe"], diffusers[key])
    assert torch.equal(out[f"{base}.1.pos_encoder.pe"], diffusers[key])


def test_hotshot_keys_map_onto_the_internal_layout():
    """HotshotXL's temporal_attentions / positional_encoding keys land on the official names."""
    spec = tiny_spec("hotshotxl")
    internal = original_state_dict(spec)
    hotshot = to_hotshot_keys(internal)
    assert "up_blocks.2.temporal_attentions.2.transformer_blocks.0.attention_blocks.1.pos_encoder" \
           ".positional_encoding" in hotshot
    _assert_same(to_internal(hotshot, detect(hotshot)), internal)


def test_animatelcm_gets_the_standard_sinusoid_of_64_rows():
    """AnimateLCM stores no position tables; the filled ones are the standard sinusoid, 64 rows."""
    spec = tiny_spec("animatelcm")
    stored = original_state_dict(spec, with_pe=False)
    detected = detect(stored)
    out = to_internal(stored, detected)
    validate(out, detected)
    key = "up_blocks.0.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    assert (detected.pe_stored, detected.sampler_hint) == (False, "lcm")
    assert torch.equal(out[key], sinusoidal_pe(64, spec.widths[-1]))


def test_to_internal_does_not_mutate_its_input():
    """Converting leaves the caller's dict (keys and tensors) untouched."""
    spec = tiny_spec("v2")
    diffusers = to_diffusers_keys(original_state_dict(spec), with_pe=False)
    before = {k: v.clone() for k, v in diffusers.items()}
    to_internal(diffusers, detect(diffusers))
    _assert_same(diffusers, before)


@pytest.mark.parametrize("version", VERSIONS)
def test_real_layouts_are_never_mistaken_for_another_kind(version):
    """No motion-module layout trips a wrong-kind sentinel (original, diffusers, hotshot)."""
    _, internal, stored = _file_layout(version)
    assert identify_wrong_kind(stored) is None
    assert identify_wrong_kind(to_diffusers_keys(internal)) is None


def test_sinusoidal_pe_matches_the_formula():
    """pe[0, p, 2i] = sin(p·div_i), pe[0, p, 2i+1] = cos(p·div_i), div_i = exp(2i·(−ln 10000 / C))."""
    pe = sinusoidal_pe(24, 64)
    assert pe.shape == (1, 24, 64)
    for p, i in [(0, 0), (5, 3), (23, 31), (17, 10)]:
        div = math.exp(2 * i * (-math.log(10000.0) / 64))
        assert pe[0, p, 2 * i].item() == pytest.approx(math.sin(p * div), abs=1e-6)
        assert pe[0, p, 2 * i + 1].item() == pytest.approx(math.cos(p * div), abs=1e-6)


def test_standard_v2_layout_has_588_keys_and_453m_params():
    """mm_sd_v15_v2's layout: 21 modules × 28 keys = 588, 453.2M learned parameters; v1 has 560 keys."""
    v2 = standard_spec("v2")
    assert len(expected_shapes(v2)) == 588
    assert v2.param_count == 453_209_280
    assert len(expected_shapes(standard_spec("v1"))) == 560
    assert v2.describe() == ("SD1.5 · AnimateDiff v2 · 453.2M params · PE 32 (up to 32 frames per pass, "
                             "best at 16) · mid block · per-frame GroupNorm · " + USAGE_NOTES["v2"])


def test_detection_text_says_how_distilled_modules_want_sampling():
    """AnimateLCM's text names the lcm sampler, sgm_uniform and core's lcm model sampling; v2 says v2-compatible
    (AnimateDiff-Lightning has exactly its layout); v3 and SDXL beta carry no such note."""
    lcm = detect(original_state_dict(tiny_spec("animatelcm"), with_pe=False)).describe()
    assert lcm.startswith("SD1.5 · AnimateLCM")
    assert all(p in lcm for p in ("Model Sampling Discrete (lcm)", "sampler lcm", "sgm_uniform"))
    v2 = detect(original_state_dict(tiny_spec("v2"))).describe()
    assert "v2-compatible" in v2 and "AnimateDiff-Lightning" in v2
    for version in ("v3", "sdxl-beta"):
        text = standard_spec(version).describe()
        assert "sgm_uniform" not in text and "v2-compatible" not in text


def test_version_traits_follow_the_training_configs():
    """Schedules and GroupNorm modes per release, as in the official configs and code."""
    sdxl, hotshot, v1 = standard_spec("sdxl-beta"), standard_spec("hotshotxl"), standard_spec("v1")
    assert (sdxl.beta_schedule, sdxl.linear_start, sdxl.linear_end) == ("linear", 0.00085, 0.020)
    assert sdxl.module_groupnorm == "across_frames"
    assert (hotshot.beta_schedule, hotshot.linear_end, hotshot.sweet_spot_frames) == ("linear", 0.012, 8)
    assert (v1.beta_schedule, v1.linear_end, v1.groupnorm) == ("sqrt_linear", 0.012, "across_frames")
    assert standard_spec("v3").groupnorm == "per_frame"


@pytest.mark.parametrize("version", ["v2", "hotshotxl"])
def test_model_accepts_the_converted_weights_strictly(version):
    """The temporal-transformer model built from a detected spec loads the internal dict with strict=True."""
    _, _, stored = _file_layout(version)
    spec = detect(stored)
    result = MotionModel(spec).load_state_dict(to_internal(stored, spec), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_read_state_dict_returns_tensors_only(tmp_path):
    """Non-tensor entries of a checkpoint (epoch, strings) are dropped, tensors kept."""
    path = write_ckpt({"w": torch.ones(2)}, tmp_path / "x.ckpt", extra={"epoch": 1, "note": "hi"})
    assert list(read_state_dict(path)) == ["w"]


@pytest.mark.fullsize
def test_fullsize_v2_fp16_file_loads(request, tmp_path):
    """A full-size fp16 v2 file (588 keys, 453.2M params) loads and reports the right description."""
    if "fullsize" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size check: run with -m fullsize")
    spec = standard_spec("v2")
    sd = {k: (sinusoidal_pe(s[1], s[2], torch.float16) if is_pe_key(k) else torch.zeros(s, dtype=torch.float16))
          for k, s in expected_shapes(spec).items()}
    loaded_spec, loaded = load_motion_module(write_safetensors(sd, tmp_path / "mm_sd_v15_v2.fp16.safetensors"))
    assert len(loaded) == 588
    assert (loaded_spec.version, loaded_spec.param_count, loaded_spec.dtype) == ("v2", 453_209_280, "float16")
