"""The ComfyExtension that lists our nodes."""
from comfy_api.latest import ComfyExtension, io

from ..comfy_glue.loading import register_folders
from . import NODES


class KinemaExtension(ComfyExtension):
    def __init__(self):
        register_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
