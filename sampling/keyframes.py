"""Which frames a keyframe input belongs to: "0", "0,15", "0,-1", "every 4" (pure python)."""

from __future__ import annotations

import re

_EVERY = re.compile(r"every\s+(\d+)(?:\s+from\s+(-?\d+))?")


class KeyframeIndexError(ValueError):
    """A keyframe index text that does not name frames of the clip."""


def _one(item: str, frames: int, name: str) -> list[int]:
    """The frames one comma-separated item names: an index (negative counts from the end) or 'every N [from K]'."""
    every = _EVERY.fullmatch(item)
    if every:
        step, start = int(every.group(1)), int(every.group(2) or 0)
        if step < 1:
            raise KeyframeIndexError(f"{name}: 'every N' needs N ≥ 1, but got {item!r}")
        return list(range(_index(start, frames, name, item), frames, step))
    if not re.fullmatch(r"-?\d+", item):
        raise KeyframeIndexError(
            f"{name}: expected frame numbers such as '0', '0,15', '0,-1' or 'every 4', but got {item!r}"
        )
    return [_index(int(item), frames, name, item)]


def _index(index: int, frames: int, name: str, item: str) -> int:
    """``index`` as a non-negative frame number, or KeyframeIndexError if the clip has no such frame."""
    if not -frames <= index < frames:
        raise KeyframeIndexError(
            f"{name}: frame {item!r} is outside the clip, which has frames 0 to {frames - 1} ({frames} frames)"
        )
    return index % frames


def parse_keyframes(text: str, frames: int, name: str = "frame_indices") -> list[int]:
    """The sorted, distinct frames ``text`` names in a clip of ``frames`` frames; ``name`` labels errors."""
    items = [item.strip().lower() for item in text.split(",")]
    if not any(items):
        raise KeyframeIndexError(f"{name}: expected at least one frame number, but got {text!r}")
    picked = {f for item in items if item for f in _one(item, frames, name)}
    return sorted(picked)
