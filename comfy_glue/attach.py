"""Attach a motion module to a clone of a ComfyUI model, through ModelPatcher mechanisms only.

Everything lives under one key (``KEY``) on the clone: an injection that seats parameterless
``MotionSlot`` layers in the UNet while this clone is loaded, a ``forward_timestep_embed_patch`` that runs
the motion module when a slot is reached, the motion module as an additional model (so ComfyUI loads and
offloads it with the UNet), a DIFFUSION_MODEL wrapper for AnimateDiff v1's across-frames GroupNorms, an
OUTER_SAMPLE wrapper for frame-count checks, and a ``model_sampling`` object patch for the noise schedule;
with context options, a SAMPLER_SAMPLE wrapper for FreeNoise (``with_freenoise``) and views (``with_views``).
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass, field, replace

import comfy.patcher_extension as pe
import torch
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
from torch import Tensor, nn

from ..motion_modules.model import MotionCall, View, group_norm_across_frames
from ..sampling.context import ContextOptions, fuse_weights, windows
from ..sampling.frames import check_frame_count
from ..sampling.freenoise import freenoise
from .attention import motion_attention
from .freeinit import KEY as FREEINIT_KEY
from .lora import motion_step
from .per_frame import check_controls, prepare_controls
from .schedule import BetaSchedule, motion_model_sampling
from .unet import Placement, check_fits

KEY = "kinema_motion"
log = logging.getLogger(__name__)


class MotionSlot(nn.Module):
    """A seat for one motion module inside a TimestepEmbedSequential; identity unless patched."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return x


def clip_frames(x: Tensor, transformer_options: dict) -> int:
    """Frames per clip: the batch holds one clip per cond/uncond entry."""
    clips = max(len(transformer_options.get("cond_or_uncond", [])), 1)
    if x.shape[0] % clips:
        raise ValueError(f"a batch of {x.shape[0]} frames does not split into {clips} clips of equal length")
    return x.shape[0] // clips


@dataclass(frozen=True)
class Attachment:
    """What a clone carries: the motion model (shared weights), its seats and per-run settings."""

    motion_model: nn.Module = field(compare=False)
    spec: object
    seats: tuple[Placement, ...]
    scale: float = 1.0
    across_frames_norm: bool = False
    views: ContextOptions | None = None  # window only the motion module (UNet sees every frame)
    compile: bool = False  # run each motion module through torch.compile
    name: str = ""  # the motion-module file, for messages
    _compiled: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __deepcopy__(self, memo):
        return self  # model_options are deep-copied on clone; the weights must stay shared

    def _module(self, name: str):
        """The motion module seated as ``name``, compiled on first use when asked (shared across clones)."""
        if not self.compile:
            return self.motion_model.get_submodule(name)
        if name not in self._compiled:
            self._compiled[name] = _Compiled(self.motion_model.get_submodule(name), name)
        return self._compiled[name]

    def __call__(self, layer, x, emb, context, transformer_options, *args, **kwargs):
        """forward_timestep_embed_patch handler: run the motion module seated at ``layer``."""
        if not isinstance(layer, MotionSlot):
            return layer(x)
        frames = clip_frames(x, transformer_options)
        views = self._views(frames, _step(transformer_options), x.device)
        attention_fn = motion_attention(transformer_options)  # backend decided per call (attention.py)
        return self._module(layer.name)(x, MotionCall(frames, attention_fn=attention_fn, scale=self.scale,
                                                      views=views))

    def _views(self, frames: int, step: int, device: torch.device) -> tuple[View, ...] | None:
        """The motion-module-only windows of a clip of ``frames`` at ``step``, with their fuse weights."""
        if self.views is None or frames <= self.views.length:
            return None
        return tuple(View(torch.tensor(w, device=device),
                          fuse_weights(self.views.fuse, w, frames, self.views.overlap).to(device))
                     for w in windows(frames, self.views, step))


class _Compiled:
    """``torch.compile`` of one motion module; if the compiler itself fails (no C++ toolchain, an unsupported
    op), that module runs eagerly from then on and the reason is logged once, instead of the prompt failing."""

    def __init__(self, module: nn.Module, name: str):
        self.module, self.name = module, name
        self.compiled = torch.compile(module)

    def __call__(self, x: Tensor, call: MotionCall) -> Tensor:
        if self.compiled is None:
            return self.module(x, call)
        try:
            return self.compiled(x, call)
        except Exception as error:  # noqa: BLE001 - only the compiler's own failures are swallowed
            if not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            log.warning("Kinema: torch.compile failed for motion module %s, running it uncompiled: %s",
                        self.name, str(error).splitlines()[0] if str(error) else type(error).__name__)
            self.compiled = None
            return self.module(x, call)


