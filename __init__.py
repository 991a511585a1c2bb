"""Kinema: AnimateDiff for ComfyUI. Entry point only.

ComfyUI calls ``comfy_entrypoint`` once at start-up; that registers our model folders and returns the
extension with its node list. Importing this package does nothing else (no ComfyUI import, no model
load, no network), so tools such as pytest can import it outside ComfyUI.
"""


async def comfy_entrypoint():
    """The V3 extension of this pack."""
    from .nodes.extension import KinemaExtension

    return KinemaExtension()
