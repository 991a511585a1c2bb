"""Run an example workflow on a real, headless ComfyUI server and copy the animation it saves.

Uses the real model files of the ComfyUI found when it has them (a checkpoint in models/checkpoints and a
motion module in models/animatediff_models); otherwise makes random-weight stand-ins in the real layouts
(full-size SD1.5 checkpoint, full-size v2 motion module) and says so loudly.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))  # shared with the tests: ComfyUI finder, server, workflows, stand-ins

from _comfy import comfy_version, find_comfyui  # noqa: E402
from _models import sd15_checkpoint, write_motion_module  # noqa: E402
from _server import ComfyServer  # noqa: E402
from _workflow import load_workflow, workflow_to_prompt  # noqa: E402

log = logging.getLogger("run_example")
CKPT_EXT = (".safetensors", ".ckpt")
BANNER = "=" * 78


def real_file(folder: Path) -> Path | None:
    """The first model file in ``folder``, if any."""
    files = sorted(p for p in folder.glob("*") if p.suffix in CKPT_EXT) if folder.is_dir() else []
    return files[0] if files else None


def pick_models(tree: Path, tmp: Path) -> tuple[Path, Path, bool]:
    """(checkpoint, motion module, stand_ins?) — real files from the tree when both exist."""
    ckpt, motion = real_file(tree / "models" / "checkpoints"), real_file(tree / "models" / "animatediff_models")
    if ckpt and motion:
        return ckpt, motion, False
    print(f"{BANNER}\nNO REAL MODEL FILES FOUND in {tree / 'models'}: using RANDOM-WEIGHT STAND-INS\n"
          "(full-size SD1.5 checkpoint + full-size AnimateDiff v2 motion module, real key layouts).\n"
          "Every node, patch and sampler runs for real, but the frames will look like noise.\n"
          f"Put a checkpoint in models/checkpoints and a motion module in models/animatediff_models for real output.\n{BANNER}",
          flush=True)
    return sd15_checkpoint(tree=tree), write_motion_module(tmp / "kinema-random-v2.safetensors", "v2"), True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflow", default="text_to_video_16_frames", help="name in example_workflows/")
    parser.add_argument("--size", type=int, default=None, help="width=height in px (stand-ins default: 64)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (stand-ins default: 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "output", help="where to copy the animation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    tree, why = find_comfyui()
    if tree is None:
        print(f"run_example: {why}", file=sys.stderr)
        return 2
    print(f"ComfyUI {comfy_version(tree)} at {tree}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kinema-example-") as tmp:
        tmp = Path(tmp)
        ckpt, motion, stand_ins = pick_models(tree, tmp)
        size = args.size or (64 if stand_ins else None)
        steps = args.steps or (2 if stand_ins else None)
        with ComfyServer(tree, tmp / "base") as server:
            overrides = {"CheckpointLoaderSimple": {"ckpt_name": server.add_model("checkpoints", ckpt)},
                         "KinemaLoadMotionModule": {"model_name": server.add_model("animatediff_models", motion)}}
            if size:
                overrides["EmptyLatentImage"] = {"width": size, "height": size}
            if steps:
                overrides["KinemaSampleAnimation"] = {"steps": steps}
            workflow = load_workflow(ROOT / "example_workflows" / f"{args.workflow}.json")
            prompt = workflow_to_prompt(workflow, server.object_info(), overrides)
            print(f"running {args.workflow} (size {size or 'as saved'}, steps {steps or 'as saved'}) …", flush=True)
            entry = server.run(prompt, timeout=6 * 3600)
            args.out.mkdir(parents=True, exist_ok=True)
            for path in server.output_files(entry):
                shutil.copy(path, args.out / path.name)
                print(f"wrote {args.out / path.name}" + ("  (random stand-in weights)" if stand_ins else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
