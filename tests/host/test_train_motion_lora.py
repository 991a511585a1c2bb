"""Train MotionLoRA in-process on a tiny model: the loss falls, the saved file loads back to the same weights through
Apply MotionLoRA, strength 0 is the base module, the inputs are never changed, and bad inputs are one error each."""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import (  # noqa: E402
    conditioning,
    loaded_motion,
    motion_state_dict,
    randomize_fan_in,
    sd15_patcher,
    tiny_unet_config,
)
from test_attach import sample  # noqa: E402

FRAMES, SIZE, STEPS = 6, 8, 20
WIDTHS = (32, 64, 128, 128)


def _k(name: str):
    return import_module(f"kinema.{name}")


def pattern(seed: int, size: int = SIZE) -> torch.Tensor:
    """A smooth random 4-channel latent image (bicubic upsampling of a half-size normal field)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randn(1, 4, size // 2, size // 2, generator=g)
    return torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)[0]


def moving_clip(seed: int, speed: int = 1, frames: int = FRAMES) -> torch.Tensor:
    """``pattern(seed)`` rolled ``speed`` latent pixels right per frame, (frames, 4, h, w)."""
    p = pattern(seed)
    return torch.stack([torch.roll(p, speed * f, dims=-1) for f in range(frames)])


def settings(**kw):
    base = {"rank": 4, "steps": STEPS, "learning_rate": 1e-2, "noise_levels": 1, "seed": 0,
            "beta_schedule": "model's own"}
    return _k("comfy_glue.train").TrainSettings(**{**base, **kw})


def build(version: str = "v2"):
    """A tiny SD1.5 model and motion module, made under inference mode as ComfyUI's loaders make them."""
    with torch.inference_mode():
        model = sd15_patcher(tiny_unet_config(), 0, init=randomize_fan_in)
        spec = _k("motion_modules").standard_spec(version, widths=WIDTHS)
        motion = loaded_motion(spec, motion_state_dict(spec, 1), f"tiny_{version}.safetensors")
    return model, motion


def snapshot(patcher) -> dict:
    """Every weight of a patcher's model (values and the tensor objects), plus its patch bookkeeping."""
    sd = patcher.model.state_dict(keep_vars=True)
    return {"values": {k: v.detach().clone() for k, v in sd.items()}, "ids": {k: id(v) for k, v in sd.items()},
            "patches": dict(patcher.patches), "wrappers": dict(patcher.weight_wrapper_patches),
            "uuid": patcher.patches_uuid}


def same_as(patcher, snap: dict) -> bool:
    """Whether the patcher's weights are bit-identical (and the same tensors) and it carries no new patches."""
    sd = patcher.model.state_dict(keep_vars=True)
    return (all(torch.equal(sd[k], v) for k, v in snap["values"].items())
            and {k: id(v) for k, v in sd.items()} == snap["ids"] and dict(patcher.patches) == snap["patches"]
            and dict(patcher.weight_wrapper_patches) == snap["wrappers"] and patcher.patches_uuid == snap["uuid"])


@pytest.fixture(scope="module")
def trained(comfy_host):
    """One training run on a clip moving right, with snapshots of the inputs taken before."""
    _k("comfy_glue.loading").register_folders()
    model, motion = build()
    before = {"model": snapshot(model), "motion": snapshot(motion.patcher)}
    with torch.inference_mode():  # as ComfyUI executes nodes
        result = _k("comfy_glue.train").train_motion_lora(model, motion, conditioning(0), moving_clip(0), settings(),
                                                          prefix="test/right")
    return {"model": model, "motion": motion, "result": result, "before": before}


def test_loss_falls_by_a_tenth_in_20_steps(trained):
    """Mean loss of the last 5 of 20 steps is at most 0.9 x that of the first 5 (fixed clip, lr 1e-2, rank 4;
    measured 1.229 -> 1.039, 0.85 x, on a random tiny UNet whose ε-loss floor is near 1)."""
    losses = trained["result"].losses
    assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last <= 0.9 * first, (first, last)


def test_inputs_unchanged_after_training(trained):
    """The MODEL and MOTION_MODULE given are bit-identical afterwards (same tensors, inference tensors still) and carry
    no patches or wrappers; the base still samples exactly as a fresh copy does."""
    model, motion = trained["model"], trained["motion"]
    assert same_as(model, trained["before"]["model"])
    assert same_as(motion.patcher, trained["before"]["motion"])
    assert all(p.is_inference() for p in motion.patcher.model.parameters())
    fresh_model, fresh_motion = build()
    attach = _k("comfy_glue.attach").attach
    assert torch.equal(sample(attach(model, motion), seed=2), sample(attach(fresh_model, fresh_motion), seed=2))


