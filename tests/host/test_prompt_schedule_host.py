"""Prompt Schedule on a real ComfyUI: per-frame CLIP encodings (hold / linear / padding / one encode per prompt),
and per-frame rows honoured by Sample Animation, by KSampler after Apply Motion Module and per context window."""
from __future__ import annotations

import functools
import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import (  # noqa: E402
    TINY_CONTEXT,
    TINY_POOLED,
    loaded_motion,
    motion_state_dict,
    randomize,
    randomize_fan_in,
    tiny_sd15_patcher,
    tiny_sdxl_patcher,
)
from test_attach import tiny_motion  # noqa: E402
from test_context_control import FRAMES, assert_close, noise_for, per_window_reference, run  # noqa: E402
from test_context_control import with_context as _with_context  # noqa: E402

PROBE = "kinema_schedule_probe"
SCHEDULE = "0: a bud\n5: (flower:1.3) in bloom, petals\n\n# the end\n9: a wilted flower"
LONG = ", ".join(["a very long prompt about a flower"] * 14)  # > 77 tokens: two chunks


def _mod(name: str):
    return import_module(f"kinema.{name}")


def tiny_clip(seed: int = 0, width: int = TINY_CONTEXT):
    """Core's CLIP (real SD1 tokenizer, weights syntax) around a random 2-layer SD1 text model of ``width``."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base

    config = {"hidden_act": "quick_gelu", "hidden_size": width, "intermediate_size": 2 * width,
              "num_attention_heads": 2, "num_hidden_layers": 2, "max_position_embeddings": 77,
              "vocab_size": 49408, "projection_dim": width, "layer_norm_eps": 1e-5, "bos_token_id": 0,
              "eos_token_id": 49407, "pad_token_id": 1}
    model = functools.partial(comfy.sd1_clip.SD1ClipModel, clip_model=comfy.sd1_clip.SDClipModel,
                              textmodel_json_config=config)
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, model)
    clip = comfy.sd.CLIP(target, model_options={"dtype": torch.float32})
    randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


class CountingClip:
    """A CLIP that counts ``encode_from_tokens`` calls and remembers the token chunks it was given."""

    def __init__(self, clip):
        self.clip, self.encoded = clip, []

    def tokenize(self, text, **kwargs):
        return self.clip.tokenize(text, **kwargs)

    def encode_from_tokens(self, tokens, **kwargs):
        self.encoded.append({k: len(v) for k, v in tokens.items()})
        return self.clip.encode_from_tokens(tokens, **kwargs)


@pytest.fixture(scope="module")
def clip(comfy_host):
    return tiny_clip(seed=3)


def encode(clip, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, pooled) from core's CLIP Text Encode node: the independent reference."""
    import nodes

    (cond,) = nodes.CLIPTextEncode().encode(clip, text)
    return cond[0][0], cond[0][1]["pooled_output"]


def schedule(clip, text: str = SCHEDULE, frames: int = 12, mode: str = "hold", pre: str = "", post: str = "") -> list:
    return _mod("comfy_glue.prompt_schedule").schedule_conditioning(clip, text, frames, mode, pre, post)


def test_hold_frames_equal_their_keyframes_encoding(clip):
    """Hold: frames 0-4 are CLIP Text Encode('style, a bud'), 5-8 the weighted prompt, 9-11 the last (pooled too)."""
    out = schedule(clip, pre="style")
    cond, pooled = out[0][0], out[0][1]["pooled_output"]
    assert cond.shape == (12, 77, TINY_CONTEXT) and pooled.shape == (12, TINY_CONTEXT)
    for frames, text in [(range(0, 5), "style, a bud"), (range(5, 9), "style, (flower:1.3) in bloom, petals"),
                         (range(9, 12), "style, a wilted flower")]:
        ref_cond, ref_pooled = encode(clip, text)
        for f in frames:
            assert torch.equal(cond[f], ref_cond[0]) and torch.equal(pooled[f], ref_pooled[0]), f
    assert not torch.equal(encode(clip, "(flower:1.3) in bloom")[0], encode(clip, "flower in bloom")[0])


