"""Find a ComfyUI tree and import it (and the pack, as package ``kinema``) into this process.

Stdlib only at import time; ComfyUI and torch are imported lazily by :func:`import_comfy`.
Run as a script to print the tree the host tier would use (``python tools/_comfy.py``), or with
``--all`` every tree scripts/run_tests.sh tests by default.
"""
from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "kinema"
DEFAULT_TREE = Path.home() / "comfy" / "ComfyUI"
SECOND_TREE = Path.home() / "comfy" / "ComfyUI-0.8"  # the newer host this pack is also tested on
NO_COMFY_REASON = "no ComfyUI found: set COMFYUI_PATH or unpack one at ~/comfy/ComfyUI"


def is_comfy_tree(path: Path) -> bool:
    """A ComfyUI tree has main.py and comfy/model_patcher.py."""
    return (path / "main.py").is_file() and (path / "comfy" / "model_patcher.py").is_file()


def find_comfyui() -> tuple[Path | None, str]:
    """The tree to test against and where it came from, or ``(None, why not)``.

    Order: ``$COMFYUI_PATH``, the ComfyUI enclosing this pack (``<tree>/custom_nodes/<pack>``),
    ``~/comfy/ComfyUI``. A set but invalid ``$COMFYUI_PATH`` is not silently replaced by a fallback.
    """
    env = os.environ.get("COMFYUI_PATH", "").strip()
    if env:
        tree = Path(env).expanduser().resolve()
        if is_comfy_tree(tree):
            return tree, "COMFYUI_PATH"
        return None, f"COMFYUI_PATH={env} is not a ComfyUI tree (needs main.py and comfy/model_patcher.py)"
    if REPO_ROOT.parent.name == "custom_nodes" and is_comfy_tree(REPO_ROOT.parent.parent):
        return REPO_ROOT.parent.parent, "enclosing ComfyUI"
    if is_comfy_tree(DEFAULT_TREE):
        return DEFAULT_TREE.resolve(), "~/comfy/ComfyUI"
    return None, NO_COMFY_REASON


def find_all_comfyui() -> tuple[list[Path], str]:
    """Every tree to test by default: the one :func:`find_comfyui` picks, plus ``~/comfy/ComfyUI-0.8``
    when neither ``$COMFYUI_PATH`` nor an enclosing ComfyUI chose the tree."""
    tree, why = find_comfyui()
    if tree is not None and why != "~/comfy/ComfyUI":
        return [tree], why
    trees = [tree] if tree is not None else []
    if not os.environ.get("COMFYUI_PATH", "").strip() and is_comfy_tree(SECOND_TREE):
        trees.append(SECOND_TREE.resolve())
    return trees, why if trees else NO_COMFY_REASON


def comfy_version(tree: Path) -> str:
    """``__version__`` from the tree's comfyui_version.py, read as text (no import)."""
    try:
        text = (tree / "comfyui_version.py").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return match.group(1) if match else "unknown"


def put_tree_first(tree: Path) -> None:
    """Make ``tree`` sys.path[0] so its top-level names (``nodes``, ``utils``, ...) win over the repo's.

    Raises if a foreign ``nodes`` module was already imported: it would shadow ComfyUI's for good.
    """
    entry = str(tree)
    while entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    check_nodes_module(tree)


def check_nodes_module(tree: Path) -> None:
    """Fail loudly if ``sys.modules['nodes']`` exists and is not ``<tree>/nodes.py``."""
    mod = sys.modules.get("nodes")
    if mod is None:
        return
    origin = Path(getattr(mod, "__file__", "") or "").resolve()
    if origin != (tree / "nodes.py").resolve():
        raise RuntimeError(
            f"the top-level module 'nodes' was imported from {origin}, not from ComfyUI's {tree / 'nodes.py'}; "
            "the pack must only be imported as package 'kinema' (relative imports) in host tests"
        )


@dataclass
class ComfyInProcess:
    """ComfyUI imported into this process on the CPU, with models/ etc. under ``base_dir``."""

    tree: Path
    version: str
    base_dir: Path
    nodes: ModuleType  # ComfyUI's nodes.py
    kinema: ModuleType | None = None  # the pack, once imported
    _extras_loaded: bool = field(default=False, repr=False)

    @property
    def models_dir(self) -> Path:
        """``<base_dir>/models``; put checkpoints in ``models_dir / "checkpoints"`` etc."""
        return self.base_dir / "models"

    def load_extra_nodes(self) -> None:
        """Register the core ``comfy_extras`` nodes (context windows, ...) once; no custom or API nodes."""
        if self._extras_loaded:
            return
        failed = asyncio.run(self.nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        self._extras_loaded = True
        if failed:
            import logging

            logging.getLogger(__name__).warning("comfy_extras that failed to import: %s", failed)

    def unload_models(self) -> None:
        """Drop every model ComfyUI's model management holds, so a session does not accumulate them."""
        import comfy.model_management as mm

        mm.unload_all_models()
        mm.soft_empty_cache()

    def pack_node_classes(self) -> dict[str, type]:
        """``{node_id: class}`` from the pack's ``comfy_entrypoint`` (requires :attr:`kinema`)."""
        if self.kinema is None:
            raise RuntimeError("the pack is not imported; use the comfy_host fixture")
        extension = self.kinema.comfy_entrypoint()
        if inspect.isawaitable(extension):
            extension = asyncio.run(extension)
        node_list = asyncio.run(extension.get_node_list())
        return {cls.GET_SCHEMA().node_id: cls for cls in node_list}


def import_comfy(tree: Path, base_dir: Path) -> ComfyInProcess:
    """Import ComfyUI from ``tree`` for CPU use: tree first on sys.path, ``args.cpu`` set before model_management.

    ``args.base_directory`` points folder_paths at ``base_dir`` so nothing is written into the tree.
    Importing twice in one process returns the first import's modules.
    """
    put_tree_first(tree)
    import comfy.cli_args

    args = comfy.cli_args.args
    if "comfy.model_management" not in sys.modules:
        args.cpu = True
    if "folder_paths" not in sys.modules:
        args.base_directory = str(base_dir)
    import comfy.model_management as mm

    if mm.cpu_state != mm.CPUState.CPU:
        raise RuntimeError("comfy.model_management was imported before args.cpu was set; it is not on the CPU")
    import folder_paths

    import nodes  # ComfyUI's nodes.py: put_tree_first made the tree sys.path[0]

    check_nodes_module(tree)
    real_base = Path(folder_paths.base_path)
    return ComfyInProcess(tree=tree, version=comfy_version(tree), base_dir=real_base, nodes=nodes)


def import_pack(root: Path = REPO_ROOT, name: str = PACK_NAME) -> ModuleType:
    """Import the repo root as package ``name`` (its ``__init__.py``, subpackages via relative imports).

    Raises FileNotFoundError if the pack has no ``__init__.py``; a failed import leaves nothing in sys.modules.
    """
    if name in sys.modules:
        return sys.modules[name]
    init = root / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"the pack has no entry point at {init}")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        raise
    return module


if __name__ == "__main__":
    found, why = find_all_comfyui() if "--all" in sys.argv[1:] else find_comfyui()
    found = found if isinstance(found, list) else [found] if found else []
    if not found:
        print(why, file=sys.stderr)
        sys.exit(1)
    print("\n".join(str(tree) for tree in found))
