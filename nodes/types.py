"""Custom socket types, declared once."""
from comfy_api.latest import io

MotionModule = io.Custom("KINEMA_MOTION_MODULE")
ContextOptions = io.Custom("KINEMA_CONTEXT_OPTIONS")
SparseCtrl = io.Custom("KINEMA_SPARSECTRL")
FreeInit = io.Custom("KINEMA_FREE_INIT")
LossMap = io.Custom("LOSS_MAP")  # core 0.8 / 0.3.64 Plot Loss Graph reads {"loss": [...]}
