"""Context-window options, schedules and fuse weights (sampling/context.py); the fusing itself is tested where
it runs: tests/core/test_views.py (views in the motion module) and tests/host/test_fuse.py (core's handler)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sampling.context import (
    ContextInputError,
    ContextOptions,
    ContextOptionsError,
    ContextSchedule,
    FuseMethod,
    fuse_weights,
    ordered_halving,
    windows,
)

FAST = settings(max_examples=150, deadline=None, database=None)
ALL_SCHEDULES = list(ContextSchedule)
ALL_METHODS = list(FuseMethod)


@st.composite
def cases(draw, schedules=ALL_SCHEDULES, min_extra: int = -8):
    """(num_frames, options, step) over many sizes, overlaps, strides and steps."""
    length = draw(st.integers(1, 24))
    overlap = draw(st.integers(0, length - 1))
    num_frames = draw(st.integers(max(1, length + min_extra), 96))
    opts = ContextOptions(
        length, overlap, draw(st.sampled_from(schedules)), draw(st.sampled_from(ALL_METHODS)),
        draw(st.integers(1, 4)), draw(st.booleans()),
    )
    return num_frames, opts, draw(st.integers(0, 10_000))


def _window_sets(num_frames: int, opts: ContextOptions, steps: int) -> set[frozenset[tuple[int, ...]]]:
    """The distinct sets of windows over steps 0..steps-1."""
    return {frozenset(map(tuple, windows(num_frames, opts, s))) for s in range(steps)}


def _all_phases(num_frames: int) -> int:
    """A power-of-two step count whose ordered_halving pads reach every frame offset."""
    return 1 << math.ceil(math.log2(num_frames))


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("opts", "pe_length", "message"),
    [
        (ContextOptions(16, 16), None, "context_overlap 16 must be smaller than context_length 16"),
        (ContextOptions(32, 4), 24, "context_length 32 exceeds this motion module's limit of 24 frames; use 24 or less"),
        (ContextOptions(16, 4, stride=0), None, "context_stride must be at least 1, but got 0"),
        (ContextOptions(0, 0), None, "context_length must be at least 1, but got 0"),
        (ContextOptions(8, -1), None, "context_overlap must be 0 or more, but got -1"),
        (ContextOptions(8, 2, "spiral"), None,
         "context_schedule must be one of standard_static, standard_uniform, looped_uniform, batched, but got 'spiral'"),
        (ContextOptions(8, 2, fuse="relative"), None,
         "fuse_method must be one of flat, pyramid, overlap-linear, gaussian, but got 'relative'"),
    ],
)
def test_validate_messages(opts, pe_length, message):
    """Each bad option raises ContextOptionsError (a ValueError) with its one-sentence message."""
    with pytest.raises(ContextOptionsError) as info:
        opts.validate(pe_length)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_validate_accepts_limits_and_names():
    """length == pe_length, overlap length-1 and plain strings of the option names are valid."""
    ContextOptions(24, 23, "looped_uniform", "overlap-linear", stride=3).validate(24)
    ContextOptions(1, 0).validate(None)
    assert ContextOptions() == ContextOptions(16, 4, ContextSchedule.STANDARD_STATIC, FuseMethod.PYRAMID, 1, False)


def test_enum_values_match_core_names():
    """Users see core's option strings plus gaussian."""
    assert [s.value for s in ContextSchedule] == ["standard_static", "standard_uniform", "looped_uniform", "batched"]
    assert [m.value for m in FuseMethod] == ["flat", "pyramid", "overlap-linear", "gaussian"]


def test_windows_rejects_bad_inputs():
    """0 frames, a negative step and invalid options raise ValueErrors naming the input."""
    with pytest.raises(ContextInputError, match="num_frames must be at least 1, but got 0"):
        windows(0, ContextOptions())
    with pytest.raises(ContextInputError, match="step must be 0 or more, but got -1"):
        windows(40, ContextOptions(), -1)
    with pytest.raises(ContextOptionsError):
        windows(40, ContextOptions(8, 8))


# --------------------------------------------------------------------------- schedules


def test_ordered_halving_sequence():
    """Steps 0..7 give 0, 1/2, 1/4, 3/4, 1/8, 5/8, 3/8, 7/8 (bit reversal)."""
    assert [ordered_halving(s) for s in range(8)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]


