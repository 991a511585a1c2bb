"""Per-frame conds under context windows: each window's ControlNets see that window's hint frames, per-frame
prompts follow the windows, and the fused prediction equals an independent per-window computation."""
from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

sys.path.append(str(Path(__file__).parent))
from _tiny import conditioning, tiny_controlnet, tiny_sd15_patcher  # noqa: E402
from test_attach import tiny_motion  # noqa: E402

FRAMES, LENGTH, OVERLAP = 40, 16, 4
WINDOWS = [range(0, 16), range(12, 28), range(24, 40)]  # standard_static for 40 / 16 / 4


def _mod(name: str):
    return import_module(f"kinema.{name}")


@pytest.fixture(scope="module")
def animated(comfy_host):
    return _mod("comfy_glue.attach").attach(tiny_sd15_patcher(seed=0), tiny_motion("v2", seed=4))


@pytest.fixture(scope="module")
def nets(comfy_host):
    return tiny_controlnet(seed=11), tiny_controlnet(seed=12)


def with_context(model, views=False, fuse="pyramid"):
    ctx, opts = _mod("comfy_glue.context"), _mod("sampling.context")
    options = opts.ContextOptions(LENGTH, OVERLAP, opts.ContextSchedule.STANDARD_STATIC, opts.FuseMethod(fuse))
    return ctx.apply_context(model, ctx.ContextPlan(options, views), tiny_motion().spec)


def hints(frames: int, seed: int = 0, size=(40, 56)) -> torch.Tensor:
    """An IMAGE batch (frames, h, w, 3) at a size other than the latent's x8 (64 x 64)."""
    return torch.rand(frames, *size, 3, generator=torch.Generator().manual_seed(seed))


def controlled(controls, prompts=None):
    """(positive, negative) with each (net, hint, start, end) applied in order by core's Apply ControlNet."""
    import nodes

    pos = conditioning(0) if prompts is None else [[prompts, {}]]
    neg = conditioning(1)
    for net, hint, start, end in controls:
        pos, neg = nodes.ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, hint, 0.9, start, end)
    return pos, neg


def run(model, noise, conds, steps: int = 1, cfg: float = 3.0) -> torch.Tensor:
    """ComfyUI's own sampling (euler; one step = the CFG-combined denoised prediction)."""
    import comfy.sample

    pos, neg = conds
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", pos, neg, torch.zeros_like(noise),
                               seed=0, disable_pbar=True)


