"""V3 node classes; each execute() delegates to the glue."""
from .colour import KeyframeColourMatch
from .context import ContextScheduler
from .decode import DecodeFrames
from .freeinit import FreeInit
from .lora import ApplyMotionLoRA
from .motion_module import ApplyMotionModule, LoadMotionModule
from .prompt_schedule import PromptSchedule
from .sample import SampleAnimation
from .sparsectrl import ApplySparseCtrl, LoadSparseCtrl
from .train import TrainMotionLoRA

NODES = [LoadMotionModule, ApplyMotionModule, ContextScheduler, SampleAnimation, ApplyMotionLoRA, DecodeFrames,
         LoadSparseCtrl, ApplySparseCtrl, KeyframeColourMatch, FreeInit, TrainMotionLoRA, PromptSchedule]