def test_linear_frames_are_the_documented_blend(clip):
    """Linear: frame 7 = (1 - 2/4) * enc(bloom) + 2/4 * enc(wilted); keyframes and the tail are pure."""
    out = schedule(clip, mode="linear")
    cond, pooled = out[0][0], out[0][1]["pooled_output"]
    bud, bloom, wilted = (encode(clip, t) for t in ("a bud", "(flower:1.3) in bloom, petals", "a wilted flower"))
    for f, (a, b, t) in {2: (bud, bloom, 2 / 5), 7: (bloom, wilted, 2 / 4), 8: (bloom, wilted, 3 / 4)}.items():
        assert torch.allclose(cond[f], (1 - t) * a[0][0] + t * b[0][0], atol=1e-6), f
        assert torch.allclose(pooled[f], (1 - t) * a[1][0] + t * b[1][0], atol=1e-6), f
    assert torch.equal(cond[5], bloom[0][0]) and torch.equal(cond[11], wilted[0][0])


def test_each_distinct_prompt_is_encoded_once(clip):
    """Seven keyframes over three distinct prompts (after pre/post text): three encodes, whatever the frames."""
    counting = CountingClip(clip)
    text = "0: a\n2: b\n4: a\n6: c\n8:  b \n10: a\n11: c"
    out = schedule(counting, text, frames=12, mode="linear", post="4k")
    assert len(counting.encoded) == 3 and out[0][0].shape[0] == 12


def test_prompts_of_different_lengths_are_padded_with_empty_chunks(clip):
    """A >77-token prompt beside a short one: both encoded with 2 chunks; the short one = its encoding + enc('')."""
    counting = CountingClip(clip)
    out = schedule(counting, f"0: a bud\n4: {LONG}", frames=8, mode="linear")
    assert counting.encoded == [{"l": 2}, {"l": 2}]
    cond = out[0][0]
    long_ref, short_ref, empty = encode(clip, LONG)[0], encode(clip, "a bud")[0], encode(clip, "")[0]
    assert long_ref.shape[1] == 154 and cond.shape == (8, 154, TINY_CONTEXT)
    padded = torch.cat([short_ref, empty], dim=1)  # (1, 77 + 77, C): the short prompt then one empty chunk
    assert torch.equal(cond[0], padded[0]) and torch.equal(cond[6], long_ref[0])
    assert torch.allclose(cond[2], 0.5 * padded[0] + 0.5 * long_ref[0], atol=1e-6)


def test_node_takes_frames_from_the_latent_and_validates_lines(clip):
    """The node: a linked latent's batch sets the frames; a bad line is refused at validation, naming the line."""
    node = _mod("nodes.prompt_schedule").PromptSchedule
    latent = {"samples": torch.zeros(20, 4, 8, 8)}
    (out,) = node.execute(clip, SCHEDULE, "", "", 12, "hold", latent=latent).args
    assert out[0][0].shape[0] == 20
    assert node.validate_inputs("0: a\n16: b", 16) == (
        "text line 2 ('16: b'): frame 16 is outside the clip, which has frames 0 to 15 (16 frames)")
    assert node.validate_inputs("0: a\n16: b", 16, latent=None) is True  # frames known only when it runs
    assert "line 2 ('oops')" in node.validate_inputs("0: a\noops", 16, latent=None)


# ---- what the UNet is given -------------------------------------------------------------------------------------

