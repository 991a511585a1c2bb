"""Views (context windows in the motion module only) against an independent computation, every fuse method."""
from __future__ import annotations

import pytest
import torch
from _views_reference import reference_views, reference_weights
from test_motion_module import CHANNELS, HEADS, _module

from motion_modules.model import MotionCall, View
from sampling.context import ContextOptions, FuseMethod, fuse_weights, windows

FRAMES, CLIPS, OVERLAP = 20, 2, 4
WINDOWS = [list(range(0, 8)), list(range(4, 12)), list(range(8, 16)), list(range(12, 20))]  # static, length 8
TOL = 1e-5


def _input(seed: int = 1) -> torch.Tensor:
    """Random (b f) c h w activations whose scale changes over the frames, so fusing weights matter."""
    x = torch.randn(CLIPS * FRAMES, CHANNELS, 3, 4, generator=torch.Generator().manual_seed(seed))
    return x * torch.linspace(0.3, 3.0, FRAMES).repeat(CLIPS)[:, None, None, None]


def _views(method: str) -> list[tuple[list[int], list[float]]]:
    """The test's windows with the test's own weights."""
    return [(w, reference_weights(method, w, FRAMES, OVERLAP)) for w in WINDOWS]


def _ours(module, x: torch.Tensor, views) -> torch.Tensor:
    """Our module's views pass with the given (window, weights) pairs."""
    call = MotionCall(FRAMES, views=tuple(View(torch.tensor(w), torch.tensor(ws)) for w, ws in views))
    with torch.no_grad():
        return module(x, call)


@pytest.mark.parametrize("method", [m.value for m in FuseMethod])
@pytest.mark.parametrize("across_frames", [False, True])
def test_views_equal_independent_computation(method, across_frames):
    """Views fuse after the attention blocks and run the feed-forward on fused tokens, like the reference."""
    module = _module(norm_across_frames=across_frames)
    x = _input()
    expected = reference_views(module.state_dict(), x, FRAMES, _views(method), HEADS, across_frames)
    torch.testing.assert_close(_ours(module, x, _views(method)), expected, atol=TOL, rtol=0)


def test_the_setup_tells_flat_from_pyramid_and_module_level_fusing():
    """The views test would catch flat weights or fusing whole-module outputs: both are far past 1e-5 here."""
    module = _module()
    x = _input()
    pyramid = reference_views(module.state_dict(), x, FRAMES, _views("pyramid"), HEADS)
    flat = reference_views(module.state_dict(), x, FRAMES, _views("flat"), HEADS)
    assert (pyramid - flat).abs().max() > 1e-3
    assert (_ours(module, x, _views("flat")) - pyramid).abs().max() > 1e-3
    # the old way: run the whole module on each window, average its outputs
    num, den = torch.zeros_like(x).view(CLIPS, FRAMES, -1), torch.zeros(FRAMES, 1)
    for w, ws in _views("pyramid"):
        sub = x.view(CLIPS, FRAMES, *x.shape[1:])[:, w].flatten(0, 1)
        with torch.no_grad():
            out = module(sub, MotionCall(len(w))).view(CLIPS, len(w), -1)
        num[:, w] += out * torch.tensor(ws).view(1, -1, 1)
        den[w] += torch.tensor(ws).view(-1, 1)
    assert ((num / den).view_as(x) - pyramid).abs().max() > 1e-3


@pytest.mark.parametrize("method", [m.value for m in FuseMethod])
def test_fuse_weights_are_the_formulas(method):
    """fuse_weights gives the reference formulas for every window of static, uniform and looped schedules."""
    for schedule in ("standard_static", "standard_uniform", "looped_uniform"):
        opts = ContextOptions(8, 3, schedule=schedule, fuse=FuseMethod(method))
        for step in range(4):
            for w in windows(26, opts, step):
                got = fuse_weights(method, w, 26, 3)
                torch.testing.assert_close(got, torch.tensor(reference_weights(method, w, 26, 3)), atol=1e-6, rtol=0)


def test_one_view_over_every_frame_is_the_plain_pass():
    """A single window holding all frames (any weights) gives the module's ordinary output."""
    module, n = _module(), 12
    x = _input().view(CLIPS, FRAMES, CHANNELS, 3, 4)[:, :n].flatten(0, 1)
    weights = torch.tensor(reference_weights("gaussian", list(range(n)), n, 0))
    with torch.no_grad():
        plain = module(x, MotionCall(n))
        views = module(x, MotionCall(n, views=(View(torch.arange(n), weights),)))
    torch.testing.assert_close(views, plain, atol=TOL, rtol=0)


def test_views_with_positions_raise():
    """Each view numbers its PE rows from 0, so explicit positions are refused in one sentence."""
    with pytest.raises(ValueError, match="positions must be None"):
        MotionCall(4, positions=torch.arange(4), views=(View(torch.arange(4), torch.ones(4)),))
