"""Seam metric: how much larger frame-to-frame change is across context-window boundaries than inside windows."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class SeamMetricError(ValueError):
    """The latents or windows given to seam_metric cannot produce a ratio."""


def window_membership(num_frames: int, windows: Sequence[Sequence[int]]) -> list[frozenset[int]]:
    """For each frame, the set of window numbers that contain it."""
    members: list[set[int]] = [set() for _ in range(num_frames)]
    for w, window in enumerate(windows):
        for frame in window:
            if not 0 <= frame < num_frames:
                raise SeamMetricError(f"window frame indices must lie in [0, {num_frames}), but got {frame}")
            members[frame].add(w)
    return [frozenset(m) for m in members]


def boundary_pairs(num_frames: int, windows: Sequence[Sequence[int]]) -> list[bool]:
    """For t in 0..f-2, True when frames t and t+1 lie in different sets of windows (a seam)."""
    members = window_membership(num_frames, windows)
    uncovered = [t for t, m in enumerate(members) if not m]
    if uncovered:
        raise SeamMetricError(f"every frame must be in some window, but frames {uncovered} are in none")
    return [members[t] != members[t + 1] for t in range(num_frames - 1)]


def seam_metric(latents: torch.Tensor, windows: Sequence[Sequence[int]]) -> float:
    """Mean |x[t+1]-x[t]| over seam pairs divided by the mean over pairs inside the same windows.

    A pair (t, t+1) is a seam when the set of windows containing t differs from the set containing
    t+1, and inside otherwise. 1.0 means seams change no more than the rest of the clip (a clip
    with no change at all also gives 1.0; change only at seams gives inf). Raises SeamMetricError
    when there is no seam pair or no inside pair, since the ratio is then undefined.
    """
    if latents.ndim != 4:
        raise SeamMetricError(f"latents must have shape (f, c, h, w), but got {tuple(latents.shape)}")
    is_seam = torch.tensor(boundary_pairs(latents.shape[0], windows), dtype=torch.bool)
    if not is_seam.any():
        raise SeamMetricError("the windows must leave at least one seam between adjacent frames, but found none")
    if is_seam.all():
        raise SeamMetricError("the windows must share at least one adjacent frame pair, but found none")
    step = (latents[1:] - latents[:-1]).abs().flatten(1).double().mean(1)  # (f-1, c, h, w) -> (f-1,)
    seam, inside = step[is_seam].mean().item(), step[~is_seam].mean().item()
    if inside == 0.0:
        return 1.0 if seam == 0.0 else float("inf")
    return seam / inside
