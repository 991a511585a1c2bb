"""Our motion modules against diffusers' MotionAdapter, both loaded from the same original-layout checkpoint.

diffusers is an independent reference here: its weights come through its own single-file conversion
(``MotionAdapter.from_single_file`` → ``convert_animatediff_checkpoint_to_diffusers``) with a local config,
offline. Two known differences are neutralised in the test only: diffusers GroupNorms the module input across
frames (the official code: per frame), and it recomputes the PE instead of loading ``pos_encoder.pe``.
"""
from __future__ import annotations

import json
import math
import socket
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from motion_modules.model import MotionCall, MotionModel, sinusoid
from motion_modules.spec import expected_shapes, standard_spec

diffusers = pytest.importorskip("diffusers")
single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")

TINY_WIDTHS = (32, 64, 64, 64)
FULL_WIDTHS = (320, 640, 1280, 1280)
VERSIONS = {"v1": (False, 24), "v2": (True, 32), "v3": (False, 32)}  # has_mid_block, pe_length
FRAMES, CLIPS, HEIGHT, WIDTH = 16, 2, 4, 3  # non-square, so an h/w mix-up shows
TOL = 1e-5


def _spec(version: str, widths: tuple[int, ...] = TINY_WIDTHS):
    """The official SD1.5 layout of ``version`` (2 modules per down level, 3 per up level, 8 heads), narrowed."""
    spec = standard_spec(version, widths=widths)
    assert (spec.has_mid_block, spec.pe_length, spec.heads) == (*VERSIONS[version], 8)
    return spec


