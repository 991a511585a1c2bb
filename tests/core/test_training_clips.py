"""Train MotionLoRA's clip batching without ComfyUI: a batch splits into equal clips or is refused in one sentence,
and the draw order shows every clip once per shuffled round."""
from __future__ import annotations

import pytest
import torch

from motion_modules.training import TrainingInputError, clip_order, split_clips


def test_zero_clip_frames_is_one_clip_of_the_whole_batch():
    x = torch.randn(12, 4, 3, 3)
    clips = split_clips(x, 0)
    assert clips.shape == (1, 12, 4, 3, 3) and torch.equal(clips[0], x)


def test_clip_frames_cuts_consecutive_runs():
    x = torch.arange(12.0).view(12, 1, 1, 1)
    clips = split_clips(x, 4)
    assert clips.shape == (3, 4, 1, 1, 1)
    assert clips[:, :, 0, 0, 0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


@pytest.mark.parametrize("frames, clip_frames, words", [(10, 4, "10 frames does not split into clips of"),
                                                         (8, -1, "clip_frames must be 0")])
def test_bad_clip_frames_is_one_sentence(frames, clip_frames, words):
    with pytest.raises(TrainingInputError, match=words) as info:
        split_clips(torch.zeros(frames, 4, 2, 2), clip_frames)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


@pytest.mark.parametrize("clips, draws", [(3, 9), (4, 10), (5, 2)])
def test_every_clip_once_per_round(clips, draws):
    order = clip_order(clips, draws, torch.Generator().manual_seed(1))
    assert len(order) == draws
    for start in range(0, draws, clips):
        chunk = order[start:start + clips]
        assert len(set(chunk)) == len(chunk) and set(chunk) <= set(range(clips))


def test_rounds_are_shuffled_and_seeded():
    orders = [clip_order(6, 60, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert orders[0] == orders[1] and orders[0] != orders[2]
    assert len({tuple(orders[0][i:i + 6]) for i in range(0, 60, 6)}) > 1


def test_one_clip_draws_nothing_from_the_generator():
    g = torch.Generator().manual_seed(3)
    assert clip_order(1, 5, g) == [0] * 5
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=torch.Generator().manual_seed(3)))
