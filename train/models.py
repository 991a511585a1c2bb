"""The Moving-MNIST experiment's two models on ComfyUI: a tiny SD1.5-shaped UNet trained on single frames and
then frozen, and a motion module in the official v2 layout trained on clips through the pack's own attach path
(AnimateDiff stage 2, Guo et al. 2023, arXiv 2307.04725, §4.2). Both use the DDPM epsilon objective (Ho et al.
2020) over AnimateDiff's linear betas, the schedule the motion module declares, so attaching changes nothing.

The "latent" is trivial: a 1×H×W frame in [-1, 1] folded into 4×(H/2)×(W/2) by pixel unshuffle.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable

import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sample
import comfy.supported_models
import comfy.utils
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ..comfy_glue.attach import attach
from ..comfy_glue.loading import LoadedMotionModule
from ..comfy_glue.sample import sample_animation
from ..motion_modules.model import MotionModel, MotionModule
from ..motion_modules.spec import standard_spec

log = logging.getLogger(__name__)

CONTEXT_DIM = 32  # the UNet's cross-attention width; it only ever sees one all-zero token (unconditional)
CHANNEL_MULT = (1, 1, 2, 2)
SCHEDULE = {"beta_schedule": "sqrt_linear", "linear_start": 0.00085, "linear_end": 0.012}  # v2's linear betas
LATENT_SCALE = 0.18215  # SD1.5's latent_format: ComfyUI's sampler returns x0 divided by it
SAMPLER, SCHEDULER = "euler", "normal"
CPU = torch.device("cpu")


def unet_config(width: int) -> dict:
    """An SD1.5 UNet config (ComfyUI naming) at ``width`` channels, self/cross attention at the two middle
    levels only (output blocks pop ``transformer_depth_output`` from the end, deepest level first)."""
    return {
        "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": width,
        "num_res_blocks": [2, 2, 2, 2], "channel_mult": list(CHANNEL_MULT), "use_spatial_transformer": True,
        "transformer_depth": [0, 0, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
        "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0], "legacy": False, "num_classes": None,
        "adm_in_channels": None, "use_linear_in_transformer": False, "context_dim": CONTEXT_DIM, "num_heads": 8,
        "num_head_channels": -1, "use_temporal_resblock": False, "use_temporal_attention": False,
    }


def to_latent(images: torch.Tensor) -> torch.Tensor:
    """Frames to the trivial latent: (n, 1, H, W) -> (n, 4, H/2, W/2)."""
    return F.pixel_unshuffle(images, 2)


def to_images(latents: torch.Tensor) -> torch.Tensor:
    """The trivial latent back to frames: (n, 4, h, w) -> (n, 1, 2h, 2w)."""
    return F.pixel_shuffle(latents, 2)


def _init_weights(unet: nn.Module, seed: int) -> None:
    """Torch's default init (core's ops skip it), norms at (1, 0), and the last layer of every residual branch
    and the output zeroed, as in Ho et al.'s UNet."""
    torch.manual_seed(seed)
    for m in unet.modules():
        if isinstance(m, nn.Linear):
            nn.Linear.reset_parameters(m)
        elif isinstance(m, nn.Conv2d):
            nn.Conv2d.reset_parameters(m)
        elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    zeroed = [unet.out[-1]]
    for m in unet.modules():
        if type(m).__name__ == "ResBlock":
            zeroed.append(m.out_layers[-1])
        elif type(m).__name__ == "SpatialTransformer":
            zeroed.append(m.proj_out)
    for m in zeroed:
        nn.init.zeros_(m.weight)
        nn.init.zeros_(m.bias)


