"""V3 node classes; each execute() delegates to the glue."""
from .motion_module import ApplyMotionModule, LoadMotionModule
from .context import ContextScheduler
from .sample import SampleAnimation
from .lora import ApplyMotionLoRA

NODES = [LoadMotionModule, ApplyMotionModule, ContextScheduler, SampleAnimation, ApplyMotionLoRA]
