"""V3 node classes; each execute() delegates to the glue."""
from .context import ContextScheduler
from .decode import DecodeFrames
from .lora import ApplyMotionLoRA
from .motion_module import ApplyMotionModule, LoadMotionModule
from .prompt_schedule import PromptSchedule
from .sample import SampleAnimation

NODES = [LoadMotionModule, ApplyMotionModule, ContextScheduler, SampleAnimation, ApplyMotionLoRA, DecodeFrames,
         PromptSchedule]
