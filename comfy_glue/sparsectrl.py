"""SparseCtrl on core's ControlNet mechanism: a ``ControlBase`` whose per-frame inputs follow the context windows.

The keyframe images become two per-frame tensors once the clip is known (at the OUTER_SAMPLE check, before
sampling): ``cond_hint_original`` (the condition on keyframes, zeros elsewhere; RGB: VAE latents × the SD1.5
scale factor, as the official pipeline encodes them; scribble: pixels in 0..1) and ``extra_concat_orig[0]``
(the conditioning mask, 1 on keyframes). ``per_frame.py`` slices both per window like any ControlNet hint,
so each window's encoder sees its own keyframes and runs its motion modules with the window's frame count.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import comfy.latent_formats
import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
import comfy.utils
import folder_paths
import torch
from comfy.controlnet import ControlBase

from ..motion_modules.sparsectrl import SparseCtrlSpec
from ..motion_modules.sparsectrl_format import build_encoder, load_sparsectrl
from ..sampling.keyframes import parse_keyframes
from .attention import motion_attention
from .loading import _storage_dtype

FOLDER = "controlnet"
log = logging.getLogger(__name__)


class SparseCtrlInputError(ValueError):
    """Apply SparseCtrl's inputs do not fit the clip (image count, missing VAE, unsliced windows)."""


@dataclass(frozen=True)
class LoadedSparseCtrl:
    """The SPARSE_CTRL socket value: the encoder on its own patcher, and what the file is."""

    patcher: comfy.model_patcher.ModelPatcher
    spec: SparseCtrlSpec
    name: str


def load_by_name(name: str) -> LoadedSparseCtrl:
    """Read, detect, check and wrap a SparseCtrl file from ``models/controlnet``."""
    spec, sd = load_sparsectrl(folder_paths.get_full_path_or_raise(FOLDER, name))
    dtype = _storage_dtype(next(iter(sd.values())).dtype, sum(t.numel() for t in sd.values()))
    model = build_encoder(spec, sd, operations=comfy.ops.manual_cast, dtype=dtype)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    log.info("%s: %s", name, spec.describe())
    return LoadedSparseCtrl(patcher, spec, name)