def _step(transformer_options: dict) -> int:
    """Index of the current sigma in the run's sigmas (0 when unknown)."""
    sample_sigmas, sigmas = transformer_options.get("sample_sigmas"), transformer_options.get("sigmas")
    if sample_sigmas is None or sigmas is None:
        return 0
    return int(torch.argmin((sample_sigmas.to(sigmas) - sigmas[0]).abs()))


def _blocks(unet, seat: Placement):
    blocks = getattr(unet, seat.blocks)
    return blocks if seat.index is None else blocks[seat.index]


def remove_slots(unet) -> None:
    """Take every MotionSlot out of the UNet (idempotent)."""
    for seq in [*unet.input_blocks, unet.middle_block, *unet.output_blocks]:
        if seq is None:
            continue
        for i in reversed(range(len(seq))):
            if isinstance(seq[i], MotionSlot):
                del seq[i]


def _injection(attachment: Attachment) -> pe.PatcherInjection:
    def inject(patcher):
        unet = patcher.model.diffusion_model
        remove_slots(unet)
        for seat in attachment.seats:
            _blocks(unet, seat).insert(seat.position, MotionSlot(seat.name))

    def eject(patcher):
        remove_slots(patcher.model.diffusion_model)

    return pe.PatcherInjection(inject=inject, eject=eject)


def _norms_across_frames(unet) -> list[nn.Module]:
    """The GroupNorms AnimateDiff v1 runs over whole clips: ResNet norms and the output norm."""
    norms = [unet.out[0]]
    for m in unet.modules():
        if isinstance(m, ResBlock):
            norms += [m.in_layers[0], m.out_layers[0]]
    return norms


@contextlib.contextmanager
def across_frames(unet, frames: int):
    """Within this model's forward only, run v1's ResNet/output GroupNorms across each clip's frames.

    Each norm's current ``forward`` (its class's, or another patch's instance attribute) is the one wrapped, and
    exactly that state is put back afterwards.
    """
    norms = _norms_across_frames(unet)
    with wrapped_forwards(norms, lambda forward: functools.partial(group_norm_across_frames, frames=frames,
                                                                   norm=forward)):
        yield


@contextlib.contextmanager
def wrapped_forwards(modules: list[nn.Module], wrap):
    """Within this block each module's ``forward`` is ``wrap(its current forward)`` (its class's, or another patch's
    instance attribute); exactly the previous state is put back afterwards."""
    saved = [m.__dict__.get("forward", _CLASS_FORWARD) for m in modules]
    for m in modules:
        m.forward = wrap(m.forward)
    try:
        yield
    finally:
        for m, own in zip(modules, saved, strict=True):
            if own is _CLASS_FORWARD:
                m.__dict__.pop("forward", None)
            else:
                m.forward = own


_CLASS_FORWARD = object()  # marks a module whose forward came from its class (no instance attribute to restore)


def transformer_options_of(args: tuple, kwargs: dict) -> dict:
    """The ``transformer_options`` of a UNet forward call, passed by keyword or at its position in core's
    ``UNetModel._forward(x, timesteps, context, y, control, transformer_options)`` (``args`` start after x)."""
    if "transformer_options" in kwargs:
        return kwargs["transformer_options"] or {}
    return (args[_OPTIONS_INDEX] or {}) if len(args) > _OPTIONS_INDEX else {}


_OPTIONS_INDEX = 4  # timesteps, context, y, control, transformer_options


def _diffusion_model_wrapper(attachment: Attachment):
    def wrapper(executor, x, *args, **kwargs):
        options = transformer_options_of(args, kwargs)
        with across_frames(executor.class_obj, clip_frames(x, options)):
            return executor(x, *args, **kwargs)
    return wrapper


def _apply_model_wrapper(executor, x, t, *args, **kwargs):
    """Tell step-windowed MotionLoRAs which sigma this model call is at (reset when the call ends)."""
    with motion_step(t, executor.class_obj.model_sampling):
        return executor(x, t, *args, **kwargs)


def current_attachment(model_options: dict) -> Attachment | None:
    """The Attachment a model's options carry (after any replacement, e.g. by ``with_views``)."""
    patches = model_options.get("transformer_options", {}).get("patches", {})
    found = [h for _, h in patches.get("forward_timestep_embed_patch", []) if isinstance(h, Attachment)]
    return found[-1] if found else None