def image_model(width: int = 32, seed: int = 0, device: torch.device = CPU) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher around a fresh tiny SD1.5 BaseModel (v prediction, linear betas) on ``device``."""
    config = comfy.supported_models.SD15(unet_config(width))
    config.sampling_settings = dict(SCHEDULE)
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.BaseModel(config, comfy.model_base.ModelType.V_PREDICTION, device="cpu")
    _init_weights(model.diffusion_model, seed)
    model.to(device)
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=CPU)


def alphas_cumprod(patcher) -> torch.Tensor:
    """ᾱ_t of the model's discrete schedule (ComfyUI keeps σ_t = √((1-ᾱ_t)/ᾱ_t))."""
    sigmas = patcher.get_model_object("model_sampling").sigmas.float()
    return 1.0 / (1.0 + sigmas**2)


def ddpm_loss(unet, x0: torch.Tensor, abar: torch.Tensor, gen: torch.Generator, frames: int = 1,
              transformer_options: dict | None = None, timestep: int | None = None) -> torch.Tensor:
    """‖v - v_θ(√ᾱ_t x0 + √(1-ᾱ_t) ε, t)‖², v = √ᾱ_t ε - √(1-ᾱ_t) x0: one t per clip of ``frames`` frames,
    fresh noise per frame."""
    clips = x0.shape[0] // frames
    t = torch.randint(0, abar.shape[0], (clips,), generator=gen).repeat_interleave(frames)
    t = t if timestep is None else torch.full_like(t, timestep)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    a = abar.to(x0.device)[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    context = torch.zeros(x0.shape[0], 1, CONTEXT_DIM, device=x0.device)
    v = unet(xt, t.float().to(x0.device), context=context, transformer_options=transformer_options or {})
    return F.mse_loss(v, a.sqrt() * noise - (1 - a).sqrt() * x0)


def _optimise(params: list, steps: int, lr: float, loss_fn: Callable[[int], torch.Tensor],
              on_step: Callable[[int], None] | None = None, label: str = "") -> list[float]:
    """AdamW with a short linear warm-up and cosine decay, gradient norm clipped at 1; the loss per step."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, min(100, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    losses, start = [], time.time()
    for step in range(steps):
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step)
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            recent = losses[-max(1, steps // 10):]
            log.info("%s step %d/%d loss %.4f (%.0f s)", label, step + 1, steps, sum(recent) / len(recent),
                     time.time() - start)
    return losses


def train_image_model(patcher, frames_fn: Callable[[int], torch.Tensor], steps: int, lr: float, seed: int,
                      ema_decay: float = 0.995) -> list[float]:
    """Train the UNet on single frames (``frames_fn(step)`` -> a batch), keep its EMA weights, then freeze it."""
    unet = patcher.model.diffusion_model
    unet.train().requires_grad_(True)
    abar, gen = alphas_cumprod(patcher), torch.Generator().manual_seed(seed)
    device = next(unet.parameters()).device
    ema = copy.deepcopy(unet.state_dict())

    def update_ema(step: int) -> None:
        decay = min(ema_decay, (1 + step) / (10 + step))
        for key, value in unet.state_dict().items():
            ema[key].lerp_(value, 1 - decay) if value.is_floating_point() else ema[key].copy_(value)

    losses = _optimise(list(unet.parameters()), steps, lr,
                       lambda s: ddpm_loss(unet, to_latent(frames_fn(s)).to(device), abar, gen),
                       update_ema, "image model")
    unet.load_state_dict(ema)
    unet.eval().requires_grad_(False)
    return losses


def motion_spec(width: int):
    """The official v2 layout (2 modules per down level, 3 per up level, a mid module, PE 32) at our widths."""
    return standard_spec("v2", widths=tuple(width * m for m in CHANNEL_MULT))


def new_motion_module(spec, seed: int, device: torch.device = CPU) -> LoadedMotionModule:
    """A trainable MotionModel (plain torch layers) with zeroed output projections, as AnimateDiff starts,
    wrapped as the MOTION_MODULE value the pack's nodes pass around."""
    torch.manual_seed(seed)
    model = MotionModel(spec, operations=nn).to(device)
    for m in model.modules():
        if isinstance(m, MotionModule):
            nn.init.zeros_(m.temporal_transformer.proj_out.weight)
            nn.init.zeros_(m.temporal_transformer.proj_out.bias)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=CPU)
    channels = {n: model.get_submodule(n).temporal_transformer.proj_in.in_features for n in model.module_names()}
    return LoadedMotionModule(patcher, spec, "moving_mnist_training", channels)