def test_static_known_windows():
    """40 frames, length 16, overlap 4: hop 12, last window slid back to end on frame 39."""
    expected = [list(range(0, 16)), list(range(12, 28)), list(range(24, 40))]
    assert windows(40, ContextOptions(16, 4)) == expected
    assert windows(41, ContextOptions(16, 4))[-1] == list(range(25, 41))


def test_batched_known_windows():
    """Disjoint chunks with a short last one."""
    opts = ContextOptions(16, 4, ContextSchedule.BATCHED)
    assert windows(40, opts, 3) == [list(range(0, 16)), list(range(16, 32)), list(range(32, 40))]


def test_uniform_known_windows():
    """Step 1 (phase 1/2) of 40 frames: the wrapping window becomes an end window plus [0..15]."""
    got = windows(40, ContextOptions(16, 4, ContextSchedule.STANDARD_UNIFORM), 1)
    assert sorted(got) == [list(range(0, 16)), list(range(4, 20)), list(range(20, 36)), list(range(24, 40))]


def test_looped_known_windows():
    """Step 1 of 40 frames: the window from frame 32 wraps to frames 0..7."""
    got = windows(40, ContextOptions(16, 4, ContextSchedule.LOOPED_UNIFORM), 1)
    assert got == [list(range(20, 36)), [*range(32, 40), *range(0, 8)], list(range(4, 20))]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES)
@pytest.mark.parametrize("num_frames", [1, 5, 16])
def test_short_clip_is_one_window(schedule, num_frames):
    """num_frames <= length gives the single window [0..num_frames-1] for every schedule."""
    assert windows(num_frames, ContextOptions(16, 4, schedule), 7) == [list(range(num_frames))]


@FAST
@given(cases())
def test_every_frame_covered_unique_in_range(case):
    """At every step every frame is in some window; windows have unique, in-range indices."""
    num_frames, opts, step = case
    result = windows(num_frames, opts, step)
    assert {i for w in result for i in w} == set(range(num_frames))
    for w in result:
        assert len(set(w)) == len(w)
        assert all(0 <= i < num_frames for i in w)
    assert len({tuple(w) for w in result}) == len(result)


@FAST
@given(cases())
def test_window_lengths(case):
    """Every window holds exactly `length` frames once num_frames >= length, except batched's last."""
    num_frames, opts, step = case
    result = windows(num_frames, opts, step)
    if num_frames < opts.length:
        assert [len(w) for w in result] == [num_frames]
    elif opts.schedule == ContextSchedule.BATCHED:
        assert all(len(w) == opts.length for w in result[:-1])
        assert [i for w in result for i in w] == list(range(num_frames))
    else:
        assert all(len(w) == opts.length for w in result)


@FAST
@given(cases(schedules=[ContextSchedule.STANDARD_STATIC, ContextSchedule.BATCHED]))
def test_static_and_batched_ignore_step(case):
    """standard_static and batched give the same windows at every step."""
    num_frames, opts, step = case
    assert windows(num_frames, opts, step) == windows(num_frames, opts, 0)


@FAST
@given(cases(schedules=[ContextSchedule.STANDARD_STATIC, ContextSchedule.STANDARD_UNIFORM, ContextSchedule.BATCHED]))
def test_non_looped_never_wrap(case):
    """Non-looped windows are increasing, with equal spacing (no wrap to frame 0)."""
    num_frames, opts, step = case
    for w in windows(num_frames, opts, step):
        gaps = {b - a for a, b in zip(w[:-1], w[1:], strict=True)}
        assert len(gaps) <= 1 and min(gaps, default=1) > 0


@FAST
@given(cases(schedules=[ContextSchedule.STANDARD_UNIFORM], min_extra=2))
def test_uniform_seams_move(case):
    """For length >= 2 and num_frames >= length + 2, window sets differ within the first 2**ceil(log2 f) steps."""
    num_frames, opts, _ = case
    assume(opts.length >= 2)
    assert len(_window_sets(num_frames, opts, _all_phases(num_frames))) > 1


@pytest.mark.parametrize("length", [2, 8, 16])
def test_uniform_cannot_move_one_frame_past_length(length):
    """With length + 1 frames only two full windows exist and both are needed, at every step."""
    opts = ContextOptions(length, 1, ContextSchedule.STANDARD_UNIFORM)
    expected = frozenset({tuple(range(length)), tuple(range(1, length + 1))})
    assert _window_sets(length + 1, opts, 16) == {expected}


