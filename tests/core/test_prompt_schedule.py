"""Prompt schedule parsing and per-frame weights (the pure half of the Prompt Schedule node)."""
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sampling.prompt_schedule import (
    Interpolation,
    PromptScheduleError,
    blend,
    distinct_prompts,
    full_prompt,
    keyframe_weights,
    parse_schedule,
    prompt_weights,
)

WORDS = st.sampled_from(["a bud", "a flower in bloom", "(red:1.2) petals", "a wilted flower", "", "rain, night"])


@st.composite
def schedules(draw):
    """(frames, keyframe frames, prompts, the text with blank and comment lines mixed in)."""
    frames = draw(st.integers(1, 96))
    keys = sorted(draw(st.sets(st.integers(0, frames - 1), min_size=1, max_size=min(frames, 8))))
    prompts = [draw(WORDS) for _ in keys]
    lines = []
    for k, p in zip(keys, prompts, strict=True):
        lines += draw(st.lists(st.sampled_from(["", "   ", "# a comment", "  # 3: not a key"]), max_size=2))
        lines.append(f"{draw(st.sampled_from(['', ' ']))}{k}{draw(st.sampled_from(['', ' ']))}: {p}")
    return frames, keys, prompts, "\n".join(lines)


@settings(max_examples=300, deadline=None)
@given(schedules())
def test_round_trip_of_frames_and_prompts(schedule):
    """Any generated schedule parses back to its keyframe frames, prompts and line numbers."""
    frames, keys, prompts, text = schedule
    parsed = parse_schedule(text, frames)
    assert [k.frame for k in parsed] == keys
    assert [k.prompt for k in parsed] == prompts
    lines = text.splitlines()
    assert all(lines[k.line - 1].strip() == k.text for k in parsed)


@settings(max_examples=300, deadline=None)
@given(schedules(), st.sampled_from(list(Interpolation)))
def test_weights_sum_to_one_and_follow_the_keyframes(schedule, mode):
    """Rows sum to 1; keyframe frames are pure; before the first / after the last hold; hold is one-hot."""
    frames, keys, _, text = schedule
    w = keyframe_weights([k.frame for k in parse_schedule(text, frames)], frames, mode)
    assert torch.allclose(w.sum(1), torch.ones(frames, dtype=w.dtype), atol=1e-12)
    assert (w >= 0).all()
    for i, k in enumerate(keys):
        assert w[k, i] == 1.0
    assert (w[: keys[0], 0] == 1).all() and (w[keys[-1]:, -1] == 1).all()
    if mode is Interpolation.HOLD:
        assert ((w == 0) | (w == 1)).all()
        for f in range(frames):
            assert w[f].argmax() == max([0] + [i for i, k in enumerate(keys) if k <= f])


@settings(max_examples=200, deadline=None)
@given(schedules())
def test_linear_is_the_documented_blend(schedule):
    """Linear: between keys a < f < b the weights are (1 - t, t) with t = (f - a) / (b - a), nothing else."""
    frames, keys, _, _ = schedule
    w = keyframe_weights(keys, frames, Interpolation.LINEAR)
    for i, (a, b) in enumerate(zip(keys, keys[1:], strict=False)):
        for f in range(a, b):
            t = (f - a) / (b - a)
            expected = torch.zeros(len(keys), dtype=w.dtype)
            expected[i], expected[i + 1] = 1 - t, t
            assert torch.allclose(w[f], expected, atol=1e-12), (f, w[f])


def test_documented_example():
    """0 / 16 / 32 over 48 frames: frame 8 is half bud, half bloom; frame 40 holds the last prompt."""
    keys = parse_schedule("0: a bud\n16: a flower in bloom\n32: a wilted flower", 48)
    w = keyframe_weights([k.frame for k in keys], 48, Interpolation.LINEAR)
    assert w[8].tolist() == [0.5, 0.5, 0.0] and w[20].tolist() == [0.0, 0.75, 0.25] and w[40].tolist() == [0, 0, 1]


def test_repeated_prompts_share_one_column():
    """A prompt used at two keyframes is one distinct prompt; its weights add up there."""
    keys = parse_schedule("0: a\n4: b\n8: a", 9)
    prompts, index = distinct_prompts(keys, "pre", "post")
    assert prompts == ["pre, a, post", "pre, b, post"] and index == [0, 1, 0]
    w = prompt_weights(keys, 9, "linear", index, 2)
    assert w[6].tolist() == [0.5, 0.5] and w[0].tolist() == [1.0, 0.0] and w[8].tolist() == [1.0, 0.0]


def test_full_prompt_skips_empty_parts():
    """pre/post are joined with ', ' and empty parts leave no stray commas."""
    assert full_prompt("a bud", "masterpiece", "") == "masterpiece, a bud"
    assert full_prompt("", "", "4k") == "4k" and full_prompt(" x ", " ", " y") == "x, y"


def test_blend_mixes_rows():
    """blend: frame rows are the weighted sums of the prompt rows (fp16 blended in fp32)."""
    enc = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    w = torch.tensor([[1.0, 0.0], [0.25, 0.75]], dtype=torch.float64)
    out = blend(enc, w)
    assert torch.equal(out[0], enc[0]) and torch.allclose(out[1], 0.25 * enc[0] + 0.75 * enc[1])
    assert blend(enc.half(), w).dtype == torch.float16


@pytest.mark.parametrize("text,frames,line,what", [
    ("0: a\nbloom", 16, 2, "expected 'FRAME: prompt'"),
    ("0: a\n\n# c\nx: b", 16, 4, "expected 'FRAME: prompt'"),
    ("0 a bud", 16, 1, "expected 'FRAME: prompt'"),
    ("0: a\n16: b", 16, 2, "frame 16 is outside the clip, which has frames 0 to 15"),
    ("-1: a", 16, 1, "frame -1 is outside the clip"),
    ("0: a\n8: b\n4: c", 16, 3, "frame 4 comes before frame 8 of line 2"),
    ("0: a\n8: b\n8: c", 16, 3, "frame 8 repeats frame 8 of line 2"),
])
def test_errors_name_the_line(text, frames, line, what):
    """Each bad schedule is one sentence naming the line number and its text, and what is wrong."""
    bad = text.splitlines()[line - 1].strip()
    with pytest.raises(PromptScheduleError, match=re.escape(f"text line {line} ({bad!r}): ") + ".*" + re.escape(what)):
        parse_schedule(text, frames)


@settings(max_examples=200, deadline=None)
@given(schedules(), st.integers(0, 7), st.sampled_from(["garbage", "{f}", "{f} no colon", "{f}: out"]))
def test_a_bad_line_anywhere_is_named(schedule, where, kind):
    """A bad line inserted anywhere in a valid schedule is reported with its own line number."""
    frames, keys, _, text = schedule
    lines = text.splitlines()
    where = min(where, len(lines))
    bad = kind.format(f=frames + where)  # frame numbers here are all outside the clip
    lines.insert(where, bad)
    with pytest.raises(PromptScheduleError, match=re.escape(f"line {where + 1} ({bad!r})")):
        parse_schedule("\n".join(lines), frames)


def test_empty_schedule_is_an_error():
    """Only blank and comment lines: one sentence saying no keyframe was found."""
    with pytest.raises(PromptScheduleError, match="at least one 'FRAME: prompt' line"):
        parse_schedule("\n# nothing\n", 16)
