"""A real client: headless Chromium (Debian's chromium, driven by npm's playwright-core) opens the ComfyUI frontend
the server serves, loads each example workflow through the app, checks it, converts it with app.graphToPrompt,
queues it tiny (64x64, 2 steps, the random models placed on the server) and waits for the animation.

Set up by scripts/setup_browser.sh; without chromium, node or playwright-core every test here skips with one line.
Screenshots of the loaded graphs go to ``artifacts/browser/<ComfyUI version>/`` (gitignored).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.host, pytest.mark.server, pytest.mark.browser]

sys.path.append(str(Path(__file__).parent))
from _comfy import REPO_ROOT  # noqa: E402
from _workflow import FRONTEND_ONLY, load_workflow, workflow_to_prompt  # noqa: E402

SCRIPT = Path(__file__).parent / "browser" / "run_workflow.mjs"
NODE_DIR = Path(os.environ.get("KINEMA_NODE_DIR", Path.home() / ".cache" / "kinema" / "node"))
CHROMIUM = Path(os.environ.get("KINEMA_CHROMIUM", "/usr/bin/chromium"))
WORKFLOWS = sorted((REPO_ROOT / "example_workflows").glob("*.json"))
FRAMES = 8  # frames per workflow; with context windows, the window length + 4 (two windows or more)
TIMEOUT_S = 1500


def missing_tools() -> str | None:
    """What the browser tests lack, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no chromium at {CHROMIUM}"
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (NODE_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        return f"playwright-core is not installed in {NODE_DIR}"
    return None


@pytest.fixture(scope="module")
def browser_tools() -> None:
    """Skips (one line, before any server starts) unless chromium, node and playwright-core are there."""
    why = missing_tools()
    if why:
        pytest.skip(f"browser tests need chromium + playwright-core: {why} (run scripts/setup_browser.sh)")


@pytest.fixture(scope="module")
def browser_models(browser_tools, comfy_server, server_sd15, tmp_path_factory) -> dict:
    """The random SD1.5 checkpoint, a v2 module and two MotionLoRAs placed on the server."""
    import torch
    from _models import write_motion_module
    from test_server_workflows import official_motion_lora

    folder = tmp_path_factory.mktemp("browser_models")
    motion = write_motion_module(folder / "v2.safetensors", "v2")
    loras = []
    for seed in (0, 1):
        torch.save(official_motion_lora(seed), folder / f"lora{seed}.ckpt")
        loras.append(comfy_server.add_model("animatediff_motion_lora", folder / f"lora{seed}.ckpt",
                                            f"kinema-browser-lora{seed}.ckpt"))
    return {"ckpt": server_sd15, "motion": comfy_server.add_model("animatediff_models", motion,
                                                                  "kinema-browser-v2.safetensors"), "loras": loras}


def sdxl_models(server) -> dict:
    """The random full-size SDXL checkpoint and SDXL beta module (built once per machine), placed on the server."""
    import _models

    if not hasattr(_models, "sdxl_checkpoint"):
        pytest.skip("tools/_models.py has no random SDXL checkpoint builder")
    folder = server.base_dir / "browser_sdxl"
    motion = _models.write_sdxl_motion_module(folder / "sdxl_beta.safetensors", "sdxl-beta")
    return {"ckpt": server.add_model("checkpoints", _models.sdxl_checkpoint(), "kinema-browser-sdxl.safetensors"),
            "motion": server.add_model("animatediff_models", motion, "kinema-browser-sdxl-beta.safetensors")}


def widget_values(workflow: dict, models: dict) -> tuple[dict, int]:
    """``{node id: {widget: value}}`` making the workflow tiny and pointing it at the placed models; and its frames."""
    context = [n for n in workflow["nodes"] if n["type"] == "KinemaContextScheduler"]
    frames = context[0]["widgets_values"][0] + 4 if context else FRAMES
    loras = iter(models.get("loras", []))
    values = {}
    for node in workflow["nodes"]:
        kind, key = node["type"], str(node["id"])
        if kind == "CheckpointLoaderSimple":
            values[key] = {"ckpt_name": models["ckpt"]}
        elif kind == "KinemaLoadMotionModule":
            values[key] = {"model_name": models["motion"]}
        elif kind == "KinemaApplyMotionLoRA":
            values[key] = {"lora_name": next(loras)}
        elif kind == "EmptyLatentImage":
            values[key] = {"width": 64, "height": 64, "batch_size": frames}
        elif kind == "KinemaSampleAnimation":
            values[key] = {"steps": 2, **({"cfg": 1.0} if context else {})}
        elif kind == "KinemaPromptSchedule":  # keyframes scaled to the shortened clip ("32: x" of 48 -> "13: x" of 20)
            text, length = node["widgets_values"][0], node["widgets_values"][3]
            values[key] = {"text": "\n".join(f"{int(k) * frames // length}:{p}"
                                             for k, p in (line.split(":", 1) for line in text.splitlines()))}
    return values, frames


def run_in_browser(server, workflow_path: Path, widgets: dict, out_dir: Path) -> dict:
    """Run tests/host/browser/run_workflow.mjs for one workflow; returns its result JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    job = {"url": server.url, "chromium": str(CHROMIUM), "workflow": str(workflow_path), "widgets": widgets,
           "screenshot": str(out_dir / f"{workflow_path.stem}.png"), "result": str(out_dir / f"{workflow_path.stem}.json"),
           "timeout_s": TIMEOUT_S}
    job_path = out_dir / f"{workflow_path.stem}.job.json"
    job_path.write_text(json.dumps(job, indent=1))
    env = {**os.environ, "KINEMA_NODE_DIR": str(NODE_DIR), "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.run(["node", str(SCRIPT), str(job_path)], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S + 300)
    assert proc.returncode == 0, f"run_workflow.mjs failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(Path(job["result"]).read_text())


SERVER_ONLY = {"video_to_video_controlnet": "test_video_to_video.py",
               "image_to_video_sparsectrl": "test_sparsectrl_server.py",
               "sparsectrl_scribble_keyframes": "test_sparsectrl_server.py",
               "train_motion_lora": "test_train_motion_lora_server.py",
               # these two run at full length in their own server tests; the browser run only duplicated them
               "prompt_travel_48_frames": "test_prompt_travel_server.py",
               "freeinit_16_frames": "test_freeinit_server.py"}


def _params():
    for path in WORKFLOWS:
        marks = [pytest.mark.fullsize] if "sdxl" in path.stem else []
        if path.stem in SERVER_ONLY:  # needs inputs the browser run lacks, or runs in full there
            marks.append(pytest.mark.skip(reason=f"{path.stem} runs on the server in {SERVER_ONLY[path.stem]}"))
        yield pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("workflow_path", list(_params()))
def test_example_workflow_in_a_real_browser(browser_tools, comfy_server, comfy_version, browser_models,
                                            workflow_path):
    """Loaded through the app with no missing node types and no widget errors, converted by app.graphToPrompt
    to the prompt our converter makes, queued by the frontend's api, and finished with every frame."""
    from test_server_workflows import frames_of, graph_fps, saved_video, video_fps

    server = comfy_server
    workflow = load_workflow(workflow_path)
    models = sdxl_models(server) if "sdxl" in workflow_path.stem else browser_models
    widgets, frames = widget_values(workflow, models)
    if "sdxl" in workflow_path.stem:
        server.free()
    offset = len(server.log_text())
    result = run_in_browser(server, workflow_path, widgets, REPO_ROOT / "artifacts" / "browser" / comfy_version)
    if "sdxl" in workflow_path.stem:
        server.free()
    print(f"{workflow_path.stem}: screenshot {REPO_ROOT / 'artifacts' / 'browser' / comfy_version}/"
          f"{workflow_path.stem}.png, timings {result['timings']}")

    assert result["missingNodeTypes"] == []
    assert [n for n in result["loadedNodes"] if n["hasErrors"]] == []
    assert result["widgetRoundTrip"] == [], "widgets_values changed on load (widgets misaligned?)"
    assert result["unknownWidgets"] == [] and result["widgetErrors"] == []
    assert [e for e in result["pageErrors"] if e["phase"] != "startup"] == []  # 1.27.10 throws once at startup
    assert [e for e in result["consoleErrors"] if e["phase"] in ("load", "widgets", "queue")
            and not e["text"].startswith("Failed to load resource")] == []
    assert "queueError" not in result and result["queued"]["node_errors"] == {}

    by_id = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in result["prompt"].items()}
    ours = workflow_to_prompt(workflow, server.object_info(), widgets)
    assert by_id == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in ours.items()}
    assert {v["class_type"] for v in by_id.values()} == {n["type"] for n in workflow["nodes"]} - FRONTEND_ONLY

    entry = result.get("history")
    assert entry is not None, f"no history entry within {TIMEOUT_S}s{server.log_since(offset)[-3000:]}"
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    assert server.tracebacks(server.log_since(offset)) == []
    video = saved_video(server, entry)
    assert video_fps(video) == graph_fps(workflow)
    images = frames_of(video)
    assert len(images) == frames and all(f.shape == (64, 64, 3) and f.std() > 0 for f in images)
