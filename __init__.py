"""Kinema: AnimateDiff for ComfyUI. Entry point only: the extension, its nodes, and our model folders."""
from comfy_api.latest import ComfyExtension, io

from .comfy_glue.loading import register_folders
from .nodes import NODES

register_folders()


class KinemaExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> KinemaExtension:
    return KinemaExtension()
