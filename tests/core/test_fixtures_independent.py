"""The test fixtures are built with the pack's own layout code (``expected_shapes``, ``sinusoidal_pe``); here they are
checked against layouts written out by hand from the official releases and, where installed, diffusers' converter."""
from __future__ import annotations

import math

import pytest
import torch
from _fixtures import original_state_dict, tiny_spec, to_diffusers_keys, to_hotshot_keys

# version -> (levels, mid block, PE rows): guoyww/AnimateDiff configs, Hotshot-XL, AnimateLCM inference-t2v.yaml
RELEASES = {"v1": (4, False, 24), "v2": (4, True, 32), "v3": (4, False, 32), "animatelcm": (4, True, 64),
            "sdxl-beta": (3, False, 32), "hotshotxl": (3, False, 24)}


def _hand_layout(widths: tuple[int, ...], mid: bool, pe: int) -> dict[str, tuple[int, ...]]:
    """Every key and shape of an original-layout file: 2 modules per down level, 3 per up level, 28 keys each."""
    seats = [(f"down_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(widths) for j in range(2)]
    seats += [("mid_block.motion_modules.0", widths[-1])] if mid else []
    seats += [(f"up_blocks.{i}.motion_modules.{j}", c) for i, c in enumerate(reversed(widths)) for j in range(3)]
    layout = {}
    for seat, c in seats:
        t, b = f"{seat}.temporal_transformer.", f"{seat}.temporal_transformer.transformer_blocks.0."
        layout |= {t + "norm.weight": (c,), t + "norm.bias": (c,), t + "proj_in.weight": (c, c),
                   t + "proj_in.bias": (c,), t + "proj_out.weight": (c, c), t + "proj_out.bias": (c,)}
        for a in range(2):
            attn = f"{b}attention_blocks.{a}."
            layout |= {f"{attn}to_{p}.weight": (c, c) for p in "qkv"}
            layout |= {attn + "to_out.0.weight": (c, c), attn + "to_out.0.bias": (c,),
                       attn + "pos_encoder.pe": (1, pe, c), f"{b}norms.{a}.weight": (c,), f"{b}norms.{a}.bias": (c,)}
        layout |= {b + "ff.net.0.proj.weight": (8 * c, c), b + "ff.net.0.proj.bias": (8 * c,),
                   b + "ff.net.2.weight": (c, 4 * c), b + "ff.net.2.bias": (c,),
                   b + "ff_norm.weight": (c,), b + "ff_norm.bias": (c,)}
    return layout


@pytest.mark.parametrize("version", sorted(RELEASES))
def test_fixture_layout_is_the_release_layout(version):
    """original_state_dict's keys and shapes equal the hand-written layout of that release, PE rows included."""
    levels, mid, pe = RELEASES[version]
    spec = tiny_spec(version)
    assert len(spec.widths) == levels
    sd = original_state_dict(spec)
    assert {k: tuple(v.shape) for k, v in sd.items()} == _hand_layout(spec.widths, mid, pe)
    assert len(sd) == 28 * (5 * levels + mid)


def test_fixture_pe_is_the_paper_formula():
    """The PE tables the fixtures store are sin/cos(p / 10000^(2i/C)), computed here in float64."""
    table = original_state_dict(tiny_spec("v2"))["down_blocks.0.motion_modules.0.temporal_transformer."
                                                  "transformer_blocks.0.attention_blocks.1.pos_encoder.pe"]
    _, rows, c = table.shape
    for p in range(rows):
        for i in range(c // 2):
            angle = p / 10000 ** (2 * i / c)
            assert table[0, p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[0, p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_fixture_diffusers_keys_are_what_diffusers_converts_to():
    """to_diffusers_keys renames like diffusers' own single-file converter (the PE aside, which it drops)."""
    utils = pytest.importorskip("diffusers.loaders.single_file_utils")
    sd = original_state_dict(tiny_spec("v2"))
    theirs = utils.convert_animatediff_checkpoint_to_diffusers(sd)
    ours = to_diffusers_keys(sd, with_pe=False)
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_fixture_hotshot_keys_follow_hotshot_xl_names():
    """to_hotshot_keys writes Hotshot-XL's names (temporal_attentions.j, positional_encoding), spelled out here."""
    sd = to_hotshot_keys(original_state_dict(tiny_spec("hotshotxl")))
    assert "up_blocks.2.temporal_attentions.2.transformer_blocks.0.attention_blocks.1.pos_encoder.positional_encoding" in sd
    assert "down_blocks.0.temporal_attentions.1.proj_in.weight" in sd
    assert not [k for k in sd if "motion_modules" in k or "temporal_transformer" in k]
