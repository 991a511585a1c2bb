"""Keyframe index parsing: what Apply SparseCtrl and the colour match read from their text inputs."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sampling.keyframes import KeyframeIndexError, parse_keyframes


@pytest.mark.parametrize("text,frames,expected", [
    ("0", 16, [0]), ("0,15", 16, [0, 15]), ("0, -1", 16, [0, 15]), ("every 4", 16, [0, 4, 8, 12]),
    ("every 5 from 2", 16, [2, 7, 12]), ("15,0,0", 16, [0, 15]), ("every 1", 3, [0, 1, 2]),
])
def test_parse_examples(text, frames, expected):
    """The documented forms name the expected frames."""
    assert parse_keyframes(text, frames) == expected


@pytest.mark.parametrize("text", ["16", "-17", "a", "", "every 0", "1-3", "every 2 from 16"])
def test_bad_text_is_one_sentence_naming_the_input(text):
    """Anything naming no frame of a 16-frame clip is one error naming the input."""
    with pytest.raises(KeyframeIndexError, match="^frame_indices: "):
        parse_keyframes(text, 16)


@given(st.integers(1, 64), st.lists(st.integers(-64, 63), min_size=1, max_size=8))
def test_indices_round_trip(frames, picks):
    """Any in-range list of indices comes back as its distinct non-negative frames, sorted."""
    picks = [p for p in picks if -frames <= p < frames] or [0]
    assert parse_keyframes(",".join(map(str, picks)), frames) == sorted({p % frames for p in picks})
