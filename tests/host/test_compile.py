"""The Load Motion Module ``compile`` option: torch.compile'd motion modules animate as the eager ones do, see
MotionLoRA weight patches, and a compiler failure falls back to eager with one logged line."""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import tiny_sd15_patcher  # noqa: E402
from test_attach import sample, tiny_motion  # noqa: E402

TOL = 1e-4  # of the output's std: inductor reorders float sums (the random tiny UNet's latents are O(100))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    diff = (a - b).abs().max().item() / b.std().item()
    assert diff <= TOL, f"max |compiled - eager| / std = {diff:.1e}"


def _attach():
    return import_module("kinema.comfy_glue.attach")


def _compiled_modules(model) -> list:
    embed = model.model_options["transformer_options"]["patches"]["forward_timestep_embed_patch"]
    return [m for _, h in embed if isinstance(h, _attach().Attachment) for m in h._compiled.values()]


def _with_delta(motion, seed: int = 1):
    """The module on a patcher clone carrying a diff patch on every attention projection (what a MotionLoRA is)."""
    patcher = motion.patcher.clone()
    g = torch.Generator().manual_seed(seed)
    patches = {k: (0.05 * torch.randn(v.shape, generator=g),)
               for k, v in patcher.model.state_dict().items() if ".to_q." in k or ".to_v." in k}
    assert patcher.add_patches(patches, 1.0)
    return replace(motion, patcher=patcher)


def test_compiled_motion_module_matches_eager_and_sees_weight_patches(comfy_host):
    """Compiled == eager (≤1e-4 of the std) with and without weight patches, and the patches change the output: the compiled
    graph reads the patcher's current weights, it did not bake in the first ones."""
    from torch._dynamo.utils import counters

    attach = _attach().attach
    base, motion = tiny_sd15_patcher(seed=0), tiny_motion("v2", seed=3)
    eager = sample(attach(base, motion))
    graphs = counters["stats"]["unique_graphs"]
    compiled_model = attach(base, replace(motion, compile=True))
    compiled = sample(compiled_model)
    assert counters["stats"]["unique_graphs"] > graphs, "nothing was compiled"
    assert _compiled_modules(compiled_model) and all(m.compiled is not None for m in _compiled_modules(compiled_model))
    _close(compiled, eager)

    patched = _with_delta(motion)
    eager_patched = sample(attach(base, patched))
    compiled_patched = sample(attach(base, replace(patched, compile=True)))
    assert (eager_patched - eager).abs().max() > 0.1 * eager.std()
    _close(compiled_patched, eager_patched)


def test_compiler_failure_runs_eager_and_says_why(comfy_host, monkeypatch, caplog):
    """A compiler that fails (no C++ toolchain on a user's machine) leaves the animation exactly eager's."""
    from torch._dynamo.exc import InternalTorchDynamoError

    def failing(module):
        def run(*args):
            raise InternalTorchDynamoError("no working C++ compiler found")
        return run

    attach = _attach().attach
    base, motion = tiny_sd15_patcher(seed=0), tiny_motion("v2", seed=3)
    eager = sample(attach(base, motion))
    monkeypatch.setattr(torch, "compile", failing)
    with caplog.at_level(logging.WARNING):
        fallback = sample(attach(base, replace(motion, compile=True)))
    torch.testing.assert_close(fallback, eager, atol=0, rtol=0)
    lines = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert lines and "no working C++ compiler found" in lines[0] and "running it uncompiled" in lines[0]



@pytest.mark.parametrize("backend", [
    "eager",  # dynamo traces the UNet and our patch under the node's own options, without inductor's C++ codegen
    pytest.param("inductor", marks=pytest.mark.fullsize),  # what the node uses: ~4-10 min of codegen on 2 cores
])
def test_v1_under_core_torch_compile_model_matches_eager(comfy_host, monkeypatch, backend):
    """Core's TorchCompileModel node on a UNet carrying a v1 module: its across-frames GroupNorms still run (the
    result differs from per-frame norms), the frames equal eager's within fp32 tolerance, and the norms are
    left as they were."""
    import dataclasses

    nodes_torch_compile = import_module("comfy_extras.nodes_torch_compile")
    attach = _attach().attach
    v1 = tiny_motion("v1", seed=3)
    per_frame = replace(v1, spec=dataclasses.replace(v1.spec, groupnorm="per_frame"))
    eager = sample(attach(tiny_sd15_patcher(seed=0), v1), steps=1)
    assert (sample(attach(tiny_sd15_patcher(seed=0), per_frame), steps=1) - eager).abs().max() > 1e-3 * eager.std()
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model=None, **kw: real_compile(model, **{**kw, "backend": backend}))
    base = tiny_sd15_patcher(seed=0)
    compiled_base = nodes_torch_compile.TorchCompileModel.execute(base, "inductor").args[0]
    _close(sample(attach(compiled_base, v1), steps=1), eager)
    assert not any("forward" in m.__dict__ for m in base.model.diffusion_model.modules())
