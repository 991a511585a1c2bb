"""Where motion modules sit in ComfyUI's UNet, and whether a motion module fits a given model."""
from __future__ import annotations

from dataclasses import dataclass

from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, UNetModel, Upsample

from ..motion_modules.errors import MotionModuleError
from ..motion_modules.spec import FAMILY_NAMES


class ModelMismatchError(MotionModuleError):
    """The motion module does not fit the model it is applied to."""


@dataclass(frozen=True)
class Placement:
    """One motion module's seat: ``getattr(unet, blocks)[index]`` gets a slot at ``position``."""

    name: str  # e.g. "down_blocks.1.motion_modules.0"
    blocks: str  # "input_blocks" | "middle_block" | "output_blocks"
    index: int | None  # block index; None for the middle block
    position: int  # insertion index inside the TimestepEmbedSequential
    channels: int


def _channels(block) -> int:
    """Output channels of the last ResBlock in a block."""
    res = [layer for layer in block if isinstance(layer, ResBlock)]
    return res[-1].out_channels


def _down(unet: UNetModel) -> list[Placement]:
    """After each resnet/attention pair of the down levels, before the skip is stored."""
    out, level, j = [], 0, 0
    for i, block in enumerate(unet.input_blocks):
        if i == 0:
            continue
        if isinstance(block[0], Downsample):
            level, j = level + 1, 0
            continue
        out.append(Placement(f"down_blocks.{level}.motion_modules.{j}", "input_blocks", i, len(block),
                             _channels(block)))
        j += 1
    return out


def _up(unet: UNetModel) -> list[Placement]:
    """After each resnet/attention pair of the up levels, before the upsampler."""
    out, level, j = [], 0, 0
    per_level = [n + 1 for n in reversed(unet.num_res_blocks)]
    for i, block in enumerate(unet.output_blocks):
        ups = [k for k, layer in enumerate(block) if isinstance(layer, Upsample)]
        position = ups[0] if ups else len(block)
        out.append(Placement(f"up_blocks.{level}.motion_modules.{j}", "output_blocks", i, position,
                             _channels(block)))
        j += 1
        if j == per_level[level]:
            level, j = level + 1, 0
    return out


def _mid(unet: UNetModel) -> list[Placement]:
    """Between the mid block's attention and its second resnet (official UNetMidBlock3DCrossAttn)."""
    block = unet.middle_block
    if block is None or len(block) < 3:
        return []
    return [Placement("mid_block.motion_modules.0", "middle_block", None, len(block) - 1, _channels(block))]


def placements(unet: UNetModel, with_mid: bool) -> list[Placement]:
    """Every seat in this UNet, in forward order of the down, mid and up paths."""
    return _down(unet) + (_mid(unet) if with_mid else []) + _up(unet)


CORE_FAMILY_NAMES = {"SD15": FAMILY_NAMES["sd15"], "SDXL": FAMILY_NAMES["sdxl"]}  # core's config class names


def describe_model(model) -> str:
    """A short name for the model family as users write it, e.g. 'SD1.5', 'SDXL' or core's class name."""
    name = type(model.model.model_config).__name__
    return CORE_FAMILY_NAMES.get(name, name)


def level_widths(unet: UNetModel) -> tuple[int, ...]:
    """Channels per down level of the UNet."""
    return tuple(unet.model_channels * m for m in unet.channel_mult)


def check_fits(model, spec, module_channels: dict[str, int], source: str) -> list[Placement]:
    """The placements for ``spec`` on ``model``; one clear sentence if the module does not fit."""
    unet = model.model.diffusion_model
    family = describe_model(model)
    if not isinstance(unet, UNetModel):
        raise ModelMismatchError(
            f"motion module '{source}' needs an SD1.5 or SDXL UNet, but the model is {family} "
            f"({type(unet).__name__}); load an SD1.5 or SDXL checkpoint"
        )
    widths = level_widths(unet)
    seats = placements(unet, spec.has_mid_block)
    fits = widths == tuple(spec.widths) and {p.name: p.channels for p in seats} == module_channels
    if not fits:
        module_family = FAMILY_NAMES.get(spec.family, spec.family.upper())  # both read "an": "an SD1.5", "an SDXL"
        raise ModelMismatchError(
            f"motion module '{source}' is an {module_family} module (levels "
            f"{'/'.join(map(str, spec.widths))}) but the model is {family} (levels "
            f"{'/'.join(map(str, widths))}); use an {module_family} checkpoint or a motion module "
            f"made for {family}"
        )
    return seats
