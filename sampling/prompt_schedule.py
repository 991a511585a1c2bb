"""Prompt schedules ("0: a bud" / "16: a flower in bloom"): parsing and per-frame blend weights (pure python/torch).

A schedule is one keyframe per line, ``FRAME: prompt``; blank lines and ``#`` comments are skipped. Frame ``f``
gets a weight per distinct prompt: ``hold`` gives all of it to the last keyframe at or before ``f``; ``linear``
blends the two keyframes around ``f``, ``(1 - t)`` to the earlier and ``t = (f - f_a) / (f_b - f_a)`` to the later.
Frames before the first keyframe take the first keyframe, frames after the last hold the last.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import torch

_LINE = re.compile(r"\s*(-?\d+)\s*:(.*)", re.DOTALL)


class Interpolation(str, Enum):
    """How frames between two keyframes are conditioned."""

    LINEAR = "linear"
    HOLD = "hold"


class PromptScheduleError(ValueError):
    """A schedule text that is not one ``FRAME: prompt`` line per keyframe, in order, inside the clip."""


@dataclass(frozen=True)
class Keyframe:
    """One parsed line: its frame, its prompt (pre/post text not yet added) and where it came from."""

    frame: int
    prompt: str
    line: int  # 1-based line number in the text
    text: str  # the line as written, stripped


def _where(number: int, text: str, name: str) -> str:
    """The start of an error sentence naming one line of the schedule."""
    return f"{name} line {number} ({text!r})"


def _parse_line(number: int, text: str, frames: int, name: str) -> Keyframe:
    """One non-blank, non-comment line as a Keyframe, or PromptScheduleError naming it."""
    match = _LINE.fullmatch(text)
    if match is None:
        raise PromptScheduleError(
            f"{_where(number, text, name)}: expected 'FRAME: prompt' such as '16: a flower in bloom', "
            f"but the line does not start with a frame number and a colon")
    frame = int(match.group(1))
    if not 0 <= frame < frames:
        raise PromptScheduleError(
            f"{_where(number, text, name)}: frame {frame} is outside the clip, which has frames 0 to "
            f"{frames - 1} ({frames} frames)")
    return Keyframe(frame, match.group(2).strip(), number, text)


def parse_schedule(text: str, frames: int, name: str = "text") -> list[Keyframe]:
    """The keyframes of ``text`` for a clip of ``frames`` frames, strictly increasing; ``name`` labels errors."""
    if frames < 1:
        raise PromptScheduleError(f"frames must be at least 1, but got {frames}")
    keyframes: list[Keyframe] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = _parse_line(number, line, frames, name)
        if keyframes and key.frame <= keyframes[-1].frame:
            before = keyframes[-1]
            what = "repeats" if key.frame == before.frame else "comes before"
            raise PromptScheduleError(
                f"{_where(number, line, name)}: keyframes must be in increasing frame order, but frame "
                f"{key.frame} {what} frame {before.frame} of line {before.line}")
        keyframes.append(key)
    if not keyframes:
        raise PromptScheduleError(f"{name}: expected at least one 'FRAME: prompt' line, but found none")
    return keyframes


def full_prompt(prompt: str, pre_text: str = "", post_text: str = "") -> str:
    """``pre_text, prompt, post_text`` joined with ', ', leaving out the empty parts."""
    return ", ".join(p for p in (pre_text.strip(), prompt.strip(), post_text.strip()) if p)


def distinct_prompts(keyframes: list[Keyframe], pre_text: str = "", post_text: str = "") -> tuple[list[str], list[int]]:
    """(each distinct full prompt once, in order of first use; the index of each keyframe's prompt in it)."""
    prompts: list[str] = []
    index: list[int] = []
    for key in keyframes:
        text = full_prompt(key.prompt, pre_text, post_text)
        if text not in prompts:
            prompts.append(text)
        index.append(prompts.index(text))
    return prompts, index


def keyframe_weights(frames_of_keys: list[int], frames: int, interpolation: Interpolation) -> torch.Tensor:
    """(frames, keyframes) weights: each row sums to 1 and is non-zero on at most two neighbouring keyframes."""
    weights = torch.zeros(frames, len(frames_of_keys), dtype=torch.float64)
    for f in range(frames):
        after = next((i for i, k in enumerate(frames_of_keys) if k > f), len(frames_of_keys))
        if after == 0:  # before the first keyframe
            weights[f, 0] = 1.0
        elif after == len(frames_of_keys) or interpolation is Interpolation.HOLD:
            weights[f, after - 1] = 1.0
        else:
            a, b = frames_of_keys[after - 1], frames_of_keys[after]
            t = (f - a) / (b - a)
            weights[f, after - 1], weights[f, after] = 1.0 - t, t
    return weights


def prompt_weights(keyframes: list[Keyframe], frames: int, interpolation: Interpolation,
                   prompt_index: list[int], prompts: int) -> torch.Tensor:
    """(frames, prompts) weights: keyframe weights summed onto each keyframe's distinct prompt."""
    per_key = keyframe_weights([k.frame for k in keyframes], frames, Interpolation(interpolation))
    out = torch.zeros(frames, prompts, dtype=torch.float64)
    out.index_add_(1, torch.as_tensor(prompt_index), per_key)  # (frames, keys) -> (frames, prompts)
    return out


def blend(encodings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-frame rows from per-prompt rows: (prompts, ...) with weights (frames, prompts) -> (frames, ...)."""
    flat = encodings.reshape(encodings.shape[0], -1)  # (prompts, ...) -> (prompts, n)
    dtype = torch.promote_types(flat.dtype, torch.float32)  # fp16 encodings blend in fp32
    out = weights.to(flat.device, dtype) @ flat.to(dtype)  # (frames, prompts) @ (prompts, n) -> (frames, n)
    return out.to(flat.dtype).reshape(weights.shape[0], *encodings.shape[1:])
