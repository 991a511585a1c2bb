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
