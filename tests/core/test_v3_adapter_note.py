"""Load Motion Module's detection text points v3 SD1.5 modules at the v3 domain adapter (and no other module)."""
from __future__ import annotations

import pytest
from _fixtures import original_state_dict, tiny_spec

from motion_modules import detect
from motion_modules.spec import standard_spec


def test_v3_text_recommends_the_domain_adapter_through_load_lora():
    """A detected v3 file's text names the adapter file, core's Load LoRA (model only) and strength 1.0."""
    text = detect(original_state_dict(tiny_spec("v3"))).describe()
    assert text.startswith("SD1.5 · AnimateDiff v3")
    assert all(p in text for p in ("v3_sd15_adapter.ckpt", "Load LoRA (model only)", "strength about 1.0"))


@pytest.mark.parametrize("version", ["v1", "v2", "animatelcm", "sdxl-beta", "hotshotxl"])
def test_other_modules_do_not_mention_the_adapter(version):
    """The adapter is an SD1.5 LoRA trained with v3: SDXL and earlier modules say nothing about it."""
    assert "domain adapter" not in standard_spec(version).describe()


def test_the_adapter_stand_in_is_named_if_loaded_as_a_motion_module(tmp_path):
    """The random v3_sd15_adapter.ckpt stand-in, given to Load Motion Module, is named as the adapter."""
    import torch
    from _models import sd15_domain_adapter

    from motion_modules.errors import WrongFileKindError

    path = sd15_domain_adapter(tmp_path / "v3_sd15_adapter.ckpt", 4, width=32, context_dim=32)
    with pytest.raises(WrongFileKindError, match=r"v3 domain adapter \(v3_sd15_adapter.ckpt\); load it with core"):
        detect(torch.load(path, weights_only=True))
