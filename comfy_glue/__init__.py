"""The only code in the pack that imports ComfyUI: loading, injection, wrappers, context windows, LoRA."""
