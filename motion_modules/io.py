"""Reading motion-module files safely: safetensors, or PyTorch checkpoints through weights-only unpickling
only (never a fallback that runs code), and diffusers folders with their ``config.json``."""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from .errors import UnreadableFileError, first_few
from .formats import detect, to_internal, validate
from .spec import MotionModuleSpec

logger = logging.getLogger(__name__)

DIFFUSERS_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                          "diffusion_pytorch_model.bin")
WRAPPER_KEYS = ("state_dict", "module", "controlnet")  # train.py saves {"state_dict": …}; some repacks nest "module"; SparseCtrl may nest "controlnet"
HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")
LFS_MARKER = b"version https://git-lfs"
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors format's own header limit


def resolve_weights_path(path: str | os.PathLike) -> Path:
    """The weights file for ``path``: the file itself, or a diffusers folder's weights file."""
    p = Path(path)
    if p.is_dir():
        for name in DIFFUSERS_WEIGHT_NAMES:
            if (p / name).is_file():
                return p / name
        raise UnreadableFileError(f"{p.name}: expected a folder holding {DIFFUSERS_WEIGHT_NAMES[0]}, "
                                  f"found none of {', '.join(DIFFUSERS_WEIGHT_NAMES)}.")
    if not p.is_file():
        raise UnreadableFileError(f"{p.name}: expected a weights file, found nothing at {p}.")
    return p


def display_name(path: str | os.PathLike) -> str:
    """The name errors and logs use: the file name, or ``folder/file`` for a diffusers folder."""
    p = Path(path)
    weights = resolve_weights_path(p)
    return f"{p.name}/{weights.name}" if p.is_dir() else p.name


def read_config(path: str | os.PathLike) -> dict | None:
    """The ``config.json`` beside a diffusers ``diffusion_pytorch_model.*`` file, parsed as JSON only."""
    weights = resolve_weights_path(path)
    config = weights.parent / "config.json"
    if not weights.name.startswith("diffusion_pytorch_model") or not config.is_file():
        return None
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s: ignoring config.json, which is not readable JSON (%s)", weights.parent.name, exc)
        return None
    return parsed if isinstance(parsed, dict) else None


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of an exception text, without ANSI codes, trimmed to ``limit`` characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    sentence = re.split(r"(?<=[^.])\.(?:\s|$)|\n", text, maxsplit=1)[0].strip()
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def _refusal_reason(exc: Exception) -> str:
    """The weights-only unpickler's own reason (e.g. ``Unsupported global: GLOBAL builtins.exec …``)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    return _first_sentence(text.split(marker, 1)[1] if marker in text else text)


def _sniff(path: Path, name: str) -> str:
    """``safetensors`` | ``torch_zip`` | ``torch_pickle`` from the first bytes; raises for anything else."""
    size = path.stat().st_size
    if size == 0:
        raise UnreadableFileError(f"{name}: expected a weights file, found an empty file (0 bytes).")
    with path.open("rb") as f:
        head = f.read(1024)
    if head.startswith(b"PK\x03\x04"):
        return "torch_zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "torch_pickle"
    header_length = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and (header_length < size or path.suffix == ".safetensors"):
        return "safetensors"
    if head.lstrip().lower().startswith(HTML_MARKERS) or b"<html" in head.lower():
        raise UnreadableFileError(f"{name}: expected a weights file, found what looks like an HTML page "
                                  f"(a web page was saved instead of the file; download it again).")
    if head.startswith(LFS_MARKER):
        raise UnreadableFileError(f"{name}: expected a weights file, found a Git LFS pointer ({size} bytes) "
                                  f"instead of the weights (fetch the real file, e.g. git lfs pull).")
    if head.startswith(b"GGUF"):
        raise UnreadableFileError(f"{name}: expected .safetensors or a PyTorch checkpoint, found a GGUF file.")
    what = "content that is not a safetensors file (header" if path.suffix == ".safetensors" \
        else "unrecognised content (it"
    raise UnreadableFileError(f"{name}: expected .safetensors or a PyTorch checkpoint, found {what} "
                              f"starts with bytes {head[:8].hex(' ')}).")


def _check_safetensors(path: Path, name: str) -> None:
    """Check the header and that the file holds every byte the header describes."""
    size = path.stat().st_size
    with path.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if length > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise UnreadableFileError(f"{name}: expected a safetensors header of {length} bytes, found a "
                                      f"truncated file ({size} bytes in all).")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnreadableFileError(f"{name}: expected a safetensors file, found one whose header is not "
                                  f"JSON (not a safetensors file).") from None
    ends = [int(v["data_offsets"][1]) for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and len(v.get("data_offsets", ())) == 2]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        raise UnreadableFileError(f"{name}: expected {needed} bytes as its safetensors header describes, "
                                  f"found a truncated file of {size} bytes.")


def _load_safetensors(path: Path, name: str) -> dict[str, Tensor]:
    """Every tensor of a checked safetensors file, on the CPU."""
    _check_safetensors(path, name)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnreadableFileError(f"{name}: expected a readable safetensors file, found one that fails "
                                  f"to load ({_first_sentence(str(exc))}).") from None


def _load_torch(path: Path, name: str, is_zip: bool) -> object:
    """A PyTorch checkpoint through the weights-only unpickler (memory-mapped when zip-based)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        raise UnreadableFileError(f"{name}: expected a checkpoint of plain tensors, found a pickle refused "
                                  f"by weights-only loading: {_refusal_reason(exc)}.") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise UnreadableFileError(f"{name}: expected a readable PyTorch checkpoint, found a damaged or "
                                  f"truncated one ({_first_sentence(str(exc))}).") from None


def _unwrap(obj: object) -> object:
    """Descend through ``state_dict`` / ``module`` wrappers to the dict that holds the tensors."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if inner is None:
            return obj
        obj = inner
    return obj


def _tensors_only(obj: object, name: str) -> dict[str, Tensor]:
    """The string-keyed tensors of a loaded object; other values (epoch, configs …) are dropped."""
    if not isinstance(obj, Mapping):
        raise UnreadableFileError(f"{name}: expected a dict of tensors, found a {type(obj).__name__}.")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if not tensors:
        raise UnreadableFileError(f"{name}: expected tensors, found none (top-level keys: "
                                  f"{first_few([str(k) for k in obj]) or 'none'}).")
    if len(tensors) < len(obj):
        logger.debug("%s: ignoring %d non-tensor entries", name, len(obj) - len(tensors))
    return tensors


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a weights file or diffusers folder, read without ever running pickled code."""
    weights = resolve_weights_path(path)
    name = display_name(path)
    kind = _sniff(weights, name)
    if kind == "safetensors":
        return _load_safetensors(weights, name)
    return _tensors_only(_unwrap(_load_torch(weights, name, kind == "torch_zip")), name)


def load_motion_module(path: str | os.PathLike) -> tuple[MotionModuleSpec, dict[str, Tensor]]:
    """Read, identify, convert and fully check a motion module; one typed error, never a partial load."""
    name = display_name(path)
    state_dict = read_state_dict(path)
    spec = detect(state_dict, source=name, config=read_config(path))
    internal = to_internal(state_dict, spec)
    validate(internal, spec, source=name)
    logger.info("%s: %s", name, spec.describe())
    return spec, internal
