"""The SparseCtrl examples on a real ComfyUI server: random full-size SD1.5, v3 module and official-layout SparseCtrl
files written by the test, 64x64, 2 steps."""
from __future__ import annotations

import numpy as np
import pytest
from _models import sd15_domain_adapter, write_motion_module, write_sparsectrl
from _workflow import load_workflow, workflow_to_prompt
from PIL import Image
from test_server_workflows import WORKFLOWS, frames_of, graph_fps, saved_video, video_fps

pytestmark = [pytest.mark.host, pytest.mark.server]

FRAMES = 16


@pytest.fixture(scope="module")
def sparse_models(comfy_server, tmp_path_factory) -> dict:
    """v3 module, both SparseCtrl stand-ins (official .ckpt layout) and keyframe PNGs on the server."""
    folder = tmp_path_factory.mktemp("sparsectrl")
    names = {"motion": comfy_server.add_model("animatediff_models", write_motion_module(folder / "v3.ckpt", "v3"),
                                              "kinema-random-v3.ckpt")}
    for kind in ("rgb", "scribble"):
        path = write_sparsectrl(folder / f"{kind}.ckpt", kind)
        names[kind] = comfy_server.add_model("controlnet", path, f"kinema-random-sparsectrl-{kind}.ckpt")
    names["adapter"] = comfy_server.add_model("loras", sd15_domain_adapter(folder / "adapter.ckpt"),
                                              "kinema-random-v3-adapter.ckpt")
    (comfy_server.base_dir / "input").mkdir(exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (80, 48, 3), dtype=np.uint8)  # not the latent's x8: resized
    Image.fromarray(pixels).save(comfy_server.base_dir / "input" / "kinema_keyframe.png")
    return names


def run_sparse_example(server, name: str, ckpt: str, models: dict, kind: str) -> list:
    """Run ``example_workflows/<name>.json`` at 64x64, 2 steps with the stand-ins; the saved video's frames."""
    workflow = load_workflow(WORKFLOWS / f"{name}.json")
    overrides = {
        "CheckpointLoaderSimple": {"ckpt_name": ckpt},
        "KinemaLoadMotionModule": {"model_name": models["motion"]},
        "KinemaLoadSparseCtrl": {"sparsectrl_name": models[kind]},
        "LoraLoaderModelOnly": {"lora_name": models["adapter"]},
        "LoadImage": {"image": "kinema_keyframe.png"},
        "ImageScale": {"width": 64, "height": 64},
        "EmptyLatentImage": {"width": 64, "height": 64, "batch_size": FRAMES},
        "KinemaSampleAnimation": {"steps": 2},
    }
    prompt = workflow_to_prompt(workflow, server.object_info(), overrides)
    offset = len(server.log_text())
    entry = server.run(prompt, timeout=1800)  # full-size models on a shared CPU
    log = server.log_since(offset)
    assert server.tracebacks(log) == []
    assert "lora key not loaded" not in log  # the v3 domain adapter applied in full
    video = saved_video(server, entry)
    assert video_fps(video) == graph_fps(workflow)
    return frames_of(video)


@pytest.mark.parametrize("name, kind", [("image_to_video_sparsectrl", "rgb"),
                                        ("sparsectrl_scribble_keyframes", "scribble")])
def test_sparsectrl_example_runs(comfy_server, server_sd15, sparse_models, name, kind):
    """The example (v3 domain adapter, SparseCtrl, colour match) finishes with 16 non-blank 64x64 frames and no
    traceback, and core applied every adapter key."""
    frames = run_sparse_example(comfy_server, name, server_sd15, sparse_models, kind)
    assert len(frames) == FRAMES
    assert all(f.shape == (64, 64, 3) and f.std() > 0 for f in frames)
