"""Every wrong or broken file fails with one typed error that names the file and says what it found."""
from __future__ import annotations

import os

import pytest
import torch
from _fixtures import (
    diffusers_config,
    domain_adapter_state_dict,
    motion_lora_state_dict,
    original_state_dict,
    sd_checkpoint_state_dict,
    sd_lora_state_dict,
    tiny_spec,
    to_diffusers_keys,
    write_ckpt,
    write_diffusers_dir,
    write_malicious_pickle,
    write_safetensors,
)

from motion_modules import (
    KeyLayoutError,
    MotionModuleError,
    UnreadableFileError,
    WrongFileKindError,
    load_motion_module,
)


def _error(path, kind: type[MotionModuleError], *phrases: str) -> MotionModuleError:
    """Load ``path``, expect ``kind``; its one-line message names the file and every phrase."""
    with pytest.raises(kind) as info:
        load_motion_module(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert os.path.basename(path) in message
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    return info.value


def _v2(seed: int = 0) -> dict:
    """A tiny valid v2 module in the official layout."""
    return original_state_dict(tiny_spec("v2"), seed=seed)


def test_full_sd_checkpoint_is_named(tmp_path):
    """An SD checkpoint (model.diffusion_model.*) is recognised and sent to Load Checkpoint."""
    path = write_safetensors(sd_checkpoint_state_dict(), tmp_path / "v1-5-pruned-emaonly.safetensors")
    _error(path, WrongFileKindError, "full Stable Diffusion checkpoint", "Load Checkpoint")


def test_sd_lora_is_named(tmp_path):
    """A kohya SD LoRA (lora_unet_* / lora_te_*) is recognised and sent to core's LoraLoader."""
    path = write_safetensors(sd_lora_state_dict(), tmp_path / "style_lora.safetensors")
    _error(path, WrongFileKindError, "an SD LoRA", "LoraLoader")


@pytest.mark.parametrize("style", ["official", "peft", "kohya"])
def test_motion_lora_is_named(tmp_path, style):
    """A MotionLoRA in any of its layouts is recognised and sent to Apply MotionLoRA."""
    path = write_ckpt(motion_lora_state_dict(style), tmp_path / f"v2_lora_ZoomIn_{style}.ckpt")
    _error(path, WrongFileKindError, "MotionLoRA", "Apply MotionLoRA")


def test_v3_domain_adapter_is_named(tmp_path):
    """v3_sd15_adapter.ckpt (processor LoRA on spatial attention, under state_dict) goes to LoraLoader."""
    path = write_ckpt(domain_adapter_state_dict(), tmp_path / "v3_sd15_adapter.ckpt", nest="state_dict",
                      extra={"animatediff_config": "adapter"})
    _error(path, WrongFileKindError, "domain adapter", "LoraLoader")


def test_pia_module_is_named_as_unsupported(tmp_path):
    """A motion module carrying PIA's 9-channel conv_in is named, not half-loaded."""
    sd = {**_v2(), "conv_in.weight": torch.zeros(32, 9, 3, 3), "conv_in.bias": torch.zeros(32)}
    _error(write_safetensors(sd, tmp_path / "pia.safetensors"), WrongFileKindError, "PIA")


def test_truncated_safetensors_is_unreadable(tmp_path):
    """A .safetensors cut short (interrupted download) says truncated."""
    path = write_safetensors(_v2(), tmp_path / "mm_sd_v15_v2.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _error(path, UnreadableFileError, "truncated")


def test_safetensors_truncated_inside_its_header(tmp_path):
    """A .safetensors cut inside its JSON header also says truncated."""
    path = write_safetensors(_v2(), tmp_path / "cut.safetensors")
    path.write_bytes(path.read_bytes()[:200])
    _error(path, UnreadableFileError, "truncated")


def test_truncated_ckpt_is_unreadable(tmp_path):
    """A zip checkpoint cut short is reported as damaged or truncated."""
    path = write_ckpt(_v2(), tmp_path / "mm_sd_v15_v2.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _error(path, UnreadableFileError, "damaged or truncated")


def test_html_page_saved_as_ckpt(tmp_path):
    """An HTML page saved under a .ckpt name is called out as HTML."""
    path = tmp_path / "mm_sd_v15_v2.ckpt"
    path.write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>…</body></html>")
    _error(path, UnreadableFileError, "HTML page")


def test_empty_file(tmp_path):
    """A zero-byte file says empty."""
    path = tmp_path / "mm_sd_v15_v2.safetensors"
    path.write_bytes(b"")
    _error(path, UnreadableFileError, "empty file")


@pytest.mark.parametrize(("name", "phrase"), [("noise.ckpt", "unrecognised content"),
                                               ("noise.safetensors", "not a safetensors file")])
def test_random_bytes(tmp_path, name, phrase):
    """Random bytes are refused by content (first bytes shown), whatever the extension."""
    path = tmp_path / name
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1),
                                   dtype=torch.uint8).numpy().tobytes())
    _error(path, UnreadableFileError, phrase, "starts with bytes")


