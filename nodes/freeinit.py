"""FreeInit: re-initialise the noise's low frequencies from a first pass, for a more consistent clip."""
from __future__ import annotations

from comfy_api.latest import io

from ..sampling.freeinit import FreeInitError, FreeInitFilter, FreeInitOptions
from .motion_module import CATEGORY
from .types import FreeInit as FreeInitSocket


class FreeInit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="KinemaFreeInit",
            display_name="FreeInit",
            category=CATEGORY,
            description="FreeInit (Wu et al. 2023): samples the clip, re-noises the result, keeps its low "
                        "frequencies and takes the high ones from fresh noise, then samples again. Each "
                        "iteration costs one full sampling run. Connect to Sample Animation or Apply Motion Module.",
            inputs=[
                io.Int.Input("iterations", default=2, min=1, max=10,
                             tooltip="Sampling runs in all; 1 = plain sampling, each more costs one more run."),
                io.Combo.Input("filter_type", options=[f.value for f in FreeInitFilter],
                               default=FreeInitFilter.BUTTERWORTH.value,
                               tooltip="Low-pass filter over frames, height and width: butterworth (smooth, "
                                       "the paper's default), gaussian (smoothest), ideal or box (hard cut)."),
                io.Float.Input("spatial_stop", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="d_s: normalised stop frequency over height and width; higher keeps "
                                       "more of the first pass's layout."),
                io.Float.Input("temporal_stop", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="d_t: normalised stop frequency over frames; higher keeps more of the "
                                       "first pass's motion."),
                io.Int.Input("butterworth_order", default=4, min=1, max=16,
                             tooltip="Butterworth filter only: higher is closer to ideal, lower to gaussian."),
                io.Boolean.Input("fix_noise", default=False,
                                 tooltip="Take the high frequencies from the initial noise every iteration "
                                         "instead of fresh noise (fresh noise is seeded from the seed)."),
            ],
            outputs=[FreeInitSocket.Output(display_name="FREE_INIT")],
        )

    @classmethod
    def validate_inputs(cls, iterations: int, spatial_stop: float, temporal_stop: float,
                        butterworth_order: int, **kwargs) -> bool | str:
        try:
            FreeInitOptions(iterations, spatial_stop=spatial_stop, temporal_stop=temporal_stop,
                            order=butterworth_order)
        except FreeInitError as error:
            return str(error)
        return True

    @classmethod
    def execute(cls, iterations: int, filter_type: str, spatial_stop: float, temporal_stop: float,
                butterworth_order: int, fix_noise: bool) -> io.NodeOutput:
        return io.NodeOutput(FreeInitOptions(iterations, FreeInitFilter(filter_type), spatial_stop, temporal_stop,
                                             butterworth_order, fix_noise))
