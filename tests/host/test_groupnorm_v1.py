"""AnimateDiff v1's across-frames GroupNorm patch: it wraps whatever ``forward`` each norm has and puts exactly
that back, and finds ``transformer_options`` however the UNet forward received it."""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import tiny_sd15_patcher  # noqa: E402
from test_attach import sample, tiny_motion  # noqa: E402

OWN = "model's own"


def _attach():
    return import_module("kinema.comfy_glue.attach").attach


def test_v1_norm_patch_wraps_an_existing_forward_and_puts_it_back(comfy_host):
    """Another patch's instance-level ``forward`` on a norm runs inside ours (it sees whole clips, 2 = cond + uncond)
    and is that norm's ``forward`` again afterwards; the frames equal a run without it."""
    motion = tiny_motion("v1")
    reference = sample(_attach()(tiny_sd15_patcher(seed=0), motion, beta_schedule=OWN))
    base = tiny_sd15_patcher(seed=0)
    norm = base.model.diffusion_model.out[0]
    seen, own = [], torch.nn.GroupNorm.forward.__get__(norm)

    def other_pack(x):
        seen.append(x.shape[0])
        return own(x)

    norm.forward = other_pack
    out = sample(_attach()(base, motion, beta_schedule=OWN))
    assert norm.__dict__.get("forward") is other_pack
    assert seen and set(seen) == {2}, f"batch sizes the other patch saw: {sorted(set(seen))}"
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    assert "forward" not in base.model.diffusion_model.input_blocks[1][0].in_layers[0].__dict__


def test_v1_norm_patch_reads_transformer_options_passed_by_keyword(comfy_host):
    """A DIFFUSION_MODEL wrapper ahead of ours that passes every argument by keyword changes nothing."""
    import comfy.patcher_extension as pe

    def by_keyword(executor, x, timesteps=None, context=None, y=None, control=None, transformer_options=None, **kw):
        return executor(x, timesteps=timesteps, context=context, y=y, control=control,
                        transformer_options=transformer_options, **kw)

    motion = tiny_motion("v1")
    reference = sample(_attach()(tiny_sd15_patcher(seed=0), motion, beta_schedule=OWN))
    base = tiny_sd15_patcher(seed=0)
    base.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "other_pack", by_keyword)
    torch.testing.assert_close(sample(_attach()(base, motion, beta_schedule=OWN)), reference, rtol=0, atol=0)
