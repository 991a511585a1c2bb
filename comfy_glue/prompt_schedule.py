"""Encode a prompt schedule with ComfyUI's CLIP: each distinct prompt once, then one conditioning row per frame.

Prompts longer than 77 tokens take several 77-token chunks, which core encodes one by one and joins along the
token axis. Before encoding, every prompt is padded at the token level with empty chunks (core's own
tokenisation of "") to the longest prompt's chunk count, so every encoding has the same token length and a
linear blend mixes token i of one prompt with token i of the next (not with an unrelated part of the clip).
The pooled output (SDXL's ``y``) is the first chunk's and is blended per frame the same way.
"""
from __future__ import annotations

import torch

from ..sampling.prompt_schedule import Interpolation, blend, distinct_prompts, parse_schedule, prompt_weights


def pad_tokens(tokens: list[dict], empty: dict) -> list[dict]:
    """Each tokenisation with ``empty``'s single chunk appended until all have as many chunks, per encoder."""
    longest = {key: max(len(t[key]) for t in tokens) for key in empty}
    return [{key: list(chunks) + [empty[key][0]] * (longest.get(key, len(chunks)) - len(chunks))
             for key, chunks in t.items()} for t in tokens]


def encode_prompts(clip, prompts: list[str]) -> list[dict]:
    """One ``encode_from_tokens`` per prompt, tokenised as CLIP Text Encode does (weights like ``(word:1.2)``)."""
    tokens = pad_tokens([clip.tokenize(p) for p in prompts], clip.tokenize(""))
    return [clip.encode_from_tokens(t, return_pooled=True, return_dict=True) for t in tokens]


def _stack_blend(values: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Per-frame rows from one (1, ...) tensor per prompt."""
    return blend(torch.cat(values), weights)  # prompts x (1, ...) -> (prompts, ...) -> (frames, ...)


def schedule_conditioning(clip, text: str, frames: int, interpolation: str, pre_text: str = "",
                          post_text: str = "") -> list:
    """A CONDITIONING whose cond (and pooled output) holds one row per frame of the scheduled prompts."""
    keyframes = parse_schedule(text, frames)
    prompts, index = distinct_prompts(keyframes, pre_text, post_text)
    weights = prompt_weights(keyframes, frames, Interpolation(interpolation), index, len(prompts))
    encoded = encode_prompts(clip, prompts)
    cond = _stack_blend([e["cond"] for e in encoded], weights)  # (frames, tokens, channels)
    extra = {k: v for k, v in encoded[0].items() if k not in ("cond", "pooled_output")}
    pooled = [e.get("pooled_output") for e in encoded]
    if all(isinstance(p, torch.Tensor) for p in pooled):
        extra["pooled_output"] = _stack_blend(pooled, weights)  # (frames, pooled channels)
    return [[cond, extra]]
