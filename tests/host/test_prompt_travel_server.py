"""The prompt-travel example on a real ComfyUI server: Prompt Schedule (three keyframes) + context windows, 48 frames."""
from __future__ import annotations

import json

import pytest
from _workflow import load_workflow, workflow_to_prompt
from test_server_workflows import WORKFLOWS, run_example, server_motion  # noqa: F401  (server_motion: a fixture)

pytestmark = [pytest.mark.host, pytest.mark.server]


def test_prompt_travel_48_frames(comfy_server, server_sd15, server_motion):  # noqa: F811
    """64x64, 2 steps: the example saves 48 non-blank frames; its schedule has three keyframes and a linked latent."""
    workflow = json.loads((WORKFLOWS / "prompt_travel_48_frames.json").read_text())
    schedule = next(n for n in workflow["nodes"] if n["type"] == "KinemaPromptSchedule")
    assert [line.split(":")[0] for line in schedule["widgets_values"][0].splitlines()] == ["0", "16", "32"]
    assert any(i["name"] == "latent" and i["link"] for i in schedule["inputs"])
    assert any(n["type"] == "KinemaContextScheduler" for n in workflow["nodes"])
    frames = run_example(comfy_server, "prompt_travel_48_frames", server_sd15, server_motion, 48, cfg=1.0)
    assert len(frames) == 48
    assert all(f.shape == (64, 64, 3) and f.std() > 0 for f in frames)


def test_bad_schedule_line_is_refused_before_running(comfy_server, server_sd15, server_motion):  # noqa: F811
    """The example with a line lacking 'FRAME:': HTTP 400 whose node error names the line number and its text."""
    overrides = {"CheckpointLoaderSimple": {"ckpt_name": server_sd15},
                 "KinemaLoadMotionModule": {"model_name": server_motion},
                 "KinemaPromptSchedule": {"text": "0: a bud\nin bloom"}}
    prompt = workflow_to_prompt(load_workflow(WORKFLOWS / "prompt_travel_48_frames.json"), comfy_server.object_info(),
                                overrides)
    body = comfy_server.post_prompt(prompt, expect_error=True)
    assert "text line 2 ('in bloom')" in json.dumps(body["node_errors"]), body