def test_saved_file_is_official_and_round_trips_through_apply_motion_lora(trained):
    """The file has official keys for q, k, v, out of every temporal attention, and Apply MotionLoRA (by name, from
    models/animatediff_motion_lora) patches exactly the weights the returned module carries: W + up @ down, with
    up @ down exactly the ΔW training used."""
    import comfy.utils

    result, motion = trained["result"], trained["motion"]
    sd = comfy.utils.load_torch_file(result.path)
    plan = _k("motion_modules.lora").plan_motion_lora(sd, motion.spec)
    assert plan.format == "official" and plan.rank == 4 and not plan.skipped
    assert len(plan.key_map) == len(_k("motion_modules.training").attention_targets(motion.spec))
    assert all(".processor.to_" in k and k.endswith(("_lora.down.weight", "_lora.up.weight")) for k in sd)
    loaded = _k("comfy_glue.lora").apply_by_name(motion, result.lora_name, 1.0)
    with torch.inference_mode():
        ours, theirs = patched_weights(result.motion), patched_weights(loaded)
    base = motion.patcher.model.state_dict()
    assert ours.keys() == theirs.keys()
    diff = {k: float((ours[k] - theirs[k]).abs().max()) for k in ours if not torch.equal(ours[k], theirs[k])}
    assert not diff, (len(diff), list(diff.items())[:3], {k: float((ours[k] - base[k]).abs().max()) for k in list(diff)[:3]})
    trained_deltas = {k: result.factors.delta(i) for i, k in enumerate(result.factors.keys)}
    for internal_prefix, internal in plan.key_map.items():
        delta = sd[f"{internal_prefix}_lora.up.weight"] @ sd[f"{internal_prefix}_lora.down.weight"]
        assert torch.equal(delta, trained_deltas[internal])
        torch.testing.assert_close(ours[internal], base[internal] + delta, rtol=0, atol=1e-6)
    assert any((ours[k] - base[k]).abs().max() > 1e-4 for k in plan.key_map.values())


def patched_weights(motion) -> dict:
    """The module's weights with its patcher's patches applied (then unpatched again), after ComfyUI unloads what
    is loaded (the training run's clone stays loaded, as any sampled model does, until something else loads)."""
    import comfy.model_management

    comfy.model_management.unload_all_models()
    motion.patcher.patch_model()
    try:
        return {k: v.detach().clone() for k, v in motion.patcher.model.state_dict().items()}
    finally:
        motion.patcher.unpatch_model()


def test_strength_zero_equals_the_base_module_bit_for_bit(trained):
    """Apply MotionLoRA at strength 0 on the trained file samples exactly as the untouched module."""
    motion, result = trained["motion"], trained["result"]
    attach = _k("comfy_glue.attach").attach
    off = _k("comfy_glue.lora").apply_by_name(motion, result.lora_name, 0.0)
    plain = sample(attach(trained["model"], motion), seed=4)
    assert torch.equal(sample(attach(trained["model"], off), seed=4), plain)
    assert not torch.equal(sample(attach(trained["model"], result.motion), seed=4), plain)


@pytest.mark.parametrize("frames, kw, words", [
    (1, {}, "at least 2 frames"),
    (33, {}, "at most 32 frames"),
    (FRAMES, {"rank": 0}, "rank must be at least 1"),
    (FRAMES, {"steps": 0}, "steps must be at least 1"),
    (8, {"clip_frames": 3}, "8 frames does not split into clips of clip_frames = 3"),
    (66, {"clip_frames": 33}, "at most 32 frames"),
])
def test_bad_inputs_are_one_error_before_training(comfy_host, tmp_path, frames, kw, words):
    """Too few frames, more than the PE length (per clip), rank 0, steps 0, a batch that is no whole number of clips:
    one TrainingInputError, no file written."""
    _k("comfy_glue.loading").register_folders()
    model, motion = build()
    train = _k("comfy_glue.train")
    with pytest.raises(_k("motion_modules.training").TrainingInputError, match=words) as info:
        train.train_motion_lora(model, motion, conditioning(0), moving_clip(0, frames=frames), settings(**kw),
                                prefix="test/bad")
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")
    assert not list(Path(train.lora_path("test/bad")[0]).parent.glob("bad_*"))