def train_motion_module(patcher, motion: LoadedMotionModule, clips_fn: Callable[[int], torch.Tensor],
                        frames: int, steps: int, lr: float, seed: int) -> list[float]:
    """Stage 2: train only the motion module on clips (``clips_fn(step)`` -> (clips·frames, 1, H, W)), the
    image model frozen, with the module seated by ``attach`` exactly as sampling seats it."""
    unet = patcher.model.diffusion_model
    unet.eval().requires_grad_(False)
    model = motion.patcher.model
    model.train().requires_grad_(True)
    animated = attach(patcher, motion)
    abar, gen = alphas_cumprod(animated), torch.Generator().manual_seed(seed)
    device = next(unet.parameters()).device
    options = animated.model_options["transformer_options"]

    def loss(step: int) -> torch.Tensor:
        x0 = to_latent(clips_fn(step)).to(device)
        opts = dict(options, cond_or_uncond=[0] * (x0.shape[0] // frames))  # one clip per entry
        return ddpm_loss(unet, x0, abar, gen, frames, opts)

    animated.inject_model()
    try:
        losses = _optimise([p for p in model.parameters() if p.requires_grad], steps, lr, loss,
                           label="motion module")
    finally:
        animated.eject_model()
    model.eval().requires_grad_(False)
    return losses


def held_out_loss(patcher, motion: LoadedMotionModule | None, x0_clips: torch.Tensor, frames: int,
                  timesteps: tuple[int, ...], seed: int) -> list[float]:
    """The v-loss per timestep on fixed clips with fixed noise, through the module (or the image model alone)."""
    unet = patcher.model.diffusion_model
    animated = patcher if motion is None else attach(patcher, motion)
    abar, x0 = alphas_cumprod(animated), to_latent(x0_clips).to(next(unet.parameters()).device)
    options = {} if motion is None else dict(animated.model_options["transformer_options"],
                                             cond_or_uncond=[0] * (x0.shape[0] // frames))
    # loaded as the sampler loads it: weight patches (a MotionLoRA) applied, the motion module seated or, for the
    # image model alone, a clone loaded earlier with one unseated
    comfy.model_management.load_models_gpu([animated, *animated.get_nested_additional_models()])
    with torch.no_grad():
        return [float(ddpm_loss(unet, x0, abar, torch.Generator().manual_seed(seed + t), frames, options, t))
                for t in timesteps]


def save_motion_module(motion: LoadedMotionModule, path: str) -> None:
    """Write the module's weights under the official v2 keys (position tables included) as safetensors."""
    state = {k: v.detach().to(CPU).contiguous() for k, v in motion.patcher.model.state_dict().items()}
    save_file(state, path, metadata={"trained_by": "kinema scripts/moving_mnist_experiment.py"})


def sample_clip(patcher, motion: LoadedMotionModule | None, seed: int, frames: int, size: int,
                steps: int) -> torch.Tensor:
    """A clip of ``frames`` frames from ComfyUI's sampler, (frames, 1, size, size) in [-1, 1]: the frames
    drawn independently by the image model alone, or jointly through Sample Animation's path with ``motion``."""
    latent = torch.zeros(frames, 4, size // 2, size // 2)
    positive = [[torch.zeros(1, 1, CONTEXT_DIM), {}]]
    if motion is None:
        noise = comfy.sample.prepare_noise(latent, seed)
        out = comfy.sample.sample(patcher, noise, steps, 1.0, SAMPLER, SCHEDULER, positive, positive, latent,
                                  seed=seed, disable_pbar=True)
    else:
        out = sample_animation(patcher, motion, positive, positive, {"samples": latent}, seed, steps, 1.0,
                               SAMPLER, SCHEDULER)["samples"]
    return to_images(out.float().cpu() * LATENT_SCALE).clamp(-1, 1)
