"""SparseCtrl in ComfyUI's own sampling: keyframes steer the frames near them, strength 0 is exactly off, bad
indices and image counts are one clear error before sampling, and keyframes follow the context windows."""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
import _models  # noqa: E402
from _tiny import conditioning, tiny_sd15_patcher  # noqa: E402
from test_attach import tiny_motion  # noqa: E402
from test_context_control import noise_for, run, with_context  # noqa: E402

FRAMES = 16
TINY_WIDTHS = (32, 64, 128, 128)  # the tiny UNet's levels (tests/host/_tiny.py)


def _mod(name: str):
    return import_module(f"kinema.{name}")


@pytest.fixture(scope="module")
def animated(comfy_host):
    return _mod("comfy_glue.attach").attach(tiny_sd15_patcher(seed=0), tiny_motion("v2", seed=4))


@pytest.fixture(scope="module")
def scribble(comfy_host):
    """A tiny scribble SparseCtrl (official layout, random weights) on its own CPU patcher."""
    import comfy.model_patcher

    fmt, glue = _mod("motion_modules.sparsectrl_format"), _mod("comfy_glue.sparsectrl")
    sd = _models.sparsectrl_state_dict("scribble", torch.float32, TINY_WIDTHS, 32, seed=7)
    spec = fmt.detect(sd)
    patcher = comfy.model_patcher.ModelPatcher(fmt.build_encoder(spec, sd), load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    return glue.LoadedSparseCtrl(patcher, spec, "tiny_scribble.ckpt")


def scribbles(n: int, seed: int = 0) -> torch.Tensor:
    """An IMAGE batch (n, 64, 64, 3)."""
    return torch.rand(n, 64, 64, 3, generator=torch.Generator().manual_seed(seed))


def sparse_conds(sparse, images, indices: str, strength: float = 1.0):
    """(positive, negative) through Apply SparseCtrl's glue."""
    return _mod("comfy_glue.sparsectrl").apply_sparsectrl(conditioning(0), conditioning(1), sparse, images, indices,
                                                          strength, 0.0, 1.0)


def _per_frame_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean |a - b| per frame, (frames,)."""
    return (a - b).abs().flatten(1).mean(1)


def test_keyframe_image_steers_its_own_frame_most(animated, scribble):
    """Changing the keyframe at frame 0 changes frame 0 more than frame 15 (and changes something)."""
    noise = noise_for(FRAMES)
    one = run(animated, noise, sparse_conds(scribble, scribbles(1, 0), "0"))
    other = run(animated, noise, sparse_conds(scribble, scribbles(1, 1), "0"))
    change = _per_frame_change(one, other)
    assert change[0] > 1e-4
    assert change[0] > 2 * change[FRAMES - 1]


def test_strength_zero_is_bit_for_bit_off(animated, scribble):
    """Strength 0 gives exactly the frames of sampling without SparseCtrl."""
    noise = noise_for(FRAMES)
    plain = run(animated, noise, (conditioning(0), conditioning(1)))
    off = run(animated, noise, sparse_conds(scribble, scribbles(2), "0,15", strength=0.0))
    assert torch.equal(plain, off)
    on = run(animated, noise, sparse_conds(scribble, scribbles(2), "0,15"))
    assert not torch.equal(plain, on)


@pytest.mark.parametrize("indices, images, needle", [
    ("0,16", 2, "frame '16' is outside the clip, which has frames 0 to 15"),
    ("-17", 1, "frame '-17' is outside the clip"),
    ("0,15", 3, "images must hold 1 image or one per keyframe (2 for '0,15' in a 16-frame clip), but it holds 3"),
])
def test_bad_keyframes_are_one_clear_error_before_sampling(animated, scribble, indices, images, needle):
    """Indices outside the clip and image counts that fit neither 1 nor the keyframes stop before any model call."""
    calls = []
    model = animated.clone()
    model.set_model_unet_function_wrapper(lambda apply, args: calls.append(1) or apply(args["input"], args["timestep"],
                                                                                    **args["c"]))
    with pytest.raises(ValueError) as info:
        run(model, noise_for(FRAMES), sparse_conds(scribble, scribbles(images), indices))
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert calls == []


def test_keyframes_follow_the_context_windows(animated, scribble):
    """Under windows of 16 over 40 frames, a keyframe at frame 30 steers frame 30, not frame 5."""
    model, noise = with_context(animated), noise_for(40)
    one = run(model, noise, sparse_conds(scribble, scribbles(1, 0), "30"))
    other = run(model, noise, sparse_conds(scribble, scribbles(1, 1), "30"))
    change = _per_frame_change(one, other)
    assert change[30] > 1e-4
    assert change[30] > 2 * change[5]


def test_chains_after_a_core_controlnet(animated, scribble):
    """After core's Apply ControlNet, strength 0 keeps exactly the ControlNet's result and strength 1 adds to it."""
    from _tiny import tiny_controlnet

    import nodes

    glue = _mod("comfy_glue.sparsectrl")
    hint = scribbles(1, 5)
    base = nodes.ControlNetApplyAdvanced().apply_controlnet(conditioning(0), conditioning(1), tiny_controlnet(seed=11),
                                                            hint, 0.9, 0.0, 1.0)
    noise = noise_for(FRAMES)
    alone = run(animated, noise, base)
    off = run(animated, noise, glue.apply_sparsectrl(*base, scribble, scribbles(1), "0", 0.0, 0.0, 1.0))
    on_pos, on_neg = glue.apply_sparsectrl(*base, scribble, scribbles(1), "0", 1.0, 0.0, 1.0)
    assert on_pos[0][1]["control"].previous_controlnet is base[0][0][1]["control"]
    assert torch.equal(alone, off)
    assert not torch.equal(alone, run(animated, noise, (on_pos, on_neg)))
