"""The FreeInit example on a real ComfyUI server (random full-size SD1.5 + v2 module): 64x64, 2 steps, 2 iterations."""
from __future__ import annotations

import pytest
from test_server_workflows import run_example, server_motion  # noqa: F401 - server_motion is a fixture

pytestmark = [pytest.mark.host, pytest.mark.server]


def test_freeinit_16_frames(comfy_server, server_sd15, server_motion):  # noqa: F811
    """The FreeInit example gives 16 non-blank frames, no traceback, and logs both iterations."""
    offset = len(comfy_server.log_text())
    frames = run_example(comfy_server, "freeinit_16_frames", server_sd15, server_motion, 16)
    assert len(frames) == 16 and all(f.shape == (64, 64, 3) and f.std() > 0 for f in frames)
    log = comfy_server.log_since(offset)
    assert "FreeInit: iteration 1/2" in log and "FreeInit: iteration 2/2" in log, log[-2000:]
