"""Host tier: tests that need a real ComfyUI tree, in this process (``comfy_core``/``comfy_host``) or as a
server process (``comfy_server``).

Finding the tree: ``$COMFYUI_PATH``, else the ComfyUI enclosing this pack (``<tree>/custom_nodes/<pack>``),
else ``~/comfy/ComfyUI`` (see ``_comfy.find_comfyui``). Without one, every test here is skipped from one
place, so ``-ra`` prints a single line with the reason.

Import arrangement (why the pack's ``nodes/`` never shadows ComfyUI's ``nodes.py``):
1. When this conftest is imported (before any host test module), the tree is moved to ``sys.path[0]``,
   ahead of the repo root that ``python -m pytest`` or tests/conftest.py put there. Every top-level name
   both define (``nodes``, ``tests``) then resolves to ComfyUI's, and a ``nodes`` module already imported
   from anywhere else fails loudly (``_comfy.check_nodes_module``).
2. ``comfy_core`` imports ComfyUI with ``args.cpu = True`` (and ``args.base_directory`` = a temp dir)
   set before ``comfy.model_management``/``folder_paths``, then imports ComfyUI's ``nodes`` itself.
3. ``comfy_host`` then imports the repo root as the package ``kinema`` (spec_from_file_location with
   ``submodule_search_locations=[root]``, registered in sys.modules); the pack uses relative imports
   only, so its subpackages load as ``kinema.nodes``, ``kinema.comfy_glue``, ``kinema.motion_modules``.
   Host tests must use the ``kinema.*`` modules: a top-level ``motion_modules`` would be a second copy.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers import each other as top-level modules

import _comfy  # noqa: E402
from _comfy import ComfyInProcess, find_comfyui, import_comfy, import_pack  # noqa: E402
from _models import sd15_checkpoint  # noqa: E402
from _server import ComfyServer  # noqa: E402

HOST_DIR = Path(__file__).resolve().parent
TREE, WHY = find_comfyui()
SD15_NAME = "kinema-random-sd15.safetensors"

if TREE is not None:
    _comfy.put_tree_first(TREE)


def _is_host_item(item: pytest.Item) -> bool:
    return HOST_DIR in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/host with ``host``."""
    for item in items:
        if _is_host_item(item):
            item.add_marker(pytest.mark.host)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip host tests without a ComfyUI tree; raised here, so every skip reports this one location."""
    if TREE is None:
        pytest.skip(WHY)


@pytest.fixture(scope="session")
def comfy_tree() -> Path:
    """The ComfyUI tree under test."""
    return TREE


@pytest.fixture(scope="session")
def comfy_version() -> str:
    """The tree's ``__version__`` (e.g. "0.3.64")."""
    return _comfy.comfy_version(TREE)


@pytest.fixture(scope="session")
def comfy_core(tmp_path_factory: pytest.TempPathFactory) -> ComfyInProcess:
    """ComfyUI imported into this process on the CPU, models/ etc. in a temp dir; the pack is not imported.

    In-process models are tiny, where torch's thread pool costs more than it gains (about 5x on a busy
    2-core machine), so this process computes on one thread; server processes keep their own default.
    """
    import torch

    torch.set_num_threads(1)
    return import_comfy(TREE, tmp_path_factory.mktemp("comfy_base"))


@pytest.fixture(scope="session")
def comfy_host(comfy_core: ComfyInProcess) -> ComfyInProcess:
    """``comfy_core`` with the pack imported as package ``kinema`` (``comfy_host.kinema``); errors if it cannot be."""
    comfy_core.kinema = import_pack()
    return comfy_core


@pytest.fixture(scope="session")
def sd15_file() -> Path:
    """The cached random full-size SD1.5 checkpoint (fp16 .safetensors; built on first use per machine)."""
    return sd15_checkpoint(tree=TREE)


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory: pytest.TempPathFactory):
    """A running ComfyUI server (this tree, CPU, loopback) with the pack in custom_nodes; stopped at the end."""
    server = ComfyServer(TREE, tmp_path_factory.mktemp("comfy_server"))
    with server:
        yield server


@pytest.fixture(scope="session")
def server_sd15(comfy_server: ComfyServer, sd15_file: Path) -> str:
    """The random SD1.5 checkpoint placed in the server's models/checkpoints; its ``ckpt_name``."""
    return comfy_server.add_model("checkpoints", sd15_file, SD15_NAME)
