"""Frame-count checks made before sampling with a motion module."""

from __future__ import annotations


class FrameCountError(ValueError):
    """The latent batch has a frame count the motion module cannot sample."""


def check_frame_count(frames: int, pe_length: int, has_context: bool) -> None:
    """Raise FrameCountError for 0 frames, or for more than pe_length frames without context windows."""
    if frames < 1:
        raise FrameCountError(f"the latent has {frames} frames; expected at least 1")
    if frames > pe_length and not has_context:
        raise FrameCountError(
            f"{frames} frames exceed this module's limit of {pe_length}; add a Context Scheduler"
        )
