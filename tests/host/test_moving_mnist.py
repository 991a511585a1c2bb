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
    held_out = summary["held_out_v_loss"]  # the paired comparison: same clips, noise and timesteps
    assert set(held_out) == {"image model alone", "image model + motion module"}
    assert all(len(v) == 5 and all(0 < x < 10 for x in v) for v in held_out.values())
    assert held_out["image model alone"] != held_out["image model + motion module"], "the module changes nothing"

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


def test_training_target_matches_the_samplers_prediction_type(comfy_host):
    """The v target ``ddpm_loss`` trains on is what ComfyUI's sampler decodes: the exact target gives x0 back."""
    from importlib import import_module

    models = import_module("kinema.train.models")
    patcher = models.image_model(32, 0)
    sampling = patcher.get_model_object("model_sampling")
    abar = models.alphas_cumprod(patcher)
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(2, 4, 4, 4, generator=gen) * 2 - 1, torch.randn(2, 4, 4, 4, generator=gen)
    t = 600
    xt = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * noise

    class Exact(torch.nn.Module):
        """A UNet stand-in that knows x0: from the noised input it returns √ᾱ ε - √(1-ᾱ) x0 exactly."""

        def forward(self, x, timesteps, context=None, transformer_options=None):
            eps = (x - abar[t].sqrt() * x0) / (1 - abar[t]).sqrt()
            return abar[t].sqrt() * eps - (1 - abar[t]).sqrt() * x0

    loss = models.ddpm_loss(Exact(), x0, abar, torch.Generator().manual_seed(0), timestep=t)
    sigma = sampling.sigmas[t].expand(2)
    denoised = sampling.calculate_denoised(sigma, Exact()(xt, None), x0 + sigma.view(-1, 1, 1, 1) * noise)
    assert float(loss) < 1e-8
    torch.testing.assert_close(denoised, x0, atol=1e-4, rtol=0)
