"""The Moving-MNIST experiment end to end at smoke size: it trains, writes its outputs, and the motion module it
saves loads through Load Motion Module as a v2 module that fits the experiment's image model."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "moving_mnist_experiment.py"


def _script():
    """The experiment script as a module (it is not a package member)."""
    spec = importlib.util.spec_from_file_location("moving_mnist_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_outputs_and_a_loadable_v2_module(comfy_host, tmp_path):
    """``--quick``: table, GIFs and a trained module that Load Motion Module reads back as v2 at our widths."""
    import folder_paths

    summary = _script().main(["--quick", "--out", str(tmp_path), "--gif-dir", str(tmp_path / "docs")])
    for name in ("real.gif", "image_model_alone.gif", "with_motion_module.gif", "results.md"):
        assert (tmp_path / "docs" / name).stat().st_size > 0, name
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"real clips (held out)", "image model alone", "image model + motion module"}
    assert results["real clips (held out)"]["identity"][0] == 1.0  # the measure recognises real clips
    assert "| image model + motion module |" in summary["table"]

    node = comfy_host.pack_node_classes()["KinemaLoadMotionModule"]  # the entrypoint registers the folder
    folder = Path(folder_paths.get_folder_paths("animatediff_models")[0])
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(summary["module"], folder / "mnist_quick_v2.safetensors")
    motion = node.execute(model_name="mnist_quick_v2.safetensors").args[0]
    assert (motion.spec.version, motion.spec.widths, motion.spec.has_mid_block, motion.spec.pe_length) == \
        ("v2", (32, 32, 64, 64), True, 32)
    trained = motion.patcher.model.state_dict()["down_blocks.0.motion_modules.0.temporal_transformer.proj_out.weight"]
    assert trained.abs().max() > 0, "the output projection starts at zero; training must have moved it"
    assert torch.isfinite(trained).all()
    comfy_host.unload_models()
