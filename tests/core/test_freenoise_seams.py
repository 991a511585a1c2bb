"""FreeNoise shuffling, the seam metric and frame-count checks (sampling/freenoise.py, seams.py, frames.py)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sampling.context import ContextOptions, ContextOptionsError, ContextSchedule, windows
from sampling.frames import FrameCountError, check_frame_count
from sampling.freenoise import FreeNoiseError, freenoise, freenoise_sources
from sampling.seams import SeamMetricError, boundary_pairs, seam_metric

FAST = settings(max_examples=150, deadline=None, database=None)


@st.composite
def noise_cases(draw):
    """(num_frames, length, overlap, seed) with clips up to 4x longer than a window."""
    length = draw(st.integers(1, 20))
    overlap = draw(st.integers(0, length - 1))
    return draw(st.integers(1, 80)), length, overlap, draw(st.integers(0, 2**32 - 1))


def _frame_ids(num_frames: int) -> torch.Tensor:
    """(f, 2, 3) noise-like tensor whose frame t is filled with the value t."""
    return torch.arange(num_frames, dtype=torch.float32).reshape(-1, 1, 1).expand(-1, 2, 3).contiguous()


# --------------------------------------------------------------------------- FreeNoise


@FAST
@given(noise_cases())
def test_freenoise_frames_copy_first_window(case):
    """Each output frame equals one of the first `length` input frames; those frames stay in place."""
    num_frames, length, overlap, seed = case
    noise = torch.randn(num_frames, 2, 3, generator=torch.Generator().manual_seed(seed % 1000))
    out = freenoise(noise, length, overlap, seed)
    sources = freenoise_sources(num_frames, length, overlap, seed)
    assert out.shape == noise.shape
    assert all(s < min(length, num_frames) for s in sources)
    assert sources[:length] == list(range(min(length, num_frames)))
    for t, s in enumerate(sources):
        assert torch.equal(out[t], noise[s])


@FAST
@given(noise_cases())
def test_freenoise_static_windows_are_permutations(case):
    """Every standard_static window (same length, overlap) holds each of the first `length` frames exactly once."""
    num_frames, length, overlap, seed = case
    out = freenoise(_frame_ids(num_frames), length, overlap, seed)
    ids = out[:, 0, 0].long()
    for window in windows(num_frames, ContextOptions(length, overlap, ContextSchedule.STANDARD_STATIC)):
        assert sorted(ids[window].tolist()) == list(range(len(window)))


@FAST
@given(noise_cases())
def test_freenoise_deterministic_and_pure(case):
    """Same seed, same output; the input is never modified and the output is a new tensor."""
    num_frames, length, overlap, seed = case
    noise = torch.randn(num_frames, 4, generator=torch.Generator().manual_seed(1))
    before = noise.clone()
    first = freenoise(noise, length, overlap, seed)
    assert torch.equal(first, freenoise(noise, length, overlap, seed))
    assert torch.equal(noise, before)
    assert first.data_ptr() != noise.data_ptr()


def test_freenoise_matches_core_draws():
    """Same hop walk and torch.randperm draws as core's apply_freenoise (values taken from ComfyUI 0.8.0)."""
    assert freenoise_sources(24, 8, 2, 0) == [0, 1, 2, 3, 4, 5, 6, 7, 2, 5, 3, 0, 1, 4, 5, 6, 0, 3, 2, 7, 4, 6, 5, 1]
    assert freenoise_sources(20, 8, 4, 123) == [0, 1, 2, 3, 4, 5, 6, 7, 2, 0, 1, 3, 6, 4, 5, 7, 1, 3, 0, 2]


def test_freenoise_seed_changes_order():
    """Different seeds shuffle differently."""
    noise = _frame_ids(48)
    assert not torch.equal(freenoise(noise, 16, 4, 0), freenoise(noise, 16, 4, 1))


