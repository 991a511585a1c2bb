"""Shared plumbing for the sampling benchmarks: ComfyUI in this process, models, step clocks, peak memory, output.

Not a benchmark itself. ComfyUI is imported through the shared tools (``tools/_comfy.py``), the pack
as package ``kinema``; the random full-size models come from ``tools/_models.py`` (cached per machine),
the tiny ones from ``tests/host/_tiny.py``. Everything the scripts write goes to a temp base directory
(models are hard links into the cache) or to ``bench/results/``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "tests" / "host"  # _tiny (tiny test models)
RESULTS = ROOT / "bench" / "results"
# appended: ComfyUI's tree goes first (put_tree_first), the repo's nodes/ never shadows it
sys.path += [str(ROOT / "tools"), str(HOST)]

import torch  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FILE_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
POSITIVE, NEGATIVE = "a red fox running through snow, film grain", "blurry, lowres"
log = logging.getLogger("bench")


# ---------------------------------------------------------------------------------------------------------
# command line


def common_args(parser: argparse.ArgumentParser, size: int, steps: int) -> argparse.ArgumentParser:
    """The options every sampling benchmark shares."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="UNet/motion compute dtype")
    parser.add_argument("--size", type=int, default=size, help="image side in px (latent = size / 8)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=steps, help="sampler steps per timed run (>= 3)")
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--scheduler", default="normal")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--comfy", type=Path, default=None, help="ComfyUI tree (default: as the host tests find it)")
    parser.add_argument("--pytorch-attention", action="store_true",
                        help="ComfyUI's --use-pytorch-cross-attention (its CPU default is sub-quadratic attention)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


def check_common(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject values the measurements cannot use; set the thread count."""
    if args.size < 8 or args.size % 64:
        parser.error(f"--size must be a positive multiple of 64 (latent divisible by 8), but got {args.size}")
    if args.steps < 3:
        parser.error(f"--steps must be at least 3 (per-step time uses steps 2..N), but got {args.steps}")
    if args.warmup < 1 or args.repeats < 1:
        parser.error(f"--warmup and --repeats must be at least 1, but got {args.warmup} and {args.repeats}")
    torch.set_num_threads(args.threads)


# ---------------------------------------------------------------------------------------------------------
# ComfyUI in this process


@dataclass
class Host:
    """ComfyUI (``env``: tools/_comfy.ComfyInProcess) and the pack (``kinema``) in this process."""

    env: object
    kinema: object
    device: torch.device
    base_dir: Path
    own_base: bool = True

    def glue(self, name: str):
        """``kinema.comfy_glue.<name>``."""
        return sys.modules.get(f"kinema.comfy_glue.{name}") or __import__(f"kinema.comfy_glue.{name}",
                                                                          fromlist=["_"])

    def cleanup(self) -> None:
        """Remove the temp base directory (models there are hard links: the cache stays)."""
        if self.own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def start_host(device: str, tree: Path | None = None, pytorch_attention: bool = False) -> Host:
    """Import ComfyUI for ``device`` (CPU: ``args.cpu``) with a temp base directory, then the pack."""
    import _comfy

    tree = tree.resolve() if tree is not None else _comfy.find_comfyui()[0]
    if tree is None:
        sys.exit(f"no ComfyUI: {_comfy.find_comfyui()[1]}")
    base = Path(tempfile.mkdtemp(prefix="kinema-bench-"))
    dev = torch.device(device)
    _comfy.put_tree_first(tree)
    import comfy.cli_args

    comfy.cli_args.args.use_pytorch_cross_attention = pytorch_attention  # read when model_management is imported
    if dev.type == "cpu":
        env = _comfy.import_comfy(tree, base)
    else:  # import_comfy pins the CPU; on a GPU only the base directory is set
        comfy.cli_args.args.base_directory = str(base)
        import comfy.model_management  # noqa: F401
        import folder_paths

        import nodes

        env = _comfy.ComfyInProcess(tree=tree, version=_comfy.comfy_version(tree),
                                    base_dir=Path(folder_paths.base_path), nodes=nodes)
    kinema = _comfy.import_pack()
    return Host(env, kinema, dev, base)


def attention_backend() -> str:
    """Name of the function ComfyUI's ``optimized_attention`` dispatches to (e.g. attention_pytorch)."""
    import comfy.ldm.modules.attention as attention

    fn = attention.optimized_attention
    return getattr(fn, "__wrapped__", fn).__name__


def full_checkpoint_path() -> Path:
    """The cached random full-size SD1.5 checkpoint (fp16 safetensors, real single-file layout)."""
    from _models import sd15_checkpoint

    return sd15_checkpoint(torch.float16)


def load_full_sd15(dtype: torch.dtype):
    """(MODEL, CLIP, VAE) from the random full-size SD1.5 checkpoint through core's checkpoint loader."""
    import comfy.sd

    out = comfy.sd.load_checkpoint_guess_config(str(full_checkpoint_path()), output_vae=True, output_clip=True,
                                                model_options={"dtype": dtype})
    return out[0], out[1], out[2]


def load_full_sdxl(dtype: torch.dtype):
    """(MODEL, CLIP, VAE) from the random full-size SDXL checkpoint (~7 GB, cached) through core's loader."""
    import comfy.sd
    from _models import sdxl_checkpoint

    out = comfy.sd.load_checkpoint_guess_config(str(sdxl_checkpoint(torch.float16)), output_vae=True,
                                                output_clip=True, model_options={"dtype": dtype})
    return out[0], out[1], out[2]


def release_freed() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``), so RSS figures start from what is live."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def encode(clip, text: str) -> list:
    """CLIPTextEncode: a CONDITIONING value for ``text``."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def place_motion_file(host: Host, file_dtype: str, name: str = "mm_sd_v15_v2.safetensors") -> Path:
    """The random full-size v2 module (real key layout) placed in ``<base>/models/animatediff_models/``."""
    from _models import write_motion_module

    target = host.env.models_dir / "animatediff_models" / name
    return write_motion_module(target, "v2", FILE_DTYPES[file_dtype])


def place_sdxl_motion_file(host: Host, name: str = "mm_sdxl_v10_beta.safetensors") -> Path:
    """The random full-size AnimateDiff-SDXL beta module (real key layout, fp16) in ``animatediff_models/``."""
    from _models import write_sdxl_motion_module

    return write_sdxl_motion_module(host.env.models_dir / "animatediff_models" / name, "sdxl-beta")


def load_full_motion(host: Host, path: Path):
    """Our loader (Load Motion Module's path): a LoadedMotionModule from a file."""
    return host.glue("loading").load_from_path(str(path), path.name)


def tiny_models(seed: int = 0):
    """(MODEL, MOTION_MODULE, positive, negative) tiny SD1.5-shaped, random, on the CPU."""
    from _tiny import conditioning, loaded_motion, motion_state_dict, tiny_sd15_patcher
    from kinema.motion_modules import standard_spec

    spec = standard_spec("v2", widths=(32, 64, 128, 128))
    motion = loaded_motion(spec, motion_state_dict(spec, seed))
    return tiny_sd15_patcher(seed=seed), motion, conditioning(0), conditioning(1)


def tiny_sdxl_models(seed: int = 0):
    """(MODEL, MOTION_MODULE, positive, negative) tiny SDXL-shaped, random, on the CPU."""
    from _tiny import TINY_WIDTH, loaded_motion, motion_state_dict, sdxl_conditioning, tiny_sdxl_patcher
    from kinema.motion_modules import standard_spec

    spec = standard_spec("sdxl-beta", widths=(TINY_WIDTH, 2 * TINY_WIDTH, 4 * TINY_WIDTH))
    motion = loaded_motion(spec, motion_state_dict(spec, seed))
    return tiny_sdxl_patcher(seed=seed), motion, sdxl_conditioning(0), sdxl_conditioning(1)


def sigmas_for(model, scheduler: str, steps: int) -> torch.Tensor:
    """The sigmas ComfyUI's KSampler uses for ``model`` (its model_sampling object patches included)."""
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


# ---------------------------------------------------------------------------------------------------------
# timing


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepClock:
    """Timestamps taken in the sampler's per-step callback; per-step time = (t_N - t_1) / (N - 1).

    Step 1 (and everything before it: model loading, patching, wrapper setup) is excluded, so what is left
    is the steady per-step cost of the model calls (one CFG batch each) plus the sampler's own arithmetic.
    """

    device: torch.device
    stamps: list[float] = field(default_factory=list)

    def comfy_callback(self, step, x0, x, total_steps) -> None:
        """``comfy.sample.sample(callback=...)`` signature."""
        synchronize(self.device)
        self.stamps.append(time.perf_counter())

    def diffusers_callback(self, pipe, step, timestep, kwargs: dict) -> dict:
        """``callback_on_step_end`` signature."""
        synchronize(self.device)
        self.stamps.append(time.perf_counter())
        return kwargs

    def per_step(self) -> float:
        if len(self.stamps) < 2:
            raise RuntimeError(f"the sampler reported {len(self.stamps)} steps; need at least 2 to time one")
        return (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)


def summary(runs: list[float]) -> dict:
    """Median, min, max and relative spread ((max - min) / median) of repeated timings."""
    med = statistics.median(runs)
    return {"median_s": med, "min_s": min(runs), "max_s": max(runs), "spread": (max(runs) - min(runs)) / med,
            "runs_s": runs}


def interleaved(runs: dict, warmup: int, repeats: int) -> dict[str, dict]:
    """Run each ``name -> fn() -> seconds`` ``warmup`` times, then ``repeats`` times in rotating order."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            log.info("warm-up %s", name)
            runs[name]()
    done: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            done[name].append(runs[name]())
            log.info("repeat %d %s: %.4f s/step", r + 1, name, done[name][-1])
    return {n: summary(t) for n, t in done.items()}


# ---------------------------------------------------------------------------------------------------------
# memory


def rss_kib(field_name: str = "VmRSS") -> int:
    """A VmRSS / VmHWM figure of this process in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


class PeakMemory:
    """Extra memory a block needs at its peak: CUDA allocator stats, or the RSS high-water mark on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mib = 0.0
        self.base_mib = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:  # writing 5 resets VmHWM to the current RSS (Linux >= 4.0)
                Path("/proc/self/clear_refs").write_text("5")
                self.base = rss_kib("VmRSS") * 1024
            except OSError:
                self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.base_mib = self.base / 2**20
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            try:
                peak = rss_kib("VmHWM") * 1024
            except (OSError, KeyError):
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.mib = (peak - self.base) / 2**20


# ---------------------------------------------------------------------------------------------------------
# output


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages."""
    return list(os.getloadavg())


def environment(args: argparse.Namespace, host: Host | None) -> dict:
    """Versions, machine and load, for the JSON record."""
    import diffusers

    device = torch.device(args.device)
    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
            "comfyui": host.env.version if host else None, "comfyui_tree": str(host.env.tree) if host else None,
            "machine": torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "load_average": load_average(),
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_record(args: argparse.Namespace, name: str, record: dict) -> Path:
    """Write ``record`` as JSON to ``args.out`` and say where."""
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"{name}-{args.device.replace(':', '')}-{args.dtype}-{args.size}px-{stamp}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def quiet_logs(verbose: bool) -> None:
    """INFO for the bench's own progress on stderr; ComfyUI's loaders at WARNING unless verbose."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)


def motion_attention_backend(host: Host) -> str:
    """The attention function the pack's motion modules call on this device (``comfy_glue.attention.backend``)."""
    attention = host.glue("attention")
    if attention.backend(host.device.type, {}) is attention.Backend.SDPA:
        return "model.sdpa_attention"
    return f"optimized_attention ({attention_backend()})"
