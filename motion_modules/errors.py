"""Typed errors for motion-module files: each message is one sentence naming the file, what was expected and
what was found, so a node can show it unchanged."""
from __future__ import annotations

from collections.abc import Sequence


class MotionModuleError(ValueError):
    """Base class: a file given as a motion module cannot be used as one."""


class UnreadableFileError(MotionModuleError):
    """The file is not a readable weights file (empty, truncated, HTML, random bytes, refused pickle)."""


class WrongFileKindError(MotionModuleError):
    """The file is valid weights, but of another kind (SD checkpoint, LoRA, MotionLoRA, adapter …)."""

    def __init__(self, message: str, kind: str = ""):
        super().__init__(message)
        self.kind = kind


class KeyLayoutError(MotionModuleError):
    """The keys or shapes do not form a complete motion module of a known layout."""

    def __init__(
        self,
        message: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        wrong_shapes: Sequence[str] = (),
    ):
        super().__init__(message)
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)
        self.wrong_shapes = tuple(wrong_shapes)


def first_few(names: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` for at most ``limit`` names, with ``, …`` when more were left out."""
    shown = ", ".join(names[:limit])
    return shown + (", …" if len(names) > limit else "")