def test_git_lfs_pointer(tmp_path):
    """A Git LFS pointer in place of the weights is named as such."""
    path = tmp_path / "mm_sd_v15_v2.ckpt"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1817888431\n")
    _error(path, UnreadableFileError, "Git LFS pointer")


@pytest.mark.parametrize("zip_format", [True, False])
def test_code_running_pickle_is_refused_and_never_runs(tmp_path, zip_format):
    """A pickle whose __reduce__ would write a marker file is refused; the marker never appears."""
    marker = tmp_path / "pwned.txt"
    path = write_malicious_pickle(tmp_path / "evil.ckpt", marker, zip_format=zip_format)
    _error(path, UnreadableFileError, "refused by weights-only loading")
    assert not marker.exists()


def test_checkpoint_without_tensors(tmp_path):
    """A checkpoint holding no tensors says so and lists what it found."""
    path = tmp_path / "empty_dict.ckpt"
    torch.save({"epoch": 1, "global_step": 2}, str(path))
    _error(path, UnreadableFileError, "found none", "epoch")


def test_missing_path_and_empty_folder(tmp_path):
    """A path that does not exist, and a folder with no diffusers weights, are unreadable."""
    _error(tmp_path / "nope.safetensors", UnreadableFileError, "found nothing")
    (tmp_path / "adapter").mkdir()
    _error(tmp_path / "adapter", UnreadableFileError, "diffusion_pytorch_model.safetensors")


def test_unknown_layout_names_first_keys(tmp_path):
    """Valid tensors with no motion-module keys: KeyLayoutError listing the first keys found."""
    sd = {"encoder.layer.0.weight": torch.zeros(2), "head.bias": torch.zeros(2)}
    _error(write_safetensors(sd, tmp_path / "mystery.safetensors"), KeyLayoutError,
           "expected AnimateDiff motion-module keys", "encoder.layer.0.weight", "head.bias")


def test_missing_keys_are_counted_and_first_five_named(tmp_path):
    """Seven keys removed: the error counts 7 missing and names the first five, in layout order."""
    sd = _v2()
    removed = [k for k in sd if k.startswith("up_blocks.3.motion_modules.2.")][:7]
    for key in removed:
        del sd[key]
    error = _error(write_safetensors(sd, tmp_path / "partial.safetensors"), KeyLayoutError,
                   "7 missing", *removed[:5])
    assert error.missing == tuple(removed)
    assert removed[5] not in str(error)


def test_unexpected_keys_are_named(tmp_path):
    """Extra keys beside a complete module are named and counted; nothing loads."""
    sd = {**_v2(), "down_blocks.0.motion_modules.0.temporal_transformer.extra.weight": torch.zeros(2),
          "mid_block.motion_modules.1.temporal_transformer.norm.weight": torch.zeros(96)}
    error = _error(write_safetensors(sd, tmp_path / "extra.safetensors"), KeyLayoutError,
                   "2 unexpected", "temporal_transformer.extra.weight", "mid_block.motion_modules.1")
    assert len(error.unexpected) == 2


def test_wrong_shape_is_named_with_both_shapes(tmp_path):
    """A weight of the wrong shape is named with the shape found and the shape expected."""
    sd = _v2()
    key = "down_blocks.1.motion_modules.1.temporal_transformer.proj_out.weight"
    sd[key] = torch.zeros(64, 32)
    error = _error(write_safetensors(sd, tmp_path / "bent.safetensors"), KeyLayoutError,
                   "1 with the wrong shape", key, "[64, 32]", "[64, 64]")
    assert error.wrong_shapes == (key,)


def test_position_table_of_another_length_in_one_module(tmp_path):
    """One module whose PE table has another length than the rest is named."""
    sd = _v2()
    key = "up_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    sd[key] = torch.zeros(1, 24, 96)
    _error(write_safetensors(sd, tmp_path / "mixed_pe.safetensors"), KeyLayoutError, key, "[1, 24, 96]")


def test_missing_level_is_named(tmp_path):
    """A down level with no modules at all is reported by level, not as hundreds of keys."""
    sd = {k: v for k, v in _v2().items() if not k.startswith("down_blocks.1.")}
    _error(write_safetensors(sd, tmp_path / "gap.safetensors"), KeyLayoutError, "none at level 1")


def test_config_json_disagreeing_with_weights(tmp_path):
    """A diffusers folder whose config.json contradicts its weights names the config field."""
    spec = tiny_spec("v2")
    folder = write_diffusers_dir(to_diffusers_keys(original_state_dict(spec)), tmp_path / "adapter",
                                 diffusers_config(spec, block_out_channels=[320, 640, 1280, 1280]))
    _error(folder, KeyLayoutError, "config.json", "block_out_channels")