def _modules(spec) -> list[tuple[str, int]]:
    """(name, channels) of every motion module, named as in the original checkpoints."""
    names = [(f"down_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(spec.widths) for j in range(2)]
    if spec.has_mid_block:
        names.append(("mid_block.motion_modules.0", spec.widths[-1]))
    up = reversed(spec.widths)
    return names + [(f"up_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(up) for j in range(3)]


def _module_shapes(c: int, pe_length: int) -> dict[str, tuple[int, ...]]:
    """Key suffix -> shape for one module of the original AnimateDiff checkpoints."""
    block = "transformer_blocks.0."
    shapes = {"norm.weight": (c,), "norm.bias": (c,), "proj_in.weight": (c, c), "proj_in.bias": (c,)}
    for i in range(2):
        attn = f"{block}attention_blocks.{i}."
        shapes |= {f"{attn}to_{n}.weight": (c, c) for n in "qkv"}
        shapes |= {attn + "to_out.0.weight": (c, c), attn + "to_out.0.bias": (c,)}
        shapes |= {attn + "pos_encoder.pe": (1, pe_length, c)}
        shapes |= {f"{block}norms.{i}.weight": (c,), f"{block}norms.{i}.bias": (c,)}
    shapes |= {block + "ff.net.0.proj.weight": (8 * c, c), block + "ff.net.0.proj.bias": (8 * c,),
               block + "ff.net.2.weight": (c, 4 * c), block + "ff.net.2.bias": (c,),
               block + "ff_norm.weight": (c,), block + "ff_norm.bias": (c,)}
    return shapes | {"proj_out.weight": (c, c), "proj_out.bias": (c,)}


def _random_value(suffix: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Weights ~ N(0, 1/fan_in), biases and norm shifts small, norm scales near 1."""
    noise = torch.randn(shape, generator=generator)
    if "norm" in suffix:
        return (1.0 if suffix.endswith("weight") else 0.0) + 0.2 * noise
    return noise / shape[-1] ** 0.5 if suffix.endswith("weight") else 0.1 * noise


def _original_checkpoint(spec, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the official key names and shapes, PE tables holding the standard sinusoid."""
    generator = torch.Generator().manual_seed(seed)
    sd = {}
    for name, c in _modules(spec):
        for suffix, shape in _module_shapes(c, spec.pe_length).items():
            key = f"{name}.temporal_transformer.{suffix}"
            if suffix.endswith("pe"):
                sd[key] = diffusers.models.embeddings.SinusoidalPositionalEmbedding(c, spec.pe_length).pe.clone()
            else:
                sd[key] = _random_value(suffix, shape, generator)
    return sd


@pytest.fixture
def fullsize_requested(request):
    """Skip unless the run selected full-size checks (``-m fullsize``), whatever the default selection is."""
    if "fullsize" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size check: run with -m fullsize")


@pytest.fixture
def offline(monkeypatch):
    """No hub access: offline flags set, and any socket connection fails loudly."""
    import huggingface_hub.constants

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _ours(spec, sd) -> MotionModel:
    """Our model with the checkpoint loaded strictly."""
    model = MotionModel(spec, operations=nn)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _diffusers(spec, sd, directory):
    """diffusers' MotionAdapter from the checkpoint file via its own single-file conversion and a local config."""
    (directory / "config").mkdir()
    config = {"_class_name": "MotionAdapter", "_diffusers_version": diffusers.__version__,
              "block_out_channels": list(spec.widths), "motion_layers_per_block": 2,
              "motion_mid_block_layers_per_block": 1, "motion_num_attention_heads": spec.heads,
              "motion_norm_num_groups": 32, "motion_max_seq_length": spec.pe_length,
              "use_motion_mid_block": spec.has_mid_block}
    (directory / "config" / "config.json").write_text(json.dumps(config))
    save_file(sd, directory / "motion_module.safetensors")
    adapter = diffusers.MotionAdapter.from_single_file(
        str(directory / "motion_module.safetensors"), config=str(directory / "config"),
        local_files_only=True)
    _assert_fully_loaded(adapter, sd)
    return adapter.eval()


def _assert_fully_loaded(adapter, sd) -> None:
    """Every converted tensor landed in the adapter, and only its recomputed PE buffers came from elsewhere."""
    converted = single_file_utils.convert_animatediff_checkpoint_to_diffusers(sd)
    state = adapter.state_dict()
    assert set(state) - set(converted) == {k for k in state if k.endswith("pos_embed.pe")}
    assert set(converted) <= set(state)
    assert all(torch.equal(state[k], v) for k, v in converted.items())


class _PerFrameGroupNorm(nn.Module):
    """Wraps the reference's GroupNorm so its b c f h w input is normalised frame by frame, as officially."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.inner = norm

    def forward(self, x):
        b, c, f, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # b c f h w -> (b f) c h w
        return self.inner(frames).reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)  # -> b c f h w


def _norm_per_frame(adapter) -> None:
    """Give every reference motion module the official per-frame input norm (test-side only)."""
    for module in adapter.modules():
        if isinstance(module, diffusers.models.unets.unet_motion_model.AnimateDiffTransformer3D):
            module.norm = _PerFrameGroupNorm(module.norm)


def _input(c: int, seed: int, height: int = HEIGHT, width: int = WIDTH, clips: int = CLIPS) -> torch.Tensor:
    """Random (b f) c h w activations."""
    return torch.randn(clips * FRAMES, c, height, width, generator=torch.Generator().manual_seed(seed))


def _max_diff(ours: MotionModel, adapter, name: str, x: torch.Tensor) -> float:
    """max |ours - diffusers| for one named module on input x."""
    with torch.no_grad():
        mine = ours.get_submodule(name)(x, MotionCall(FRAMES))
        theirs = adapter.get_submodule(name)(x, num_frames=FRAMES)
    return (mine - theirs).abs().max().item()


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_test_checkpoints_look_original_to_diffusers(version):
    """diffusers' own detector calls our random files animatediff_v1/v2/v3, and ours loads them strictly."""
    spec = _spec(version)
    sd = _original_checkpoint(spec)
    assert single_file_utils.infer_diffusers_model_type(sd) == f"animatediff_{version}"
    assert len(sd) == 28 * len(_modules(spec)) == (588 if spec.has_mid_block else 560)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_shapes(spec)
    assert set(_ours(spec, sd).state_dict()) == set(sd)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_module_matches_diffusers(version, offline, tmp_path):
    """Each motion module equals diffusers' (per-frame norm) on the same random input within 1e-5."""
    spec = _spec(version)
    sd = _original_checkpoint(spec)
    ours, adapter = _ours(spec, sd), _diffusers(spec, sd, tmp_path)
    _norm_per_frame(adapter)
    diffs = {name: _max_diff(ours, adapter, name, _input(c, seed=i)) for i, (name, c) in enumerate(_modules(spec))}
    assert len(diffs) == len(ours.module_names())
    assert max(diffs.values()) <= TOL, diffs


def test_diffusers_norms_across_frames_and_that_is_the_only_difference(offline, tmp_path):
    """Unpatched diffusers differs from ours; our across-frames norm option (SDXL beta) matches it exactly."""
    spec = _spec("v2")
    sd = _original_checkpoint(spec)
    adapter = _diffusers(spec, sd, tmp_path)
    across = _ours(replace(spec, module_groupnorm="across_frames"), sd)
    name, c = _modules(spec)[0]
    x = _input(c, seed=5) * torch.linspace(0.2, 3.0, FRAMES).repeat(CLIPS)[:, None, None, None]
    assert _max_diff(_ours(spec, sd), adapter, name, x) > 1e-3
    assert _max_diff(across, adapter, name, x) <= TOL


def _paper_sinusoid(length: int, channels: int) -> torch.Tensor:
    """PE(p, 2i) = sin(p / 10000^(2i/C)), PE(p, 2i+1) = cos(...) (Vaswani et al. 2017), float64 loops."""
    table = torch.zeros(1, length, channels, dtype=torch.float64)
    for p in range(length):
        for i in range(channels // 2):
            angle = p / 10000 ** (2 * i / channels)
            table[0, p, 2 * i], table[0, p, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return table


def test_our_sinusoid_is_what_diffusers_recomputes(offline, tmp_path):
    """Our default table equals diffusers' recomputed buffer (not read from the file: its tables are zeros there)
    and the paper's formula, for every module width and PE length."""
    spec = _spec("v1")
    zero_tables = {k: torch.zeros_like(v) if k.endswith("pos_encoder.pe") else v
                   for k, v in _original_checkpoint(spec).items()}
    adapter = _diffusers(spec, zero_tables, tmp_path)
    for name, c in _modules(spec):
        theirs = adapter.get_submodule(name).transformer_blocks[0].pos_embed.pe
        assert theirs.abs().max() > 0.5  # recomputed by diffusers, not the zeros in the file
        torch.testing.assert_close(sinusoid(spec.pe_length, c), theirs, atol=1e-6, rtol=0)
        torch.testing.assert_close(sinusoid(spec.pe_length, c).double(), _paper_sinusoid(spec.pe_length, c),
                                   atol=1e-5, rtol=0)


def test_stored_pe_that_differs_is_honoured_by_ours(offline, tmp_path):
    """A non-standard stored PE changes our output to exactly the math with that table; diffusers drops it."""
    spec = _spec("v3")
    standard = _original_checkpoint(spec)
    name, c = _modules(spec)[2]
    custom_table = 0.5 * sinusoid(spec.pe_length, c) + torch.randn(1, spec.pe_length, c,
                                                                    generator=torch.Generator().manual_seed(9))
    custom = {k: (custom_table.clone() if k.startswith(name + ".") and k.endswith("pe") else v)
              for k, v in standard.items()}
    adapter = _diffusers(spec, custom, tmp_path)
    _norm_per_frame(adapter)
    x = _input(c, seed=3)
    ours_standard, ours_custom = _ours(spec, standard), _ours(spec, custom)
    assert _max_diff(ours_standard, adapter, name, x) <= TOL  # diffusers ignored the stored table
    assert _max_diff(ours_custom, adapter, name, x) > 1e-3  # ours did not
    adapter.get_submodule(name).transformer_blocks[0].pos_embed.pe.copy_(custom_table)
    assert _max_diff(ours_custom, adapter, name, x) <= TOL  # and used exactly that table


@pytest.mark.fullsize
def test_fullsize_v2_matches_diffusers(fullsize_requested, offline, tmp_path):
    """The real-size v2 layout (588 keys, ~453M params): first and mid modules equal diffusers within 1e-5."""
    spec = _spec("v2", FULL_WIDTHS)
    sd = _original_checkpoint(spec)
    assert len(sd) == 588
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("pe")) == spec.param_count == 453_209_280
    ours, adapter = _ours(spec, sd), _diffusers(spec, sd, tmp_path)
    del sd
    _norm_per_frame(adapter)
    checks = {"down_blocks.0.motion_modules.0": (320, 16), "mid_block.motion_modules.0": (1280, 4)}
    diffs = {name: _max_diff(ours, adapter, name, _input(c, seed=7, height=side, width=side, clips=1))
             for name, (c, side) in checks.items()}
    assert max(diffs.values()) <= TOL, diffs