def probed(model, seen: list):
    """A clone whose UNet calls record (cond_or_uncond, window frames, context, y)."""
    import comfy.patcher_extension as pe

    def probe(executor, x, timesteps, context, y, *args, **kwargs):
        options = args[1] if len(args) > 1 else kwargs.get("transformer_options", {})
        window = options.get("context_window")
        frames = list(window.index_list) if window is not None else list(range(x.shape[0] // len(options["cond_or_uncond"])))
        seen.append((list(options["cond_or_uncond"]), frames, context.clone(), None if y is None else y.clone()))
        return executor(x, timesteps, context, y, *args, **kwargs)

    m = model.clone()
    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, PROBE, probe)
    return m


def rows_of(seen: list, which: int) -> list[tuple[list[int], torch.Tensor, torch.Tensor | None]]:
    """(frames, context rows, y rows) of the cond (0) or uncond (1) chunk of every recorded UNet call."""
    out = []
    for order, frames, context, y in seen:
        n = len(frames)
        i = order.index(which)
        out.append((frames, context[i * n:(i + 1) * n], None if y is None else y[i * n:(i + 1) * n]))
    return out


@pytest.fixture(scope="module")
def pair(clip):
    """A scheduled positive (hold, 3 keyframes) and a scheduled negative (linear), 12 frames."""
    return schedule(clip), schedule(clip, "0: blurry\n8: (watermark:1.2)", mode="linear")


def check_rows(seen: list, pos: list, neg: list, calls: int) -> None:
    assert len(seen) == calls
    for which, conditioning in ((0, pos), (1, neg)):
        for frames, context, _ in rows_of(seen, which):
            assert torch.equal(context, conditioning[0][0][frames]), (which, frames)


def test_sample_animation_gives_each_frame_its_rows(comfy_host, pair):
    """Sample Animation: the UNet sees frame k's positive and negative schedule rows for frame k."""
    seen = []
    model, motion = probed(tiny_sd15_patcher(seed=0), seen), tiny_motion("v2", seed=4)
    latent = {"samples": torch.zeros(12, 4, 8, 8)}
    _mod("comfy_glue.sample").sample_animation(model, motion, *pair, latent, 0, 2, 3.0, "euler", "normal")
    check_rows(seen, *pair, calls=2)


def test_ksampler_after_apply_motion_module_gives_each_frame_its_rows(comfy_host, pair):
    """Core's KSampler on Apply Motion Module's model, with and without a Context Scheduler (windows 8/2)."""
    import nodes

    opts = _mod("sampling.context")
    plan = _mod("comfy_glue.context").ContextPlan(opts.ContextOptions(8, 2, opts.ContextSchedule.STANDARD_STATIC))
    for context, calls in ((None, 2), (plan, 2 * 2)):
        seen = []
        (model,) = _mod("nodes.motion_module").ApplyMotionModule.execute(
            probed(tiny_sd15_patcher(seed=0), seen), tiny_motion("v2", seed=4), 1.0, "auto (motion module's)",
            context).args
        nodes.common_ksampler(model, 0, 2, 3.0, "euler", "normal", *pair, {"samples": torch.zeros(12, 4, 8, 8)})
        check_rows(seen, *pair, calls=calls)
        if context is not None:
            assert [f for f, _, _ in rows_of(seen, 0)][:2] == [list(range(0, 8)), list(range(4, 12))]


# ---- context windows: fused prediction = per-window computation -------------------------------------------------

@pytest.fixture(scope="module")
def animated(comfy_host):
    return _mod("comfy_glue.attach").attach(tiny_sd15_patcher(seed=0), tiny_motion("v2", seed=4))


@pytest.fixture(scope="module")
def travel(clip):
    """40 frames, 3 keyframes (linear), and a scheduled negative."""
    return (schedule(clip, "0: a bud\n16: a flower in bloom\n32: a wilted flower", 40, "linear"),
            schedule(clip, "0: blurry\n30: watermark", 40, "hold"))


def window_of(conditioning: list, w: range) -> list:
    """The schedule cut to frames ``w`` by hand (cond and pooled rows)."""
    return [[c[w.start:w.stop], {k: (v[w.start:w.stop] if k == "pooled_output" else v) for k, v in d.items()}]
            for c, d in conditioning]


def test_fused_prediction_equals_windows_run_with_their_own_rows(animated, travel):
    """40 frames, windows 16/4: fused = each window run alone with its 16 schedule rows, pyramid-fused (<=1e-5)."""
    pos, neg = travel
    noise = noise_for(FRAMES, 21)
    fused = run(_with_context(animated), noise, (pos, neg))
    expected = per_window_reference(animated, noise, lambda w: (window_of(pos, w), window_of(neg, w)))
    assert_close(fused, expected)
    first_rows = ([[pos[0][0][:1], {}]], [[neg[0][0][:1], {}]])  # every frame given frame 0's prompts
    assert (fused[24:] - run(_with_context(animated), noise, first_rows)[24:]).abs().max() > 1e-4


@pytest.mark.parametrize("how", ["combine", "area", "timestep_range"])
def test_combined_schedules_keep_following_the_windows(animated, travel, clip, how):
    """Combine with a plain prompt / Set Area / Set Timestep Range (beside an inactive one): fused = per-window reference."""
    import nodes

    plain = nodes.CLIPTextEncode().encode(clip, "a garden")[0]

    def apply(cond: list) -> list:
        if how == "combine":
            return nodes.ConditioningCombine().combine(cond, plain)[0]
        if how == "area":
            return nodes.ConditioningSetArea().append(cond, 32, 32, 16, 8, 1.0)[0]
        late = nodes.ConditioningSetTimestepRange().set_range(plain, 0.5, 1.0)[0]  # inactive at step 1
        return nodes.ConditioningCombine().combine(nodes.ConditioningSetTimestepRange().set_range(cond, 0.0, 0.5)[0],
                                                   late)[0]

    pos, neg = travel
    noise = noise_for(FRAMES, 22)
    fused = run(_with_context(animated), noise, (apply(pos), neg))
    expected = per_window_reference(animated, noise, lambda w: (apply(window_of(pos, w)), window_of(neg, w)))
    assert_close(fused, expected)


# ---- SDXL: the pooled rows (``y``) follow the windows too ---------------------------------------------------------

def test_sdxl_pooled_rows_follow_the_windows(comfy_host):
    """Tiny SDXL, 14 frames, windows 8/2: each window's UNet call gets its frames' context and ADM ``y`` rows."""
    opts, ctx = _mod("sampling.context"), _mod("comfy_glue.context")
    spec = _mod("motion_modules").standard_spec("sdxl-beta", widths=(32, 64, 128))
    motion = loaded_motion(spec, motion_state_dict(spec, seed=1), "tiny_sdxl_beta.safetensors")
    g = torch.Generator().manual_seed(5)
    sizes = {"width": 64, "height": 64, "crop_w": 0, "crop_h": 0, "target_width": 64, "target_height": 64}
    pos = [[torch.randn(14, 7, TINY_CONTEXT, generator=g), {"pooled_output": torch.randn(14, TINY_POOLED, generator=g),
                                                             **sizes}]]
    neg = [[torch.randn(14, 7, TINY_CONTEXT, generator=g), {"pooled_output": torch.randn(14, TINY_POOLED, generator=g),
                                                             **sizes}]]
    seen = []
    model = _mod("comfy_glue.attach").attach(probed(tiny_sdxl_patcher(seed=0, init=randomize_fan_in), seen), motion)
    model = ctx.apply_context(model, ctx.ContextPlan(opts.ContextOptions(8, 2, opts.ContextSchedule.STANDARD_STATIC)),
                              spec)
    run(model, torch.randn(14, 4, 8, 8, generator=g), (pos, neg))
    assert len(seen) == 2
    for which, cond in ((0, pos), (1, neg)):
        for frames, context, y in rows_of(seen, which):
            assert torch.equal(context, cond[0][0][frames])
            assert torch.equal(y[:, :TINY_POOLED], cond[0][1]["pooled_output"][frames]), (which, frames)


def test_schedule_for_another_frame_count_is_one_error_before_sampling(comfy_host, clip):
    """A 12-frame schedule on a 20-frame latent (core would tile its rows): one sentence, the UNet never runs."""
    seen = []
    model, motion = probed(tiny_sd15_patcher(seed=0), seen), tiny_motion("v2", seed=4)
    latent = {"samples": torch.zeros(20, 4, 8, 8)}
    with pytest.raises(ValueError, match=r"the positive conditioning holds 12 rows .* but the latent has 20 frames; "
                                         r"it must hold 1 row or one per frame \(20\)"):
        _mod("comfy_glue.sample").sample_animation(model, motion, schedule(clip), schedule(clip, frames=20)[:1],
                                                   latent, 0, 1, 3.0, "euler", "normal")
    assert seen == []
