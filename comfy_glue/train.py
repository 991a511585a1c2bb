"""Train a MotionLoRA on one clip (or a few of the same move) inside ComfyUI, through the same attached model Sample Animation runs.

The trainable factors sit on a clone of the motion module's patcher as weight wrappers (the mechanism core's Train
LoRA uses); the motion module is attached to a clone of the MODEL with ``attach``; one training step runs core's
guider and model call (``model_sampling.noise_scaling``, ``apply_model``, the attached motion module, our
wrappers) under a Sampler whose ``sample`` is the training loop, as core 0.8's ``TrainSampler`` does. ComfyUI runs
nodes under ``torch.inference_mode``; training runs under ``inference_mode(False)`` + ``enable_grad``, and weights
that were made under inference mode (every CPU weight) are replaced by ordinary copies for the run and put back
after. The trained factors are saved in the official MotionLoRA layout and applied back through Apply MotionLoRA's
own loader, so the MOTION_MODULE returned is exactly what loading the saved file gives.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass

import comfy.model_management as mm
import comfy.model_sampling
import comfy.samplers
import comfy.utils
import folder_paths
import torch
import torch.utils.checkpoint
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
from safetensors.torch import save_file
from torch import Tensor, nn

from ..motion_modules.model import MotionModule
from ..motion_modules.training import (
    AddDelta,
    LoRAFactors,
    TrainingInputError,
    attention_targets,
    check_training_inputs,
    clip_order,
    frame_weighted_mse,
    make_optimizer,
    split_clips,
)
from .attach import across_frames, attach, current_attachment, wrapped_forwards
from .loading import LORA_FOLDER, LoadedMotionModule
from .lora import apply_motion_lora

log = logging.getLogger(__name__)
AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class TrainSettings:
    """What one training run does."""

    rank: int = 4
    steps: int = 100
    learning_rate: float = 1e-4
    noise_levels: int = 1  # losses (one clip at one noise level each) per optimizer step
    seed: int = 0
    gradient_checkpointing: bool = False
    beta_schedule: str = "auto (motion module's)"
    clip_frames: int = 0  # frames per clip when the batch holds several clips; 0: the batch is one clip
    learn_reverse: bool = False  # every second loss: strength −1 on the clip played backwards


@dataclass(frozen=True)
class TrainResult:
    """The trained module (LoRA applied at strength 1), the loss per step, the saved file and the factors."""

    motion: LoadedMotionModule
    losses: list
    lora_name: str
    path: str
    factors: LoRAFactors


def loss_weight(model_sampling, sigma: Tensor) -> Tensor:
    """Weight turning the x0 error into the model's own loss: ε (1/σ²), v ((σ²+σd²)/(σ·σd)²), flow (1/σ²), x0 (1)."""
    if isinstance(model_sampling, comfy.model_sampling.V_PREDICTION):
        sd = float(model_sampling.sigma_data)
        return (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    if isinstance(model_sampling, comfy.model_sampling.X0):
        return torch.ones_like(sigma)
    if isinstance(model_sampling, (comfy.model_sampling.EPS, comfy.model_sampling.CONST)):
        return 1.0 / sigma ** 2
    return torch.ones_like(sigma)


def clip_latents(latent: dict | None, images: Tensor | None, vae) -> Tensor:
    """The clip as latents (frames, c, h, w): the LATENT as given, or the IMAGE batch encoded with the VAE."""
    if (latent is None) == (images is None):
        raise TrainingInputError("Train MotionLoRA: connect the clip either as images (with a vae) or as a latent, "
                                 f"but got {'both' if latent is not None else 'neither'}.")
    if latent is not None:
        return latent["samples"]
    if vae is None:
        raise TrainingInputError("Train MotionLoRA: images must come with a vae to encode them, but no vae is "
                                 "connected.")
    return vae.encode(images[:, :, :, :3])


@contextlib.contextmanager
def ordinary_weights(*modules: nn.Module):
    """Within this block, parameters and buffers made under inference mode are ordinary copies (autograd may save
    them for backward); the originals are put back afterwards. Weights already ordinary are not copied."""
    saved = []
    for module in modules:
        for m in module.modules():
            for store in (m._parameters, m._buffers):
                for name, t in list(store.items()):
                    if t is not None and t.is_inference():
                        saved.append((store, name, t))
                        copy = t.clone()
                        store[name] = nn.Parameter(copy, requires_grad=False) if isinstance(t, nn.Parameter) else copy
    try:
        yield len(saved)
    finally:
        for store, name, t in saved:
            store[name] = t


def _checkpointed(forward, recompute, *args, **kwargs):
    """Run ``forward`` under non-reentrant activation checkpointing; ``recompute()`` wraps the recomputation."""
    return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False,
                                             context_fn=lambda: (contextlib.nullcontext(), recompute()), **kwargs)


