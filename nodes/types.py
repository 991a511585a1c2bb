"""Custom socket types, declared once."""
from comfy_api.latest import io

MotionModule = io.Custom("MOTION_MODULE")
ContextOptions = io.Custom("CONTEXT_OPTIONS")
