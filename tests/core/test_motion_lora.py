"""MotionLoRA planning without ComfyUI: every format maps to the right weights, misfits are named, nothing is guessed."""
from __future__ import annotations

import re

import pytest
import torch
from _fixtures import (
    domain_adapter_state_dict,
    motion_lora_state_dict,
    original_state_dict,
    sd_checkpoint_state_dict,
    sd_lora_state_dict,
    tiny_spec,
)

from motion_modules import MotionModuleError, expected_shapes
from motion_modules.lora import (
    MotionLoRAError,
    MotionLoRAShapeError,
    NotAMotionLoRAError,
    lora_targets,
    plan_motion_lora,
    skipped_summary,
)

ATTN_RE = re.compile(r"\.attention_blocks\.\d\.to_(?:q|k|v|out\.0)\.weight$")


def attention_weights(spec) -> dict[str, tuple[int, int]]:
    """The attention projections an official MotionLoRA trains, with their (out, in) shapes."""
    return {k: s for k, s in expected_shapes(spec).items() if ATTN_RE.search(k)}


def lora_name(internal: str, style: str) -> str:
    """The file's name for one layer, spelled the way each trainer writes it (independent of the code under test)."""
    base = internal.removesuffix(".weight")
    diffusers = re.sub(r"\.attention_blocks\.(\d)\.", lambda m: f".attn{int(m[1]) + 1}.", base)
    diffusers = diffusers.replace(".temporal_transformer.", ".")
    if style == "official":
        return re.sub(r"\.(to_[qkv]|to_out)(?:\.0)?$", r".processor.\1", base)
    if style == "official-diffusers":  # diffusers save_attn_procs: processor keys on MotionAdapter names
        return re.sub(r"\.(to_[qkv]|to_out)(?:\.0)?$", r".processor.\1", diffusers)
    if style == "peft":  # diffusers MotionAdapter names under the pipeline's unet. prefix
        return "unet." + diffusers
    if style == "peft-internal":
        return "base_model.model." + base
    return "lora_unet_" + base.replace(".", "_")


FACTOR_KEYS = {"official": ("_lora.down.weight", "_lora.up.weight"),
               "official-diffusers": ("_lora.down.weight", "_lora.up.weight"), "peft": (".lora_A.weight", ".lora_B.weight"),
               "peft-internal": (".lora_A.weight", ".lora_B.weight"),
               "kohya": (".lora_down.weight", ".lora_up.weight")}


def write_lora(targets: dict[str, tuple[int, int]], style: str, rank: int = 4, seed: int = 0) -> dict:
    """Random factors for ``targets`` in ``style``; kohya files also get an alpha."""
    g = torch.Generator().manual_seed(seed)
    down_suffix, up_suffix = FACTOR_KEYS[style]
    out = {}
    for key, (o, i) in targets.items():
        name = lora_name(key, style)
        out[name + down_suffix] = torch.randn(rank, i, generator=g)
        out[name + up_suffix] = torch.randn(o, rank, generator=g)
        if style == "kohya":
            out[name + ".alpha"] = torch.tensor(float(rank) / 2)
    return out


@pytest.mark.parametrize("style", ["official", "official-diffusers", "peft", "peft-internal", "kohya"])
def test_every_layer_maps_to_its_internal_weight(style):
    """Each format's pairs map one-to-one onto the module's own weight keys, nothing skipped."""
    spec = tiny_spec("v2")
    targets = attention_weights(spec)
    sd = write_lora(targets, style)
    plan = plan_motion_lora(sd, spec, "move.ckpt", "mm.ckpt")
    assert plan.format == style.split("-")[0]
    assert plan.skipped == ()
    assert sorted(plan.key_map.values()) == sorted(targets)
    assert all(plan.key_map[lora_name(k, style)] == k for k in targets)
    assert plan.rank == 4


def test_peft_lora_on_every_linear_layer():
    """A PEFT LoRA may also train proj_in/proj_out and the feed-forward; those map too."""
    spec = tiny_spec("v3")
    targets = lora_targets(spec)
    plan = plan_motion_lora(write_lora(targets, "peft"), spec)
    assert len(plan.key_map) == len(targets) and any(".ff.net.0.proj." in k for k in plan.key_map.values())


@pytest.mark.parametrize("style", ["official", "peft", "kohya"])
def test_shared_fixture_layouts_are_read(style):
    """The MotionLoRA layouts the format tests write are applied, not just recognised."""
    plan = plan_motion_lora(motion_lora_state_dict(style, rank=4, width=32), tiny_spec("v2"))
    assert plan.key_map and plan.skipped == ()