@contextlib.contextmanager
def gradient_checkpointing(unet: nn.Module, motion_model: nn.Module, recompute):
    """Within this block, each ResBlock and SpatialTransformer of ``unet`` and each motion module of
    ``motion_model`` keeps only its inputs for backward and recomputes the rest (under ``recompute()``, which
    re-enters per-call state such as v1's norms)."""
    layers = [m for m in unet.modules() if isinstance(m, (ResBlock, SpatialTransformer))]
    layers += [m for m in motion_model.modules() if isinstance(m, MotionModule)]
    with wrapped_forwards(layers, lambda forward: functools.partial(_checkpointed, forward, recompute)):
        yield


class _PositiveGuider(comfy.samplers.CFGGuider):
    """The positive conditioning only, cfg 1: one model call per clip."""

    def set_conds(self, positive) -> None:
        self.inner_set_conds({"positive": positive})


class _TrainLoop(comfy.samplers.Sampler):
    """A Sampler whose ``sample`` trains ``factors`` on ``clips`` (clips, frames, c, h, w, as the LATENT holds them);
    core's sampler is given the first clip (core 0.8's TrainSampler pattern)."""

    def __init__(self, factors: LoRAFactors, settings: TrainSettings, losses: list, clips: Tensor):
        self.factors, self.settings, self.losses, self.clips = factors, settings, losses, clips

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        base = model_wrap.inner_model
        attachment = current_attachment(extra_args["model_options"])
        frames = latent_image.shape[0]
        # core has put the first clip (latent_image) through process_latent_in and onto the device: the rest follow
        clips = base.process_latent_in(self.clips.to(latent_image).flatten(0, 1)).view_as(self.clips)
        recompute = functools.partial(_recompute_context, base.diffusion_model, attachment, frames)
        with contextlib.ExitStack() as stack:
            stack.enter_context(ordinary_weights(base.diffusion_model, attachment.motion_model))
            if self.settings.gradient_checkpointing:
                stack.enter_context(gradient_checkpointing(base.diffusion_model, attachment.motion_model,
                                                                recompute))
            try:
                self._loop(model_wrap, base.model_sampling, extra_args, clips)
            finally:
                self.factors.sign = 1.0  # what the saved file holds
        return torch.zeros_like(latent_image)

    def _loop(self, model_wrap, model_sampling, extra_args, clips: Tensor) -> None:
        """``steps`` optimizer steps of ``noise_levels`` losses each (one clip at one noise level per loss, every
        clip once per shuffled round; with ``learn_reverse`` every second loss applies the factors at −1 to the
        clip played backwards), seeded, with progress bar and interrupt."""
        s = self.settings
        g = torch.Generator().manual_seed(s.seed)
        x0 = clips[0]
        order = iter(enumerate(clip_order(clips.shape[0], s.steps * s.noise_levels, g)))
        self.factors.to(x0.device)
        optimizer = make_optimizer(self.factors, s.learning_rate)
        dtype = model_wrap.inner_model.get_dtype()
        autocast = x0.device.type != "cpu" and dtype in AUTOCAST_DTYPES
        scaler = torch.amp.GradScaler(x0.device.type, enabled=autocast and dtype == torch.float16)
        pbar = comfy.utils.ProgressBar(s.steps)
        for _ in range(s.steps):
            mm.throw_exception_if_processing_interrupted()
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(s.noise_levels):
                draw, index = next(order)
                reverse = s.learn_reverse and draw % 2 == 1
                self.factors.sign = -1.0 if reverse else 1.0
                clip = clips[index].flip(0) if reverse else clips[index]
                loss = self._clip_loss(model_wrap, model_sampling, extra_args, clip, g, autocast, dtype)
                scaler.scale(loss / s.noise_levels).backward()
                total += float(loss.detach()) / s.noise_levels
            scaler.step(optimizer)
            scaler.update()
            self.losses.append(total)
            pbar.update(1)

    def _clip_loss(self, model_wrap, model_sampling, extra_args, x0, g, autocast: bool, dtype) -> Tensor:
        """The denoising loss of the whole clip at one random noise level (the same for every frame)."""
        level = (int(torch.randint(0, 1000, (1,), generator=g)) + 0.5) / 1000.0
        sigma = torch.full((x0.shape[0],), float(model_sampling.percent_to_sigma(level)), device=x0.device)
        noise = torch.randn(x0.shape, generator=g).to(x0)
        xt = model_sampling.noise_scaling(sigma, noise, x0, False)
        with torch.autocast(x0.device.type, dtype=dtype, enabled=autocast):
            denoised = model_wrap(xt, sigma, **extra_args)
        return frame_weighted_mse(denoised, x0, loss_weight(model_sampling, sigma))


