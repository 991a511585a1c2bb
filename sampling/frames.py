"""Frame-count checks made before sampling with a motion module."""

from __future__ import annotations


class FrameCountError(ValueError):
    """The latent batch has a frame count the motion module cannot sample."""


def check_frame_count(frames: int, pe_length: int, has_context: bool, source: str = "") -> None:
    """Raise FrameCountError for 0 frames, or for more than pe_length frames without context windows;
    ``source`` names the motion-module file in the message."""
    if frames < 1:
        raise FrameCountError(f"the latent has {frames} frames; expected at least 1")
    if frames > pe_length and not has_context:
        module = f"motion module '{source}'" if source else "this motion module"
        raise FrameCountError(
            f"the latent has {frames} frames but {module} takes at most {pe_length} per pass; "
            f"add a Context Scheduler"
        )