def noise_for(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def per_window_reference(model, noise, conds_for, fuse="pyramid") -> torch.Tensor:
    """Each window sampled alone (its own hint / prompt slice via ``conds_for(window)``), fused by fuse_weights."""
    fuse_weights = _mod("sampling.context").fuse_weights
    total = torch.zeros(FRAMES, 1, 1, 1)
    expected = torch.zeros_like(noise)
    for window in WINDOWS:
        w = fuse_weights(fuse, list(window), FRAMES, OVERLAP).view(-1, 1, 1, 1)
        expected[window.start:window.stop] += run(model, noise[window.start:window.stop], conds_for(window)) * w
        total[window.start:window.stop] += w
    return expected / total


def assert_close(actual, expected):
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= 1e-5 * scale, ((actual - expected).abs().max(), scale)


@pytest.mark.parametrize("fuse", ["pyramid", "overlap-linear"])
def test_fused_prediction_equals_windows_run_with_their_own_hints(animated, nets, fuse):
    """40 frames, windows 16/4, one ControlNet: equal to each window run with its hint slice, fused (<=1e-5)."""
    hint, noise = hints(FRAMES, 1), noise_for(FRAMES, 1)
    fused = run(with_context(animated, fuse=fuse), noise, controlled([(nets[0], hint, 0.0, 1.0)]))
    expected = per_window_reference(
        animated, noise, lambda w: controlled([(nets[0], hint[w.start:w.stop], 0.0, 1.0)]), fuse)
    assert_close(fused, expected)
    no_control = run(with_context(animated, fuse=fuse), noise, controlled([]))
    assert (fused[30:] - no_control[30:]).abs().max() > 1e-3  # the ControlNet really steers the last window


@pytest.mark.parametrize("first_start", [0.0, 0.5])
def test_chained_controlnets_follow_the_windows(animated, nets, first_start):
    """Two chained ControlNets (previous_controlnet; the first inactive at step 1 when it starts at 50%)."""
    hint_a, hint_b, noise = hints(FRAMES, 2), hints(FRAMES, 3, size=(64, 64)), noise_for(FRAMES, 2)
    fused = run(with_context(animated), noise,
                controlled([(nets[0], hint_a, first_start, 1.0), (nets[1], hint_b, 0.0, 1.0)]))
    expected = per_window_reference(animated, noise, lambda w: controlled(
        [(nets[0], hint_a[w.start:w.stop], first_start, 1.0), (nets[1], hint_b[w.start:w.stop], 0.0, 1.0)]))
    assert_close(fused, expected)


def test_single_window_clip_equals_no_context(animated, nets):
    """12 frames with context 16 (one window): the same as without context options, hints of 12."""
    hint, noise = hints(12, 4), noise_for(12, 4)
    conds = controlled([(nets[0], hint, 0.0, 1.0)])
    plain = run(animated, noise, conds, steps=2)
    windowed = run(with_context(animated), noise, conds, steps=2)
    assert (plain - windowed).abs().max() <= 1e-5 * plain.abs().max()


def test_changing_last_window_hints_changes_only_what_that_window_touches(animated, nets):
    """Hint frames 28-39 (only in the last window) changed: frames 28-39 change, frames 0-23 stay bit-equal."""
    hint, noise = hints(FRAMES, 5), noise_for(FRAMES, 5)
    changed = hint.clone()
    changed[28:] = hints(12, 6)
    model = with_context(animated)
    before = run(model, noise, controlled([(nets[0], hint, 0.0, 1.0)]))
    after = run(model, noise, controlled([(nets[0], changed, 0.0, 1.0)]))
    assert torch.equal(before[:24], after[:24])
    moved = (before - after).flatten(1).abs().amax(1)
    assert (moved[28:] > 1e-4).all(), moved


def test_views_controlnet_sees_every_frame(animated, nets):
    """Views (UNet on all frames): the ControlNet steers each frame with its own hint, frame 39 included."""
    hint, noise = hints(FRAMES, 7), noise_for(FRAMES, 7)
    changed = hint.clone()
    changed[39] = hints(1, 8)[0]
    model = with_context(animated, views=True)
    before = run(model, noise, controlled([(nets[0], hint, 0.0, 1.0)]))
    after = run(model, noise, controlled([(nets[0], changed, 0.0, 1.0)]))
    assert (before[39] - after[39]).abs().max() > 1e-4


def test_per_frame_prompts_follow_the_windows(animated):
    """A batch of 40 prompt embeddings (one per frame): each window gets its own 16 (0.3.64 core does not slice)."""
    prompts = torch.randn(FRAMES, 7, 32, generator=torch.Generator().manual_seed(9))
    noise = noise_for(FRAMES, 9)
    fused = run(with_context(animated), noise, controlled([], prompts))
    expected = per_window_reference(animated, noise, lambda w: controlled([], prompts[w.start:w.stop]))
    assert_close(fused, expected)


def test_hint_batch_of_wrong_length_is_one_error_before_sampling(animated, nets):
    """7 hint images for 40 frames: one sentence naming the hint, 1 or 40 expected, 7 found."""
    with pytest.raises(ValueError, match=r"hint image batch must hold 1 image or one per frame \(40\), but it holds 7"):
        run(with_context(animated), noise_for(FRAMES), controlled([(nets[0], hints(7), 0.0, 1.0)]))


def test_window_controls_prepared_once_per_window(animated, nets):
    """Over 3 steps, core prepares each window's hint once (3 windows x 1 net), not once per step."""
    import comfy.controlnet
    import comfy.utils

    calls = []
    original = comfy.utils.common_upscale

    def counting(samples, *args, **kwargs):
        calls.append(samples.shape[0])
        return original(samples, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:  # counts core's hint resizes; restored when the block ends
        mp.setattr(comfy.controlnet.comfy.utils, "common_upscale", counting)
        run(with_context(animated), noise_for(FRAMES), controlled([(nets[0], hints(FRAMES), 0.0, 1.0)]), steps=3)
    assert calls == [16, 16, 16]
