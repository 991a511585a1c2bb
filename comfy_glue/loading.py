"""Load a motion-module file into a MotionModel managed by its own ComfyUI ModelPatcher."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
import folder_paths
import torch

from ..motion_modules import load_motion_module
from ..motion_modules.model import MotionModel

MODELS_FOLDER = "animatediff_models"
LORA_FOLDER = "animatediff_motion_lora"


@dataclass(frozen=True)
class LoadedMotionModule:
    """The MOTION_MODULE socket value: weights on their own patcher (MotionLoRA patches go there)."""

    patcher: comfy.model_patcher.ModelPatcher
    spec: object
    name: str
    channels: dict  # seat name -> channels, for fit checks before anything runs
    loras: tuple = ()  # (file name, strength) applied so far, for display
    compile: bool = False  # torch.compile each motion module at its first run

    def with_patcher(self, patcher, lora: tuple[str, float]) -> LoadedMotionModule:
        """The same module with another patcher (a clone carrying more patches)."""
        return replace(self, patcher=patcher, loras=(*self.loras, lora))


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _storage_dtype(stored: torch.dtype, params: int) -> torch.dtype:
    """The dtype ComfyUI picks for a UNet on the load device, given the file's dtype (fp16 on most GPUs,
    fp32 on the CPU, --fp16-unet / --bf16-unet honoured). The module then computes in the UNet's dtype
    without casting its weights on every call (6% of a CPU step; bench/README.md)."""
    device = mm.get_torch_device()
    chosen = mm.unet_dtype(device=device, model_params=params, supported_dtypes=list(FLOAT_DTYPES),
                           weight_dtype=stored)
    if chosen in FLOAT_DTYPES:
        return chosen
    if stored in FLOAT_DTYPES:  # fp8 UNet flags: keep the file's float dtype, cast per call
        return stored
    return torch.float16 if mm.should_use_fp16(device) else torch.float32


def build_motion_model(spec, state_dict: dict) -> MotionModel:
    """A MotionModel in the UNet's dtype, with ComfyUI's casting ops for whatever still differs at compute."""
    stored = next(iter(state_dict.values())).dtype
    dtype = _storage_dtype(stored, sum(t.numel() for t in state_dict.values()))
    model = MotionModel(spec, operations=comfy.ops.manual_cast, dtype=dtype, device="cpu")
    model.load_state_dict(state_dict, strict=True)
    return model.eval().requires_grad_(False)


def load_from_path(path: str, name: str, compile: bool = False) -> LoadedMotionModule:
    """Read, detect, validate and wrap a motion-module file; raises one clear error otherwise."""
    spec, state_dict = load_motion_module(path)
    model = build_motion_model(spec, state_dict)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    channels = {n: model.get_submodule(n).temporal_transformer.proj_in.in_features
                for n in model.module_names()}
    return LoadedMotionModule(patcher, spec, name, channels, compile=compile)


def load_by_name(name: str, compile: bool = False) -> LoadedMotionModule:
    """Load a file listed in the ``animatediff_models`` folder."""
    return load_from_path(folder_paths.get_full_path_or_raise(MODELS_FOLDER, name), name, compile)


def register_folders() -> None:
    """Register our model folders (the keys AnimateDiff-Evolved users already fill), once."""
    for key in (MODELS_FOLDER, LORA_FOLDER):
        paths, extensions = folder_paths.folder_names_and_paths.get(key, ([], set()))
        default = os.path.join(folder_paths.models_dir, key)
        if default not in paths:
            paths.insert(0, default)
        # extra_model_paths.yaml may have created the key first, with no extensions (= every file)
        extensions = set(extensions) | set(folder_paths.supported_pt_extensions)
        folder_paths.folder_names_and_paths[key] = (paths, extensions)
