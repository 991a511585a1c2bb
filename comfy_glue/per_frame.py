"""One slicing mechanism for everything in a cond that carries one entry per frame.

Under context windows each window is sampled as a clip of its own, so anything in a cond with one entry
per frame along dim 0 must hold only the window's frames: ControlNet / T2I-Adapter hints and their extra
concat inputs (inpaint masks), down a ``previous_controlnet`` chain; per-frame ``model_conds`` (prompt
schedules' cross-attention, ``concat`` latents, noise masks of inpaint models). The rule is the same for
all: a tensor whose first dimension equals the clip's frame count is indexed by the window's frames;
anything else (a single entry, broadcast by core) passes unchanged.

Controls are copied, never changed: a window's copy is a shallow ``copy.copy`` of each link, sharing the
prepared network, timestep range and strength with the original and differing only in the hint, so core's
own ``get_control`` resizes and encodes the window's hint once and keeps it (``WindowControls`` holds the
copies for one sampling run). ``control.copy()`` would need ``pre_run`` again, which for a Control-LoRA
builds a whole network.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch

DERIVED = ("cond_hint", "extra_concat", "control_input")
"""What core's controls compute from the hint on first use (resized/encoded hint, T2I-Adapter features)."""


class PerFrameError(ValueError):
    """A per-frame input (a ControlNet hint batch) has neither one entry nor one per frame."""


def is_per_frame(value: object, frames: int) -> bool:
    """Whether ``value`` is a tensor with one entry per frame along dim 0."""
    return isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == frames


def take_frames(value, index_list: Sequence[int], frames: int, device=None):
    """The window's entries of a per-frame tensor; anything else unchanged."""
    if not is_per_frame(value, frames):
        return value
    out = value[torch.as_tensor(list(index_list), device=value.device)]  # (frames, ...) -> (window, ...)
    return out if device is None else out.to(device)


def chain(control) -> Iterator:
    """The control and every ``previous_controlnet`` below it."""
    while control is not None:
        yield control
        control = getattr(control, "previous_controlnet", None)


def _per_frame_inputs(link) -> list[tuple[str, object]]:
    """(name, value) of each input of one control link that may carry one entry per frame."""
    extra = [("extra concat input (mask)", e) for e in getattr(link, "extra_concat_orig", [])]
    return [("hint image", getattr(link, "cond_hint_original", None)), *extra]


def _check_rows(name: str, cond: dict, frames: int) -> None:
    """Raise PerFrameError for prompt rows (cross-attention or pooled) that are neither 1 nor ``frames``."""
    for what in ("cross_attn", "pooled_output"):
        value = cond.get(what)
        n = value.shape[0] if isinstance(value, torch.Tensor) and value.ndim > 1 else 1
        if n not in (1, frames):
            raise PerFrameError(
                f"the {name} conditioning holds {n} rows (a Prompt Schedule for {n} frames?) but the latent has "
                f"{frames} frames; it must hold 1 row or one per frame ({frames})")


def check_controls(conds: dict, frames: int) -> None:
    """Raise PerFrameError for a control hint (or extra concat) batch, or prompt rows, neither 1 nor ``frames``."""
    for name, cond_list in conds.items():
        for cond in cond_list or []:
            _check_rows(name, cond, frames)
            for link in chain(cond.get("control")):
                for what, value in _per_frame_inputs(link):
                    n = value.shape[0] if isinstance(value, torch.Tensor) and value.ndim > 0 else 1
                    if n not in (1, frames):
                        raise PerFrameError(
                            f"the {type(link).__name__} {what} batch must hold 1 image or one per frame "
                            f"({frames}), but it holds {n}")


def prepare_controls(conds: dict, shape) -> None:
    """Let each control whose per-frame inputs depend on the clip (SparseCtrl keyframes) build them for ``shape``."""
    for cond_list in conds.values():
        for cond in cond_list or []:
            for link in chain(cond.get("control")):
                prepare = getattr(link, "prepare_frames", None)
                if prepare is not None:
                    prepare(shape)


def window_control(control, index_list: Sequence[int], frames: int):
    """The control chain as the window sees it: a copy with sliced hints, or ``control`` if nothing is per-frame."""
    if not any(is_per_frame(v, frames) for link in chain(control) for _, v in _per_frame_inputs(link)):
        return control
    return _copy_chain(control, index_list, frames)


def _copy_chain(control, index_list: Sequence[int], frames: int):
    """Shallow copies of every link, each holding the window's hint frames and no prepared hint."""
    c = copy.copy(control)  # shares network, timestep range, strength, model sampling
    c.cond_hint_original = take_frames(control.cond_hint_original, index_list, frames)
    c.extra_concat_orig = [take_frames(e, index_list, frames) for e in control.extra_concat_orig]
    for name in DERIVED:
        if hasattr(c, name):
            setattr(c, name, None)
    if control.previous_controlnet is not None:
        c.previous_controlnet = _copy_chain(control.previous_controlnet, index_list, frames)
    return c


def slice_model_conds(model_conds: dict, index_list: Sequence[int], frames: int, device=None) -> dict:
    """``model_conds`` with every per-frame CONDRegular-like entry reduced to the window's frames."""
    out = dict(model_conds)
    for key, value in model_conds.items():
        cond = getattr(value, "cond", None)
        if is_per_frame(cond, frames) and hasattr(value, "_copy_with"):
            out[key] = value._copy_with(take_frames(cond, index_list, frames, device))
    return out


def window_cond(cond: dict, index_list: Sequence[int], frames: int, controls: WindowControls, device=None) -> dict:
    """One cond dict as the window sees it: per-frame model conds and control hints sliced."""
    out = dict(cond)
    if "model_conds" in out:
        out["model_conds"] = slice_model_conds(out["model_conds"], index_list, frames, device)
    if out.get("control") is not None:
        out["control"] = controls.get(out["control"], index_list, frames)
    return out


class WindowControls:
    """Per-window control copies for one sampling run, so each window's hint is prepared once, not per step.

    Copies for windows the previous model call did not use are dropped at the next call (uniform schedules
    move their windows every step), so at most two steps' windows are held.
    """

    def __init__(self):
        self._entries: dict[tuple, tuple] = {}
        self._used: set[tuple] = set()

    def get(self, control, index_list: Sequence[int], frames: int):
        """The window's copy of ``control``, made on first use."""
        key = (id(control), tuple(index_list))
        entry = self._entries.get(key)
        if entry is None or entry[0] is not control:
            entry = (control, window_control(control, index_list, frames))
            self._entries[key] = entry
        self._used.add(key)
        return entry[1]

    def next_call(self) -> None:
        """Forget the copies the last model call did not use."""
        self._entries = {k: v for k, v in self._entries.items() if k in self._used}
        self._used = set()

    def clear(self) -> None:
        """Drop every copy (and the hints they prepared)."""
        self._entries, self._used = {}, set()

    def __len__(self) -> int:
        return len(self._entries)
