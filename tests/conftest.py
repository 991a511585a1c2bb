"""Root conftest: the repo root on sys.path for core tests (``import motion_modules``, ``import sampling``),
and one header line naming the ComfyUI tree the host tier will use.

Nothing heavy here: core tests must run without ComfyUI. tests/host/conftest.py later moves the
ComfyUI tree ahead of the repo root, so ComfyUI's ``nodes`` wins over the pack's ``nodes/`` there.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
TOOLS = REPO_ROOT / "tools"  # what tests, bench and the main job share: _comfy, _server, _workflow, _models
if str(TOOLS) not in sys.path:
    sys.path.append(str(TOOLS))  # appended: a ComfyUI tree put first stays first


def _host_finder():
    """tools/_comfy.py (stdlib only), shared with the host conftest through sys.modules."""
    if "_comfy" in sys.modules:
        return sys.modules["_comfy"]
    spec = importlib.util.spec_from_file_location("_comfy", TOOLS / "_comfy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["_comfy"] = module
    spec.loader.exec_module(module)
    return module


def pytest_report_header(config) -> str:
    """E.g. ``ComfyUI: 0.3.64 at /root/comfy/ComfyUI (COMFYUI_PATH)``."""
    finder = _host_finder()
    tree, why = finder.find_comfyui()
    if tree is None:
        return f"ComfyUI: none ({why})"
    return f"ComfyUI: {finder.comfy_version(tree)} at {tree} ({why})"


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``fullsize`` run only when asked for (``-m fullsize`` or an expression naming it)."""
    import pytest

    if "fullsize" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="full-size check: run with -m fullsize")
    for item in items:
        if "fullsize" in item.keywords:
            item.add_marker(skip)
