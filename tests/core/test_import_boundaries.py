"""The core (motion_modules/, sampling/) never imports ComfyUI or the pack's glue; checked by parsing, not importing."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_PACKAGES = ("motion_modules", "sampling")
HOST_MODULES = frozenset(
    {"comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "server", "execution", "latent_preview"}
)
DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


def _relative_target(package: tuple[str, ...], level: int, module: str | None) -> tuple[str, ...] | None:
    """Absolute dotted parts of a relative import made from ``package``; None if it climbs above the pack."""
    if level - 1 > len(package):
        return None
    base = package[: len(package) - (level - 1)]
    return base + tuple(module.split(".")) if module else base


def _violations_in_from(node: ast.ImportFrom, package: tuple[str, ...]) -> list[str]:
    """Forbidden targets of one ``from … import …`` statement."""
    if node.level == 0:
        top = (node.module or "").split(".")[0]
        return [node.module] if top in HOST_MODULES else []
    target = _relative_target(package, node.level, node.module)
    if target is None:
        return ["." * node.level + (node.module or "") + " (above the pack root)"]
    # `from .. import x` names modules in `names`; otherwise the module itself decides.
    heads = [target[0]] if target else [alias.name.split(".")[0] for alias in node.names]
    return ["." * node.level + (node.module or "") for head in heads if head not in CORE_PACKAGES]


def _dynamic_target(node: ast.Call) -> str | None:
    """The string passed to importlib.import_module / __import__, if it is a literal."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in DYNAMIC_IMPORTERS and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return None


def forbidden_imports(source: str, package: tuple[str, ...]) -> list[str]:
    """Every import in ``source`` (a module inside ``package``) that reaches ComfyUI or leaves the core."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] in HOST_MODULES]
        elif isinstance(node, ast.ImportFrom):
            found += _violations_in_from(node, package)
        elif isinstance(node, ast.Call):
            target = _dynamic_target(node)
            if target and target.split(".")[0] in HOST_MODULES:
                found.append(target)
    return found


def _core_files() -> list[Path]:
    """Every .py file under the core packages."""
    return sorted(p for name in CORE_PACKAGES if (ROOT / name).is_dir() for p in (ROOT / name).rglob("*.py"))


def _package_of(path: Path) -> tuple[str, ...]:
    """Dotted package parts of a file relative to the pack root (``motion_modules/a/b.py`` -> motion_modules.a)."""
    return path.relative_to(ROOT).parent.parts


def test_core_imports_nothing_from_comfyui_or_the_glue():
    """No file under motion_modules/ or sampling/ imports a ComfyUI module or the pack's glue."""
    files = _core_files()
    assert ROOT / "motion_modules" / "model.py" in files  # the scan is not vacuous
    offenders = {str(p.relative_to(ROOT)): forbidden_imports(p.read_text(), _package_of(p)) for p in files}
    assert {path: bad for path, bad in offenders.items() if bad} == {}


@pytest.mark.parametrize("snippet", [
    "import comfy.model_management",
    "import torch, folder_paths",
    "from comfy_api.latest import io",
    "from comfy_extras import nodes_context_windows",
    "import latent_preview as lp",
    "def load():\n    from server import PromptServer",
    "try:\n    import execution\nexcept ImportError:\n    pass",
    "from nodes import MAX_RESOLUTION",
    "from .. import nodes",
    "from ..nodes.loaders import load_motion_model",
    "from ..comfy_glue import injection",
    "from ... import anything",
    "import importlib\nimportlib.import_module('comfy.ops')",
    "__import__('comfy_api')",
])
def test_detects_violating_snippet(snippet):
    """Each forbidden import form, written inside motion_modules/, is reported."""
    assert forbidden_imports(snippet, ("motion_modules",)) != []


@pytest.mark.parametrize("snippet", [
    "import torch\nimport torch.nn.functional as F",
    "from einops import rearrange",
    "from .model import MotionModel",
    "from . import model",
    "from ..sampling.schedules import uniform",
    "from .. import sampling",
    "import nodes_helper\nimport comfyish",
    "from motion_modules.model import sinusoid",
])
def test_allows_clean_snippet(snippet):
    """Plain torch, relative imports within the core and look-alike names are not reported."""
    assert forbidden_imports(snippet, ("motion_modules",)) == []