def _outer_sample_wrapper(executor, *args, **kwargs):
    """Check the frame count against the module, and per-frame control hints against it, before sampling."""
    noise = args[0] if args else kwargs["noise"]
    options = executor.class_obj.model_options
    attachment = current_attachment(options)
    if attachment is not None:
        has_context = options.get("context_handler") is not None or attachment.views is not None
        check_frame_count(noise.shape[0], attachment.spec.pe_length, has_context, attachment.name)
        prepare_controls(getattr(executor.class_obj, "conds", {}), noise.shape)
        check_controls(getattr(executor.class_obj, "conds", {}), noise.shape[0])
    return executor(*args, **kwargs)


def _drop_previous(model) -> None:
    """Forget an attachment this clone inherited, so attaching twice replaces instead of stacking."""
    model.remove_injections(KEY)
    for kind in (pe.WrappersMP.DIFFUSION_MODEL, pe.WrappersMP.OUTER_SAMPLE, pe.WrappersMP.APPLY_MODEL,
                 pe.WrappersMP.SAMPLER_SAMPLE):
        model.remove_wrappers_with_key(kind, KEY)
    model.remove_wrappers_with_key(pe.WrappersMP.SAMPLER_SAMPLE, FREEINIT_KEY)
    for kind in (pe.CallbacksMP.ON_PRE_RUN, pe.CallbacksMP.ON_CLEANUP):
        model.remove_callbacks_with_key(kind, KEY)
    patches = model.model_options.get("transformer_options", {}).get("patches", {})
    embed = patches.get("forward_timestep_embed_patch", [])
    embed[:] = [p for p in embed if not isinstance(p[1], Attachment)]


def attach(model, motion, scale: float = 1.0, beta_schedule: str = BetaSchedule.AUTO.value):
    """A clone of ``model`` that animates with ``motion`` (a LoadedMotionModule); ``model`` is untouched."""
    seats = check_fits(model, motion.spec, motion.channels, motion.name)
    m = model.clone()
    _drop_previous(m)
    attachment = Attachment(motion.patcher.model, motion.spec, tuple(seats), scale,
                            motion.spec.groupnorm == "across_frames", compile=motion.compile,
                            name=motion.name)
    m.set_injections(KEY, [_injection(attachment)])
    m.set_additional_models(KEY, [motion.patcher.clone()])
    m.set_model_forward_timestep_embed_patch((MotionSlot, attachment))
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, KEY, _outer_sample_wrapper)
    m.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, KEY, _apply_model_wrapper)
    if attachment.across_frames_norm:
        m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, KEY, _diffusion_model_wrapper(attachment))
    # Seat the slots for every run and take them out afterwards, so the shared UNet is pristine between
    # prompts and a model that stays loaded is still animated on its next run.
    m.add_callback_with_key(pe.CallbacksMP.ON_PRE_RUN, KEY, lambda p: p.inject_model())
    m.add_callback_with_key(pe.CallbacksMP.ON_CLEANUP, KEY, lambda p: p.eject_model())
    sampling = motion_model_sampling(m, motion.spec, beta_schedule, f"motion module '{motion.name}'")
    if sampling is not None:
        m.add_object_patch("model_sampling", sampling)
    return m


def with_views(model, options: ContextOptions):
    """``model`` (already attached) with motion-module-only windows instead of whole-UNet windows."""
    embed = model.model_options["transformer_options"]["patches"]["forward_timestep_embed_patch"]
    embed[:] = [(cls, replace(h, views=options) if isinstance(h, Attachment) else h) for cls, h in embed]
    return model


def _freenoise_wrapper(options: ContextOptions):
    def wrapper(executor, *args, **kwargs):
        """SAMPLER_SAMPLE: the initial noise, FreeNoise-shuffled to the windows, seeded with the run's seed."""
        guider, sigmas, extra_args, callback, noise, *rest = args  # as core 0.8's own FreeNoise wrapper
        noise = freenoise(noise, options.length, options.overlap, extra_args.get("seed") or 0)
        return executor(guider, sigmas, extra_args, callback, noise, *rest, **kwargs)
    return wrapper


def with_freenoise(model, options: ContextOptions):
    """``model`` (already attached) with FreeNoise applied to the initial noise of every sampler that runs it."""
    model.remove_wrappers_with_key(pe.WrappersMP.SAMPLER_SAMPLE, KEY)
    model.add_wrapper_with_key(pe.WrappersMP.SAMPLER_SAMPLE, KEY, _freenoise_wrapper(options))
    return model