@pytest.mark.parametrize("num_frames", [1, 8, 16])
def test_freenoise_short_clip_unchanged(num_frames):
    """Noise with at most `length` frames comes back equal (as a copy)."""
    noise = torch.randn(num_frames, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = freenoise(noise, 16, 4, seed=3)
    assert torch.equal(out, noise) and out.data_ptr() != noise.data_ptr()


def test_freenoise_dim():
    """Shuffling along dim 2 equals shuffling the moved tensor along dim 0."""
    noise = torch.randn(2, 4, 40, 3, generator=torch.Generator().manual_seed(0))
    along2 = freenoise(noise, 16, 4, seed=5, dim=2)
    along0 = freenoise(noise.movedim(2, 0), 16, 4, seed=5)
    assert torch.equal(along2, along0.movedim(0, 2))
    assert torch.equal(freenoise(noise, 16, 4, seed=5, dim=-2), along2)


def test_freenoise_preserves_statistics():
    """Every static window has the first window's mean and std; the whole clip's stay close to the input's."""
    noise = torch.randn(64, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    out = freenoise(noise, 16, 4, seed=11)
    first = noise[:16]
    for window in windows(64, ContextOptions(16, 4)):
        assert out[window].mean().item() == pytest.approx(first.mean().item(), abs=1e-6)
        assert out[window].std().item() == pytest.approx(first.std().item(), rel=1e-5)
    assert abs(out.mean().item() - noise.mean().item()) < 0.02
    assert out.std().item() == pytest.approx(noise.std().item(), rel=0.02)


def test_freenoise_rejects_bad_inputs():
    """overlap >= length and a dim the noise lacks raise ValueErrors naming the input."""
    with pytest.raises(ContextOptionsError, match="context_overlap 16 must be smaller than context_length 16"):
        freenoise(torch.zeros(20, 4), 16, 16, 0)
    with pytest.raises(FreeNoiseError, match="dim must index one of the noise's 2 dimensions, but got 2"):
        freenoise(torch.zeros(20, 4), 16, 4, 0, dim=2)


# --------------------------------------------------------------------------- seams

STATIC_40 = windows(40, ContextOptions(16, 4))  # [0..15], [12..27], [24..39]


def _ramp(num_frames: int) -> torch.Tensor:
    """(f, 2, 3, 3) clip changing linearly in time, different per channel and pixel."""
    base = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    slope = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    return base + slope * torch.arange(num_frames, dtype=torch.float32).reshape(-1, 1, 1, 1)


def test_boundary_pairs_definition():
    """A pair is a seam exactly where the set of windows containing t and t+1 differ."""
    seams = [t for t, s in enumerate(boundary_pairs(40, STATIC_40)) if s]
    assert seams == [11, 15, 23, 27]


@pytest.mark.parametrize(
    "window_list",
    [
        STATIC_40,
        windows(40, ContextOptions(16, 4, ContextSchedule.STANDARD_UNIFORM), 1),
        windows(40, ContextOptions(16, 4, ContextSchedule.LOOPED_UNIFORM), 3),
        windows(40, ContextOptions(16, 0, ContextSchedule.BATCHED)),
    ],
)
def test_seam_metric_linear_ramp_is_one(window_list):
    """A clip changing at a constant rate scores 1.0."""
    assert seam_metric(_ramp(40), window_list) == pytest.approx(1.0, abs=1e-6)


def test_seam_metric_constant_clip_is_one():
    """A clip that never changes counts as perfectly smooth."""
    assert seam_metric(torch.ones(40, 2, 3, 3), STATIC_40) == 1.0


def test_seam_metric_jump_at_seam_is_above_one():
    """A jump between frames 15 and 16 (a seam) raises the score above 1; inside a window it lowers it."""
    jump = torch.zeros(40, 1, 1, 1)
    jump[16:] += 5.0
    assert seam_metric(_ramp(40) + jump, STATIC_40) > 1.5
    inside = torch.zeros(40, 1, 1, 1)
    inside[6:] += 5.0  # frames 5 and 6 are both only in window 0
    assert seam_metric(_ramp(40) + inside, STATIC_40) < 1.0


def test_seam_metric_change_only_at_seams_is_inf():
    """Change only across seams, none inside windows, scores inf."""
    clip = torch.zeros(40, 1, 2, 2)
    clip[16:] = 1.0
    assert seam_metric(clip, STATIC_40) == float("inf")


def test_seam_metric_undefined_cases_raise():
    """No seam pair, no inside pair, uncovered frames and a wrong shape raise SeamMetricError (a ValueError)."""
    with pytest.raises(SeamMetricError, match="at least one seam"):
        seam_metric(_ramp(16), [list(range(16))])
    with pytest.raises(SeamMetricError, match="share at least one adjacent frame pair"):
        seam_metric(_ramp(4), [[0], [1], [2], [3]])
    with pytest.raises(SeamMetricError, match=r"frames \[3\] are in none"):
        seam_metric(_ramp(4), [[0, 1], [1, 2]])
    with pytest.raises(SeamMetricError, match=r"must have shape \(f, c, h, w\)"):
        seam_metric(torch.zeros(40, 4), STATIC_40)
    assert issubclass(SeamMetricError, ValueError)


# --------------------------------------------------------------------------- frame counts


def test_frame_count_messages():
    """0 frames, and too many frames without context windows, raise FrameCountError with the exact sentence."""
    with pytest.raises(FrameCountError) as zero:
        check_frame_count(0, 16, has_context=False)
    assert str(zero.value) == "the latent has 0 frames; expected at least 1"
    with pytest.raises(FrameCountError) as many:
        check_frame_count(48, 32, has_context=False)
    assert str(many.value) == ("the latent has 48 frames but this motion module takes at most 32 per pass; "
                               "add a Context Scheduler")
    with pytest.raises(FrameCountError) as named:
        check_frame_count(48, 32, has_context=False, source="mm_sd_v15_v2.ckpt")
    assert str(named.value) == ("the latent has 48 frames but motion module 'mm_sd_v15_v2.ckpt' takes at most 32 per "
                                "pass; add a Context Scheduler")
    assert issubclass(FrameCountError, ValueError)


@pytest.mark.parametrize(("frames", "has_context"), [(1, False), (16, False), (17, True), (500, True)])
def test_frame_count_accepts(frames, has_context):
    """1 frame, exactly the limit, and any count with context windows pass."""
    check_frame_count(frames, 16, has_context)