def test_mid_block_keys_skip_on_a_module_without_mid_block():
    """A v2 LoRA (with mid block) on a v3 module: the mid-block keys are counted and named, the rest applies."""
    v2, v3 = tiny_spec("v2"), tiny_spec("v3")
    sd = write_lora(attention_weights(v2), "official")
    plan = plan_motion_lora(sd, v3, "v2_lora_ZoomIn.ckpt", "v3_sd15_mm.ckpt")
    mid = [k for k in sd if k.startswith("mid_block.")]
    assert len(mid) == 16 and set(plan.skipped) == set(mid)
    assert plan.missing_seats == ("mid_block.motion_modules.0",)
    assert len(plan.key_map) == len(attention_weights(v3))
    line = skipped_summary(plan, len(sd), "v3_sd15_mm.ckpt")
    assert line.startswith(f"16 of its {len(sd)} keys") and "mid_block.motion_modules.0" in line


def test_unrelated_keys_are_counted_not_applied():
    """Stray non-LoRA keys and half pairs are skipped and counted."""
    spec = tiny_spec("v2")
    sd = write_lora(attention_weights(spec), "kohya")
    half = next(k for k in sd if k.endswith(".lora_up.weight"))
    del sd[half]
    sd["lora_unet_down_blocks_0_motion_modules_0_foo.weight"] = torch.zeros(1)
    plan = plan_motion_lora(sd, spec)
    assert len(plan.skipped) == 3  # the stray key, and the half pair's down factor and alpha
    assert len(plan.key_map) == len(attention_weights(spec)) - 1


def test_sdxl_lora_on_sd15_module_names_both():
    """An SDXL MotionLoRA on an SD1.5 module: one error naming both files and both families."""
    sd = write_lora(attention_weights(tiny_spec("sdxl-beta", widths=(32, 64, 128))), "official")
    with pytest.raises(MotionLoRAShapeError) as info:
        plan_motion_lora(sd, tiny_spec("v2", widths=(32, 64, 128, 128)), "xl_lora_PanLeft.ckpt", "mm_sd_v15_v2.ckpt")
    message = str(info.value)
    for phrase in ("xl_lora_PanLeft.ckpt", "mm_sd_v15_v2.ckpt", "SDXL", "SD1.5 AnimateDiff v2", "do not fit"):
        assert phrase in message, (phrase, message)
    assert isinstance(info.value, MotionModuleError) and "\n" not in message


def test_rank_mismatch_between_factors_is_an_error():
    """Factors whose ranks disagree do not fit, whatever the widths."""
    spec = tiny_spec("v2")
    sd = write_lora(attention_weights(spec), "peft")
    key = next(k for k in sd if k.endswith(".lora_A.weight"))
    sd[key] = torch.zeros(3, sd[key].shape[1])
    with pytest.raises(MotionLoRAShapeError, match=r"\[3, 32\]"):
        plan_motion_lora(sd, spec)


@pytest.mark.parametrize("build, phrases", [
    (sd_lora_state_dict, ("an SD LoRA", "core's LoraLoader")),
    (domain_adapter_state_dict, ("v3 domain adapter", "core's LoraLoader")),
    (sd_checkpoint_state_dict, ("full Stable Diffusion checkpoint", "Load Checkpoint")),
    (lambda: original_state_dict(tiny_spec("v3")), ("a motion module", "Load Motion Module")),
    (lambda: {"foo.weight": torch.zeros(2)}, ("no MotionLoRA keys", "foo.weight")),
])
def test_other_files_say_what_they_are_and_where_they_belong(build, phrases):
    """SD LoRA, v3 adapter, checkpoints and motion modules offered as a MotionLoRA: what it is and where it goes."""
    with pytest.raises(NotAMotionLoRAError) as info:
        plan_motion_lora(build(), tiny_spec("v3"), "offered.safetensors")
    message = str(info.value)
    assert message.startswith("offered.safetensors: expected a MotionLoRA, found ")
    for phrase in phrases:
        assert phrase in message, (phrase, message)


def test_nothing_applies_is_an_error():
    """A LoRA whose every layer sits in seats the module lacks is refused, not silently ignored."""
    sd = {k: v for k, v in write_lora(attention_weights(tiny_spec("v2")), "official").items()
          if k.startswith("mid_block.")}
    with pytest.raises(MotionLoRAError, match=r"found none among its 16 keys .*mid_block\.motion_modules\.0"):
        plan_motion_lora(sd, tiny_spec("v3"), "mid_only.ckpt", "v3.ckpt")


def test_two_pairs_for_one_layer_is_an_error():
    """The same layer named twice (two spellings) would silently drop one; it is refused."""
    spec = tiny_spec("v2")
    key = next(iter(attention_weights(spec)))
    sd = {**write_lora({key: (32, 32)}, "official"), **write_lora({key: (32, 32)}, "peft")}
    with pytest.raises(MotionLoRAError, match="found two for"):
        plan_motion_lora(sd, spec)


def test_planning_does_not_touch_the_tensors():
    """Planning reads shapes only: the input dict and tensors are unchanged."""
    spec = tiny_spec("v2")
    sd = write_lora(attention_weights(spec), "kohya")
    before = {k: v.clone() for k, v in sd.items()}
    plan_motion_lora(sd, spec)
    assert sd.keys() == before.keys() and all(torch.equal(sd[k], before[k]) for k in sd)
