"""V3 node classes; each execute() delegates to the glue."""
from .context import ContextScheduler
from .decode import DecodeFrames
from .lora import ApplyMotionLoRA
from .motion_module import ApplyMotionModule, LoadMotionModule
from .sample import SampleAnimation
from .train import TrainMotionLoRA

NODES = [LoadMotionModule, ApplyMotionModule, ContextScheduler, SampleAnimation, ApplyMotionLoRA, DecodeFrames, TrainMotionLoRA]