def _recompute_context(unet, attachment, frames: int):
    """What a checkpointed layer's recomputation must re-enter: v1's across-frames norms."""
    if attachment is not None and attachment.across_frames_norm:
        return across_frames(unet, frames)
    return contextlib.nullcontext()


def lora_path(prefix: str) -> tuple[str, str]:
    """A new ``<prefix>_00001_.safetensors`` in models/animatediff_motion_lora: (full path, name as listed)."""
    root = folder_paths.get_folder_paths(LORA_FOLDER)[0]
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, root)
    os.makedirs(folder, exist_ok=True)
    name = f"{filename}_{counter:05}_.safetensors"
    return os.path.join(folder, name), os.path.join(subfolder, name) if subfolder else name


def train_factors(model, motion: LoadedMotionModule, positive, x0: Tensor, settings: TrainSettings) -> tuple:
    """Train LoRA factors on the clip(s) ``x0`` (latents, frames first, ``settings.clip_frames`` per clip); returns
    (factors, loss per step)."""
    with torch.inference_mode(False), torch.enable_grad():
        factors = LoRAFactors(attention_targets(motion.spec), settings.rank,
                              torch.Generator().manual_seed(settings.seed))
        patcher = motion.patcher.clone()
        for i, key in enumerate(factors.keys):
            patcher.add_weight_wrapper(key, AddDelta(factors, i))
        training = LoadedMotionModule(patcher, motion.spec, motion.name, motion.channels, motion.loras)
        animated = attach(model, training, beta_schedule=settings.beta_schedule)
        guider = _PositiveGuider(animated)
        guider.set_conds(positive)
        losses: list = []
        clips = split_clips(x0, settings.clip_frames).clone()
        guider.sample(torch.zeros_like(clips[0]), clips[0].clone(), _TrainLoop(factors, settings, losses, clips),
                      torch.ones(2), disable_pbar=True, seed=settings.seed)
        factors.requires_grad_(False)
    return factors, losses


def train_motion_lora(model, motion: LoadedMotionModule, positive, x0: Tensor, settings: TrainSettings,
                      prefix: str = "kinema_motion_lora") -> TrainResult:
    """Check, train, save in the official layout and apply the saved file to ``motion`` at strength 1."""
    s = settings
    if x0.ndim != 4:
        raise TrainingInputError(f"Train MotionLoRA: the latent must be (frames, channels, height, width), but "
                                 f"got shape {tuple(x0.shape)}.")
    check_training_inputs(split_clips(x0, s.clip_frames).shape[1], motion.spec.pe_length, s.rank, s.steps,
                          s.learning_rate, s.noise_levels, motion.name)
    factors, losses = train_factors(model, motion, positive, x0, s)
    path, name = lora_path(prefix)
    save_file(factors.official_state_dict(), path, metadata={"kinema_steps": str(s.steps), "rank": str(s.rank)})
    log.info("Train MotionLoRA: %d steps, loss %.4g -> %.4g, saved %s", s.steps, losses[0], losses[-1], path)
    return TrainResult(apply_motion_lora(motion, path, name, 1.0), losses, name, path, factors)
