"""MotionLoRA training parts in pure torch: the trainable low-rank factors of the temporal attention projections,
their file layout (the official ``….processor.to_q_lora.down.weight`` keys, ΔW = up @ down), the optimizer and the
input checks (AnimateDiff, Guo et al. 2023, arXiv 2307.04725, sec. 4.3: MotionLoRA on the motion module's
self-attention, image model and motion module frozen)."""
from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from .errors import MotionModuleError
from .lora import lora_targets

ATTENTION_RE = re.compile(r"^(?P<attn>.+\.attention_blocks\.\d)\.(?P<proj>to_[qkv]|to_out)(?:\.0)?\.weight$")
MIN_FRAMES = 2


class TrainingInputError(MotionModuleError):
    """An input of Train MotionLoRA cannot be trained on (too few frames, too many, rank 0 …)."""


def attention_targets(spec) -> dict[str, tuple[int, int]]:
    """Internal keys and ``(out, in)`` shapes of every temporal attention projection (q, k, v, out)."""
    return {k: s for k, s in lora_targets(spec).items() if ATTENTION_RE.match(k)}


def official_prefix(internal_weight: str) -> str:
    """The official MotionLoRA prefix of a projection (``….attention_blocks.0.to_out.0.weight`` ->
    ``….attention_blocks.0.processor.to_out_lora``)."""
    m = ATTENTION_RE.match(internal_weight)
    if m is None:
        raise ValueError(f"expected a temporal attention projection weight, but got {internal_weight!r}")
    return f"{m['attn']}.processor.{m['proj']}_lora"


class LoRAFactors(nn.Module):
    """One ``down`` (rank, in) and ``up`` (out, rank) pair per target weight; ΔW = sign · up @ down, up starts at
    zero. ``sign`` is the strength training applies them at: 1, or −1 while learning the reverse move."""

    def __init__(self, targets: dict[str, tuple[int, int]], rank: int, generator: torch.Generator | None = None):
        super().__init__()
        self.sign = 1.0
        self.keys = sorted(targets)
        self.down = nn.ParameterList(
            [nn.Parameter(torch.randn(rank, targets[k][1], generator=generator) / rank) for k in self.keys])
        self.up = nn.ParameterList([nn.Parameter(torch.zeros(targets[k][0], rank)) for k in self.keys])

    def delta(self, index: int) -> Tensor:
        """ΔW of target ``index`` (out, in)."""
        delta = self.up[index] @ self.down[index]
        return delta if self.sign == 1.0 else self.sign * delta

    def official_state_dict(self) -> dict[str, Tensor]:
        """The factors under the official MotionLoRA keys, detached, contiguous, float32."""
        sd = {}
        for i, key in enumerate(self.keys):
            prefix = official_prefix(key)
            sd[f"{prefix}.down.weight"] = self.down[i].detach().float().contiguous().clone()
            sd[f"{prefix}.up.weight"] = self.up[i].detach().float().contiguous().clone()
        return sd


class AddDelta:
    """A weight function for one layer: ``weight + ΔW`` (cast to the weight's dtype), differentiable in ΔW."""

    def __init__(self, factors: LoRAFactors, index: int):
        self.factors, self.index = factors, index

    def __call__(self, weight: Tensor) -> Tensor:
        delta = self.factors.delta(self.index).to(device=weight.device)
        return weight + delta.to(weight.dtype)


def make_optimizer(factors: LoRAFactors, learning_rate: float) -> torch.optim.Optimizer:
    """AdamW with AnimateDiff's training defaults (betas 0.9/0.999, weight decay 1e-2)."""
    return torch.optim.AdamW(factors.parameters(), lr=learning_rate, betas=(0.9, 0.999), weight_decay=1e-2)


def split_clips(x0: Tensor, clip_frames: int) -> Tensor:
    """A batch of frames as clips, (clips, frames, ...): the whole batch is one clip when ``clip_frames`` is 0, else
    consecutive runs of ``clip_frames`` frames are one clip each."""
    if clip_frames < 0:
        raise TrainingInputError(f"Train MotionLoRA: clip_frames must be 0 (the whole batch is one clip) or more, but "
                                 f"got {clip_frames}.")
    total = x0.shape[0]
    if clip_frames == 0:
        return x0.unsqueeze(0)
    if total % clip_frames:
        raise TrainingInputError(f"Train MotionLoRA: a batch of {total} frames does not split into clips of "
                                 f"clip_frames = {clip_frames} frames each; give a multiple of {clip_frames} frames "
                                 f"or set clip_frames to 0.")
    return x0.reshape(total // clip_frames, clip_frames, *x0.shape[1:])


def clip_order(clips: int, draws: int, generator: torch.Generator) -> list[int]:
    """Which clip each of ``draws`` losses uses: every clip once per shuffled round; no draw from ``generator`` for
    a single clip (so one-clip training is what it was before clips existed)."""
    if clips == 1:
        return [0] * draws
    order: list[int] = []
    while len(order) < draws:
        order += torch.randperm(clips, generator=generator).tolist()
    return order[:draws]


def check_training_inputs(frames: int, pe_length: int, rank: int, steps: int, learning_rate: float,
                          noise_levels: int, name: str) -> None:
    """Raise TrainingInputError (one sentence) unless the clip and settings can be trained on."""
    if frames < MIN_FRAMES:
        raise TrainingInputError(f"Train MotionLoRA: the clip must have at least {MIN_FRAMES} frames (a MotionLoRA "
                                 f"learns motion between frames), but it has {frames}.")
    if frames > pe_length:
        raise TrainingInputError(f"Train MotionLoRA: the clip must have at most {pe_length} frames, the most "
                                 f"{name} sees at once (its PE length), but it has {frames}; cut it shorter.")
    for label, value in (("rank", rank), ("steps", steps), ("noise_levels", noise_levels)):
        if value < 1:
            raise TrainingInputError(f"Train MotionLoRA: {label} must be at least 1, but got {value}.")
    if not learning_rate > 0:
        raise TrainingInputError(f"Train MotionLoRA: learning_rate must be above 0, but got {learning_rate}.")


def frame_weighted_mse(prediction: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """mean(weight · (prediction − target)²), ``weight`` broadcast per frame (f,) over (f, c, h, w)."""
    err = (prediction.float() - target.float()) ** 2
    return (err * weight.float().view(-1, *([1] * (err.ndim - 1)))).mean()