def _pixels(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE (n, H, W, 3) resized (centre crop) to height × width, as (n, 3, height, width)."""
    return comfy.utils.common_upscale(images.movedim(-1, 1), width, height, "bilinear", "center")


class SparseCtrlControl(ControlBase):
    """One Apply SparseCtrl: keyframe images, their frame-index text and the encoder."""

    def __init__(self, sparse: LoadedSparseCtrl, images: torch.Tensor, indices: str, vae=None):
        super().__init__()
        self.sparse, self.images, self.indices, self.vae = sparse, images, indices, vae
        self.model_sampling_current = None
        self.prepared_for: tuple | None = None  # (frames, h, w) the per-frame tensors were built for

    def copy(self) -> SparseCtrlControl:
        c = SparseCtrlControl(self.sparse, self.images, self.indices, self.vae)
        self.copy_to(c)
        c.prepared_for = self.prepared_for
        return c

    def keyframes(self, frames: int) -> list[int]:
        """The clip's keyframes; one clear error for indices outside it or an image count that does not fit."""
        picked = parse_keyframes(self.indices, frames, "Apply SparseCtrl frame_indices")
        n = self.images.shape[0]
        if n not in (1, len(picked)):
            raise SparseCtrlInputError(
                f"Apply SparseCtrl: images must hold 1 image or one per keyframe ({len(picked)} for "
                f"{self.indices!r} in a {frames}-frame clip), but it holds {n}")
        return picked

    def _condition(self, height: int, width: int) -> torch.Tensor:
        """The keyframe images as the encoder takes them: (n, c, h, w) latents (RGB) or pixels (scribble)."""
        pixels = _pixels(self.images, height * 8, width * 8)
        if not self.sparse.spec.latent_condition:
            return pixels
        if self.vae is None:
            raise SparseCtrlInputError(f"Apply SparseCtrl: {self.sparse.name} is an RGB SparseCtrl, which encodes "
                                       f"its keyframes with a VAE, but no vae is connected")
        latents = self.vae.encode(pixels.movedim(1, -1)[..., :3])
        return comfy.latent_formats.SD15().process_in(latents)  # × 0.18215, as the official pipeline

    def prepare_frames(self, shape) -> None:
        """Build the per-frame condition and mask for a clip of latent ``shape`` (frames, c, h, w)."""
        key = (int(shape[0]), int(shape[-2]), int(shape[-1]))
        if self.prepared_for == key:
            return
        picked = self.keyframes(key[0])
        cond = self._condition(key[1], key[2]).float().cpu()
        full = cond.new_zeros(key[0], *cond.shape[1:])
        full[picked] = cond.expand(len(picked), *cond.shape[1:]) if cond.shape[0] == 1 else cond
        mask = full.new_zeros(key[0], 1, *full.shape[-2:])
        mask[picked] = 1.0
        self.cond_hint_original, self.extra_concat_orig, self.cond_hint = full, [mask], None
        self.prepared_for = key

    def _hint(self, x: torch.Tensor, batched_number: int, dtype: torch.dtype) -> torch.Tensor:
        """Condition and mask for this call's frames, (clips × frames, c + 1, h, w), on x's device."""
        frames = x.shape[0] // batched_number
        if self.cond_hint_original is None:  # no Kinema OUTER_SAMPLE check ran: the batch is the clip
            self.prepare_frames((frames, *x.shape[1:]))
        if self.cond_hint_original.shape[0] != frames:
            raise SparseCtrlInputError(
                f"Apply SparseCtrl: the model runs {frames} frames at a time but the keyframes were placed in a "
                f"{self.cond_hint_original.shape[0]}-frame clip; use Kinema's Context Scheduler for windows")
        if self.cond_hint is None:
            hint = torch.cat([self.cond_hint_original, self.extra_concat_orig[0]], dim=1)
            self.cond_hint = hint.to(device=x.device, dtype=dtype)
        return self.cond_hint.repeat(batched_number, 1, 1, 1)  # one copy per cond/uncond clip

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options=None):
        prev = None
        if self.previous_controlnet is not None:
            prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)
        if self.strength == 0 or (self.timestep_range is not None and
                                  not self.timestep_range[1] <= t[0] <= self.timestep_range[0]):
            return prev
        model = self.sparse.patcher.model
        weight_dtype = model.conv_in.weight.dtype
        dtype = mm.unet_manual_cast(weight_dtype, x_noisy.device) or weight_dtype
        hint = self._hint(x_noisy, batched_number, dtype)
        context = cond.get("crossattn_controlnet", cond["c_crossattn"])
        timestep = self.model_sampling_current.timestep(t).float()
        down, mid = model(hint, timestep, mm.cast_to_device(context, x_noisy.device, dtype),
                          x_noisy.shape[0] // batched_number, motion_attention(transformer_options or {}))
        return self.control_merge({"output": down, "middle": [mid]}, prev, output_dtype=None)

    def get_models(self):
        return super().get_models() + [self.sparse.patcher]

    def pre_run(self, model, percent_to_timestep_function):
        super().pre_run(model, percent_to_timestep_function)
        self.model_sampling_current = model.model_sampling

    def cleanup(self):
        self.model_sampling_current = None
        super().cleanup()


def apply_sparsectrl(positive, negative, sparse: LoadedSparseCtrl, images, indices: str, strength: float,
                     start_percent: float, end_percent: float, vae=None) -> tuple[list, list]:
    """Both conditionings with a SparseCtrl control chained after whatever control they already carry."""
    if sparse.spec.latent_condition and vae is None:
        raise SparseCtrlInputError(f"Apply SparseCtrl: {sparse.name} is an RGB SparseCtrl, which encodes its "
                                   f"keyframes with a VAE, but no vae is connected")
    made: dict[int, SparseCtrlControl] = {}
    out = []
    for conditioning in (positive, negative):
        conds = []
        for embedding, options in conditioning:
            prev = options.get("control")
            if id(prev) not in made:
                control = SparseCtrlControl(sparse, images, indices, vae)
                control.strength, control.timestep_percent_range = strength, (start_percent, end_percent)
                made[id(prev)] = control.set_previous_controlnet(prev)
            conds.append([embedding, {**options, "control": made[id(prev)], "control_apply_to_uncond": False}])
        out.append(conds)
    return out[0], out[1]