@FAST
@given(cases(schedules=[ContextSchedule.LOOPED_UNIFORM], min_extra=1))
def test_looped_wraps(case):
    """For length >= 2, some step has a window holding both the last frame and frame 0, contiguously."""
    num_frames, opts, _ = case
    assume(opts.length >= 2)
    wrapping = [
        w for s in range(_all_phases(num_frames)) for w in windows(num_frames, opts, s)
        if num_frames - 1 in w and 0 in w and w.index(0) == w.index(num_frames - 1) + 1
    ]
    assert wrapping


def test_looped_closed_loop_adds_windows():
    """closed_loop adds the window that leads the last frames back into the first."""
    opts = ContextOptions(16, 4, ContextSchedule.LOOPED_UNIFORM)
    closed = ContextOptions(16, 4, ContextSchedule.LOOPED_UNIFORM, closed_loop=True)
    assert windows(40, opts, 0) == [list(range(0, 16)), list(range(12, 28)), list(range(24, 40))]
    assert windows(40, closed, 0)[-1] == [*range(36, 40), *range(0, 12)]


def test_stride_adds_spread_windows():
    """stride 2 adds windows of every 2nd frame once two lengths fit; never more than the clip holds."""
    opts = ContextOptions(8, 2, ContextSchedule.STANDARD_UNIFORM, stride=2)
    spread = [w for w in windows(32, opts, 0) if w[1] - w[0] == 2]
    assert spread and all(len(w) == 8 for w in spread)
    assert all(w[1] - w[0] == 1 for w in windows(15, opts, 0))  # 2 * 8 > 15 frames: contiguous only


# --------------------------------------------------------------------------- fuse weights


def test_pyramid_and_flat_values():
    """pyramid is 1..peak..1 like core; flat is all ones."""
    assert fuse_weights("pyramid", list(range(4)), 10, 2).tolist() == [1, 2, 2, 1]
    assert fuse_weights("pyramid", list(range(5)), 10, 2).tolist() == [1, 2, 3, 2, 1]
    assert fuse_weights("flat", list(range(3)), 10, 1).tolist() == [1, 1, 1]


def test_overlap_linear_values():
    """Ramps over the overlap only on sides bordered by other frames, never reaching 0."""
    middle = list(range(4, 10))
    assert fuse_weights("overlap-linear", middle, 20, 2).tolist() == pytest.approx([1 / 3, 2 / 3, 1, 1, 2 / 3, 1 / 3])
    assert fuse_weights("overlap-linear", list(range(6)), 20, 2).tolist() == pytest.approx([1, 1, 1, 1, 2 / 3, 1 / 3])
    assert fuse_weights("overlap-linear", list(range(14, 20)), 20, 2).tolist() == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1])
    assert fuse_weights("overlap-linear", middle, 20, 1).tolist() == [0.5, 1, 1, 1, 1, 0.5]
    assert fuse_weights("overlap-linear", middle, 20, 0).tolist() == [1] * 6


def test_gaussian_values():
    """Peak 1 at the centre of an odd window, edges exp(-2) with sigma = length / 4, symmetric."""
    w = fuse_weights("gaussian", list(range(9)), 20, 2)
    assert w[4] == 1.0 and torch.equal(w, w.flip(0))
    assert w[0].item() == pytest.approx(math.exp(-0.5 * (4 / 2.25) ** 2), rel=1e-6)


@FAST
@given(cases(), st.sampled_from(ALL_METHODS))
def test_weights_positive_and_sums_nonzero(case, method):
    """Weights are float32, one per frame, > 0; the per-frame normalising sum is never 0."""
    num_frames, opts, step = case
    total = torch.zeros(num_frames, dtype=torch.float64)
    for w in windows(num_frames, opts, step):
        weights = fuse_weights(method, w, num_frames, opts.overlap)
        assert weights.dtype == torch.float32 and weights.shape == (len(w),)
        assert bool((weights > 0).all()) and bool(torch.isfinite(weights).all())
        total[w] += weights.double()
    assert bool((total > 0).all())


def test_fuse_weights_rejects_bad_inputs():
    """Unknown methods, empty windows and negative overlaps raise ValueErrors."""
    with pytest.raises(ContextOptionsError, match="but got 'relative'"):
        fuse_weights("relative", [0, 1], 4, 1)
    with pytest.raises(ContextInputError, match="empty"):
        fuse_weights("flat", [], 4, 1)
    with pytest.raises(ContextInputError, match="overlap must be 0 or more"):
        fuse_weights("flat", [0], 4, -1)
