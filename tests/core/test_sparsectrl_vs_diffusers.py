"""Our SparseCtrl encoder against diffusers' SparseControlNetModel, both loaded from the same official-layout weights.

The weights are random, in the official ``v3_sd15_sparsectrl_{rgb,scribble}.ckpt`` key layout at reduced widths
(tools/_models.py). diffusers gets them through the renames of its own conversion script
(scripts/convert_animatediff_sparsectrl_to_diffusers.py), written out here independently of our converter.
One known difference is neutralised on diffusers' side only: it GroupNorms each motion module's input across
frames, the official code per frame (as in test_vs_diffusers.py).
"""
from __future__ import annotations

import functools

import _models
import pytest
import torch
from test_vs_diffusers import _norm_per_frame

from motion_modules.sparsectrl_format import build_encoder, detect, to_official, validate

diffusers = pytest.importorskip("diffusers")

WIDTHS, CONTEXT = (32, 64, 64, 96), 32
FRAMES, CLIPS, LATENT = 16, 2, 16  # the deepest level at 2x2: GroupNorm over 3 values per group amplifies rounding
TOL = 1e-5
OFFICIAL_TO_DIFFUSERS = ((".attention_blocks.0", ".attn1"), (".attn1.pos_encoder", ".pos_embed"),
                         (".ff_norm", ".norm3"), (".norms.0", ".norm1"), (".temporal_transformer", ""))


@functools.lru_cache(maxsize=2)
def _weights(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Tiny official-layout weights, every tensor but the PE tables nudged so biases and norms matter."""
    sd = _models.sparsectrl_state_dict(kind, torch.float32, WIDTHS, CONTEXT, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    return {k: v if k.endswith(".pe") else v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in sd.items()}


def _to_diffusers(sd: dict) -> dict:
    """The renames of diffusers' own SparseCtrl conversion script."""
    out = {}
    for key, value in sd.items():
        for old, new in OFFICIAL_TO_DIFFUSERS:
            key = key.replace(old, new)
        out[key] = value
    return out


@functools.lru_cache(maxsize=2)
def _reference(kind: str, per_frame: bool = True):
    """diffusers' SparseControlNetModel holding ``_weights(kind)`` strictly, by default with the official per-frame
    module norm."""
    model = diffusers.SparseControlNetModel(
        conditioning_channels=4 if kind == "rgb" else 3, block_out_channels=WIDTHS, cross_attention_dim=CONTEXT,
        use_simplified_condition_embedding=kind == "rgb", motion_max_seq_length=32)
    model.load_state_dict(_to_diffusers(_weights(kind)), strict=True)
    if per_frame:
        _norm_per_frame(model)
    return model.eval()


@functools.lru_cache(maxsize=2)
def _encoder(kind: str):
    """Our encoder from ``_weights(kind)`` through our own detection and conversion."""
    sd = _weights(kind)
    spec = detect(sd)
    return build_encoder(spec, to_official(sd, spec))


def _inputs(kind: str, keyframes: list[int], seed: int = 3):
    """Condition (b, c, f, h, w), its mask, prompt tokens and a timestep; zeros and mask 0 off the keyframes."""
    gen = torch.Generator().manual_seed(seed)
    channels, size = (4, LATENT) if kind == "rgb" else (3, LATENT * 8)
    cond = torch.zeros(CLIPS, channels, FRAMES, size, size)
    mask = torch.zeros(CLIPS, 1, FRAMES, size, size)
    cond[:, :, keyframes] = torch.rand(CLIPS, channels, len(keyframes), size, size, generator=gen)
    mask[:, :, keyframes] = 1.0
    context = torch.randn(CLIPS, 7, CONTEXT, generator=gen).repeat_interleave(FRAMES, dim=0)  # (b f) tokens dim
    return cond, mask, context, torch.tensor(421)


def _ours(kind: str, cond, mask, context, t):
    """Our residuals for the same inputs, (b f) c h w each."""
    encoder = _encoder(kind)
    flat = torch.cat([cond, mask], dim=1).permute(0, 2, 1, 3, 4).flatten(0, 1)  # b c f h w -> (b f) c h w
    with torch.no_grad():
        return encoder(flat, t.repeat(CLIPS * FRAMES), context, FRAMES)


@pytest.mark.parametrize("kind", ["rgb", "scribble"])
@pytest.mark.parametrize("keyframes", [[0], [0, 15], list(range(FRAMES))], ids=["0", "0,15", "all"])
def test_every_residual_matches_diffusers(kind, keyframes):
    """All 12 down residuals and the mid residual equal diffusers' within 1e-5 of the output scale."""
    cond, mask, context, t = _inputs(kind, keyframes)
    down, mid = _ours(kind, cond, mask, context, t)
    sample = torch.randn(CLIPS, 4, FRAMES, LATENT, LATENT)  # diffusers zeroes it, as the official code does
    with torch.no_grad():
        ref_down, ref_mid = _reference(kind)(sample, t, context, cond, conditioning_mask=mask,
                                                 return_dict=False)
    assert len(down) == len(ref_down) == 12
    for mine, theirs in zip([*down, mid], [*ref_down, ref_mid], strict=True):
        assert mine.shape == theirs.shape
        scale = theirs.abs().max().item()
        assert scale > 1e-3
        assert (mine - theirs).abs().max().item() <= TOL * scale


def test_diffusers_layout_loads_to_the_same_encoder():
    """A diffusers-layout state dict is detected as such and converts back to the official weights exactly."""
    sd = _weights("scribble")
    theirs = _reference("scribble", per_frame=False).state_dict()
    spec = detect(theirs)
    assert (spec.source_layout, spec.kind, spec.widths, spec.context_dim) == ("diffusers", "scribble", WIDTHS, CONTEXT)
    back = to_official(theirs, spec)
    validate(back, spec)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_official_layout_detected():
    """RGB and scribble files are told apart by their condition embedding; widths and PE length come from shapes."""
    rgb, scribble = detect(_weights("rgb")), detect(_weights("scribble"))
    assert (rgb.kind, rgb.cond_channels, rgb.hint_widths, rgb.source_layout) == ("rgb", 4, (), "official")
    assert (scribble.kind, scribble.cond_channels, scribble.hint_widths) == ("scribble", 3, (16, 32, 96, 256))
    assert rgb.pe_length == 32 and rgb.pe_stored
