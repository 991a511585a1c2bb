"""Pure python/torch sampling helpers: context windows, fuse weights, FreeNoise, seams, frame checks."""

from .context import (
    ContextInputError,
    ContextOptions,
    ContextOptionsError,
    ContextSchedule,
    FuseMethod,
    fuse_weights,
    ordered_halving,
    windows,
)
from .frames import FrameCountError, check_frame_count
from .freenoise import FreeNoiseError, freenoise, freenoise_sources
from .keyframes import KeyframeIndexError, parse_keyframes
from .seams import SeamMetricError, seam_metric

__all__ = [
    "ContextInputError",
    "ContextOptions",
    "ContextOptionsError",
    "ContextSchedule",
    "FrameCountError",
    "FreeNoiseError",
    "FuseMethod",
    "KeyframeIndexError",
    "SeamMetricError",
    "check_frame_count",
    "freenoise",
    "freenoise_sources",
    "fuse_weights",
    "ordered_halving",
    "parse_keyframes",
    "seam_metric",
    "windows",
]
