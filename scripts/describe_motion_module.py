"""Print what Kinema detects in motion-module files, without ComfyUI: python scripts/describe_motion_module.py FILE...

With --demo, writes a small random v2-layout module to a temp file first and describes that.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from motion_modules import (  # noqa: E402
    MotionModuleError,
    expected_shapes,
    load_motion_module,
    sinusoidal_pe,
    standard_spec,
)


def demo_file(folder: Path) -> Path:
    """A random v2-layout module at tiny widths (real key names and shapes), saved as fp16 safetensors."""
    spec = standard_spec("v2", widths=(32, 64, 128, 128))
    sd = {k: (sinusoidal_pe(s[1], s[2]) if k.endswith(".pe") else torch.randn(s) * 0.02).half()
          for k, s in expected_shapes(spec).items()}
    path = folder / "demo_v2_tiny.safetensors"
    save_file(sd, str(path))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--demo", action="store_true", help="describe a synthetic random module")
    args = parser.parse_args()
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files + ([demo_file(Path(tmp))] if args.demo or not args.files else [])
        for path in files:
            try:
                spec, _ = load_motion_module(path)
                print(f"{path.name}: {spec.describe()}")
            except MotionModuleError as error:
                print(f"{path.name}: {error}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
