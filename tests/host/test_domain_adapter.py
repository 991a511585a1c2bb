"""AnimateDiff v3's domain adapter (v3_sd15_adapter.ckpt) through core's LoRA loaders, in its official key layout.

Core reads this layout with no glue of ours: ``comfy.lora.model_lora_keys_unet`` maps every diffusers UNet weight
``….attn1.to_q.weight`` to ``….attn1.processor.to_q`` (``to_out.0`` to ``processor.to_out``) and
``weight_adapter/lora.py`` reads ``{key}_lora.up.weight`` / ``{key}_lora.down.weight`` pairs.
"""
from __future__ import annotations

import logging

import pytest
import torch
from _models import sd15_domain_adapter, sd15_domain_adapter_layout
from _tiny import TINY_CONTEXT, TINY_WIDTH, conditioning, tiny_sd15_patcher

NAME = "v3_sd15_adapter.ckpt"
RANK = 4


@pytest.fixture(scope="module")
def adapter(comfy_host) -> str:
    """A random tiny adapter in the official layout, placed in models/loras; its ``lora_name``."""
    sd15_domain_adapter(comfy_host.models_dir / "loras" / NAME, RANK, width=TINY_WIDTH, context_dim=TINY_CONTEXT)
    return NAME


def load(comfy_host, model, strength: float):
    """Core's Load LoRA (model only) node, as a graph would call it."""
    return comfy_host.nodes.LoraLoaderModelOnly().load_lora_model_only(model, NAME, strength)[0]


def predict(patcher) -> torch.Tensor:
    """The eps prediction of ``patcher``'s model (patches applied) on one fixed noisy 8x8 latent."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g)
    context = conditioning()[0][0]
    patcher.patch_model()
    try:
        with torch.no_grad():
            return patcher.model.apply_model(x, torch.tensor([5.0]), c_crossattn=context)
    finally:
        patcher.unpatch_model()


@pytest.mark.parametrize("wrapped", [False, True], ids=["flat", "state_dict-wrapped"])
def test_every_adapter_key_is_applied(comfy_host, caplog, wrapped):
    """Load LoRA (model only) patches one UNet weight per down/up pair of the file and logs no unloaded key."""
    name = NAME if not wrapped else "v3_sd15_adapter_wrapped.ckpt"
    sd15_domain_adapter(comfy_host.models_dir / "loras" / name, RANK, width=TINY_WIDTH, context_dim=TINY_CONTEXT,
                        wrapped=wrapped)
    model = tiny_sd15_patcher()
    with caplog.at_level(logging.WARNING):
        patched = comfy_host.nodes.LoraLoaderModelOnly().load_lora_model_only(model, name, 1.0)[0]
    assert "lora key not loaded" not in caplog.text
    pairs = len(sd15_domain_adapter_layout(RANK, TINY_WIDTH, TINY_CONTEXT)) // 2
    assert len(patched.patches) == pairs == 128
    assert all(".attn1." in k or ".attn2." in k for k in patched.patches)


def test_full_size_layout_matches_sd15_shapes(comfy_host, tmp_path, caplog):
    """At full size (rank 128, fp32) every pair maps to an SD1.5 weight whose shape equals up @ down."""
    import comfy.lora
    import comfy.model_base
    import comfy.model_detection
    import comfy.supported_models
    import comfy.utils
    from _models import SD15_UNET

    path = sd15_domain_adapter(tmp_path / NAME)
    config = comfy.supported_models.SD15(comfy.model_detection.convert_config(SD15_UNET))
    with torch.device("meta"):
        model = comfy.model_base.BaseModel(config, device="meta")
    lora = comfy.utils.load_torch_file(str(path), safe_load=True)
    with caplog.at_level(logging.WARNING):
        patches = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(model, {}))
    assert "lora key not loaded" not in caplog.text
    assert len(patches) == len(lora) // 2 == 128
    weights = model.state_dict()
    for key, adapter in patches.items():
        up, down = adapter.weights[0], adapter.weights[1]
        assert (up.shape[0], down.shape[1]) == tuple(weights[key].shape), key


def test_adapter_changes_the_prediction_and_strength_zero_does_not(comfy_host, adapter):
    """Strength 1 changes the model's eps prediction; strength 0 leaves it bit-identical."""
    base = predict(tiny_sd15_patcher())
    adapted = predict(load(comfy_host, tiny_sd15_patcher(), 1.0))
    off = predict(load(comfy_host, tiny_sd15_patcher(), 0.0))
    assert torch.equal(off, base)
    assert (adapted - base).abs().max() > 1e-3 * base.abs().max()