@pytest.mark.parametrize("latent, images, vae, words", [
    (None, None, None, "neither"),
    ({"samples": torch.zeros(4, 4, 8, 8)}, torch.zeros(4, 64, 64, 3), None, "both"),
    (None, torch.zeros(4, 64, 64, 3), None, "no vae"),
])
def test_clip_input_errors(comfy_host, latent, images, vae, words):
    """The clip must be images with a VAE or a latent, not both nor neither: one sentence each."""
    with pytest.raises(_k("motion_modules.training").TrainingInputError, match=words):
        _k("comfy_glue.train").clip_latents(latent, images, vae)


def test_several_clips_train_one_whole_clip_per_loss(comfy_host, monkeypatch):
    """With clip_frames, a batch of three clips trains clip by clip: every loss gets one whole clip, scaled as core
    scales the latent it samples, and each clip once per round of three."""
    train = _k("comfy_glue.train")
    seen, original = [], train._TrainLoop._clip_loss

    def record(self, model_wrap, model_sampling, extra_args, x0, *rest):
        seen.append(x0.detach().clone())
        return original(self, model_wrap, model_sampling, extra_args, x0, *rest)

    monkeypatch.setattr(train._TrainLoop, "_clip_loss", record)
    clips = [moving_clip(s, frames=4) for s in (0, 1, 2)]
    model, motion = build()
    with torch.inference_mode():
        factors, losses = train.train_factors(model, motion, conditioning(0), torch.cat(clips),
                                              settings(steps=3, noise_levels=2, clip_frames=4))
    scale = model.model.latent_format.scale_factor
    which = [[i for i, c in enumerate(clips) if torch.allclose(x, c * scale)] for x in seen]
    assert len(losses) == 3 and all(len(w) == 1 for w in which), which
    which = [w[0] for w in which]
    assert sorted(which[:3]) == [0, 1, 2] and sorted(which[3:]) == [0, 1, 2]
    assert any(p.abs().max() > 0 for p in factors.up)


def test_learn_reverse_trains_strength_minus_one_on_the_clip_played_backwards(comfy_host, monkeypatch):
    """With learn_reverse, every second loss runs the LoRA at −1 (the applied weights are base − ΔW) on the clip in
    reverse frame order; the others at +1 on the clip as given; the factors end at sign +1, as saved."""
    train = _k("comfy_glue.train")
    seen, original = [], train._TrainLoop._clip_loss

    def record(self, model_wrap, model_sampling, extra_args, x0, *rest):
        seen.append((x0.detach().clone(), self.factors.sign, self.factors.delta(0).detach().clone(),
                     (self.factors.up[0] @ self.factors.down[0]).detach().clone()))
        return original(self, model_wrap, model_sampling, extra_args, x0, *rest)

    monkeypatch.setattr(train._TrainLoop, "_clip_loss", record)
    clip = moving_clip(0, frames=4)
    model, motion = build()
    with torch.inference_mode():
        factors, _ = train.train_factors(model, motion, conditioning(0), clip,
                                         settings(steps=3, noise_levels=2, learn_reverse=True))
    scaled = clip * model.model.latent_format.scale_factor
    assert len(seen) == 6 and factors.sign == 1.0
    for k, (x0, sign, delta, product) in enumerate(seen):
        forward = k % 2 == 0
        assert sign == (1.0 if forward else -1.0)
        torch.testing.assert_close(x0, scaled if forward else scaled.flip(0))
        torch.testing.assert_close(delta, product if forward else -product)
    assert seen[-1][3].abs().max() > 0  # trained: ΔW is no longer zero


def test_gradient_checkpointing_gives_the_same_training_on_v1(comfy_host):
    """With v1's across-frames norms (re-entered in recomputation), checkpointing gives the same losses and factors."""
    train = _k("comfy_glue.train")
    runs = []
    for checkpointing in (False, True):
        model, motion = build("v1")
        with torch.inference_mode():
            runs.append(train.train_factors(model, motion, conditioning(0), moving_clip(0, frames=4),
                                            settings(steps=2, gradient_checkpointing=checkpointing)))
    (plain, plain_losses), (ckpt, ckpt_losses) = runs
    torch.testing.assert_close(torch.tensor(ckpt_losses), torch.tensor(plain_losses), rtol=1e-5, atol=1e-6)
    for a, b in zip(plain.parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(p.abs().max() > 0 for p in plain.up)


def test_node_is_registered_with_its_display_name(comfy_host):
    """The pack lists Train MotionLoRA with id KinemaTrainMotionLoRA and outputs MOTION_MODULE and LOSS_MAP."""
    node = next(n for n in _k("nodes").NODES if n.define_schema().node_id == "KinemaTrainMotionLoRA")
    schema = node.define_schema()
    assert schema.display_name == "Train MotionLoRA"
    assert [o.io_type for o in schema.outputs] == ["KINEMA_MOTION_MODULE", "LOSS_MAP"]
