"""Full-size random models in real file layouts, built once per machine and cached by recipe.

- :func:`make_sd15_checkpoint`: a single-file SD1.5 checkpoint (``model.diffusion_model.*``,
  ``cond_stage_model.transformer.text_model.*``, ``first_stage_model.*``) that core's
  CheckpointLoaderSimple detects as SD15. Key names and shapes come from ComfyUI's own classes built
  on the meta device in a subprocess (so this process never imports ComfyUI for it); values are seeded
  random: LeCun-normal matrices (std = fan_in**-0.5), norm scales 1, biases 0, embeddings std 0.02.
- :func:`write_motion_module`: an AnimateDiff motion module (v1/v2/v3) in the official key layout,
  from ``motion_modules.model.MotionModel``: std-0.02 weights, norm scales 1, biases 0, sinusoid PE.

Both cache under ``$KINEMA_MODEL_CACHE`` (default ``~/.cache/kinema/models``), named by a hash of
the recipe, and place the result at the requested path as a hard link (symlink or copy as fallbacks).
There is no tiny SD1.5: ComfyUI only detects SD15 with model_channels 320 and context_dim 768, and
CLIP-L and the VAE have fixed sizes, so a "tiny" checkpoint would be another model type.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import torch

RECIPE_VERSION = 1  # bump when the init scheme or layout source changes
CACHE_DIR = Path(os.environ.get("KINEMA_MODEL_CACHE", Path.home() / ".cache" / "kinema" / "models"))
BUILD_TIMEOUT_S = 900
REPO_ROOT = Path(__file__).resolve().parents[1]

# SD1.5's UNet as in the original LDM v1-inference.yaml (ComfyUI converts it with model_detection.convert_config).
SD15_UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4],
    "num_heads": 8, "num_head_channels": -1, "use_spatial_transformer": True, "transformer_depth": 1,
    "context_dim": 768, "use_linear_in_transformer": False, "legacy": False, "adm_in_channels": None,
}
SD15_VAE = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}
MOTION_VERSIONS = {  # version -> (has_mid_block, pe_length)
    "v1": (False, 24),
    "v2": (True, 32),
    "v3": (False, 32),
    "animatelcm": (True, 64),  # AnimateLCM_sd15_t2v: v2's seats, PE 64, and no position tables in the file
}
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


# ---------------------------------------------------------------------------------------------------------
# cache


def _dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"``."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, but got {name}")
    return name


def _recipe_path(kind: str, recipe: dict, suffix: str) -> Path:
    """Cache path named by a hash of the recipe, e.g. ``sd15-3f2a…safetensors``."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return CACHE_DIR / f"{kind}-{digest}{suffix}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` so parallel sessions build a model only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(kind: str, recipe: dict, suffix: str, build: Callable[[Path], None]) -> Path:
    """The cached file for ``recipe``, calling ``build(tmp_path)`` under a lock when it is missing."""
    target = _recipe_path(kind, recipe, suffix)
    if target.is_file():
        return target
    with _locked(target):
        if not target.is_file():
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
            os.close(fd)
            try:
                build(Path(tmp))
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    return target


def place(src: Path, dst: Path) -> Path:
    """Put ``src`` at ``dst`` as a hard link, else a symlink, else a copy; replaces an existing ``dst``.

    The placed file shares the cache's bytes: never write into it (to corrupt a file, write a new one).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    for attempt in (os.link, os.symlink):
        try:
            attempt(src, dst)
            return dst
        except OSError:
            continue
    shutil.copyfile(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------------------
# random values


def _generator(seed: int, key: str) -> torch.Generator:
    """A generator seeded by ``seed`` and the key name, so every tensor is independent of build order."""
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63))


def _random_tensor(key: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int, std: float | None) -> torch.Tensor:
    """One tensor: norm scales 1, biases 0, matrices N(0, std) with std = fan_in**-0.5 when ``std`` is None."""
    if key.endswith("bias"):
        return torch.zeros(shape, dtype=dtype)
    if len(shape) <= 1:  # every 1-D weight in these models is a norm scale
        return torch.ones(shape, dtype=dtype)
    if std is None:
        std = 0.02 if "embedding" in key else math.prod(shape[1:]) ** -0.5
    return (torch.randn(shape, generator=_generator(seed, key)) * std).to(dtype)


# ---------------------------------------------------------------------------------------------------------
# SD1.5 checkpoint


def sd15_layout() -> dict[str, tuple[tuple[int, ...], str]]:
    """``{key: (shape, kind)}`` of a single-file SD1.5 checkpoint, from ComfyUI's classes on the meta device.

    Needs ComfyUI importable (run inside :func:`_build_sd15_main`). Checks that ComfyUI detects it as SD15.
    """
    import comfy.model_detection as detection
    import comfy.ops
    import comfy.sd1_clip
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ops = comfy.ops.disable_weight_init
    with torch.device("meta"):
        unet = UNetModel(**detection.convert_config(SD15_UNET), device="meta", operations=ops)
        clip = comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float32, model_options={"custom_operations": ops})
        vae = AutoencoderKL(ddconfig=SD15_VAE, embed_dim=4)
    layout = {f"model.diffusion_model.{k}": (tuple(v.shape), "float") for k, v in unet.state_dict().items()}
    for k, v in clip.transformer.state_dict().items():
        if k.startswith("text_model."):  # SD1.5 files hold no text_projection / logit_scale
            layout[f"cond_stage_model.transformer.{k}"] = (tuple(v.shape), "float")
    layout["cond_stage_model.transformer.text_model.embeddings.position_ids"] = ((1, 77), "position_ids")
    layout.update({f"first_stage_model.{k}": (tuple(v.shape), "float") for k, v in vae.state_dict().items()})

    meta_sd = {k: torch.empty(shape, device="meta") for k, (shape, _) in layout.items()}
    config = detection.model_config_from_unet(meta_sd, "model.diffusion_model.")
    if type(config).__name__ != "SD15":
        raise RuntimeError(f"ComfyUI detects the generated layout as {type(config).__name__}, not SD15")
    return layout


def _build_sd15(out: Path, dtype: torch.dtype, seed: int) -> None:
    """Write the random SD1.5 checkpoint to ``out`` (run with ComfyUI on sys.path)."""
    from safetensors.torch import save_file

    tensors = {}
    for key, (shape, kind) in sd15_layout().items():
        if kind == "position_ids":
            tensors[key] = torch.arange(shape[-1], dtype=torch.int64).reshape(shape)
        else:
            tensors[key] = _random_tensor(key, shape, dtype, seed, None)
    save_file(tensors, str(out), metadata={"kinema_random": json.dumps({"seed": seed, "dtype": str(dtype)})})


def _build_sd15_main(argv: list[str]) -> None:
    """Subprocess entry: ``_models.py sd15 --tree T --out P --dtype float16 --seed 0``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(argv)
    sys.path.insert(0, ns.tree)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    _build_sd15(Path(ns.out), DTYPES[ns.dtype], ns.seed)


def sd15_checkpoint(dtype: torch.dtype = torch.float16, *, seed: int = 0, tree: Path | None = None) -> Path:
    """The cached random SD1.5 checkpoint (built in a ComfyUI subprocess on first use, ~1 min)."""
    recipe = {"kind": "sd15", "v": RECIPE_VERSION, "dtype": _dtype_name(dtype), "seed": seed}

    def build(tmp: Path) -> None:
        host = tree
        if host is None:
            from _comfy import find_comfyui

            host, why = find_comfyui()
            if host is None:
                raise RuntimeError(f"cannot build the SD1.5 layout: {why}")
        cmd = [sys.executable, str(Path(__file__).resolve()), "sd15", "--tree", str(host), "--out", str(tmp),
               "--dtype", recipe["dtype"], "--seed", str(seed)]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(cmd, cwd=host, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"building the SD1.5 checkpoint failed ({proc.returncode}):\n{proc.stderr[-4000:]}")

    return _cached("sd15", recipe, ".safetensors", build)


def make_sd15_checkpoint(path: Path, dtype: torch.dtype = torch.float16, *, seed: int = 0,
                         tree: Path | None = None) -> Path:
    """Put a random full-size SD1.5 checkpoint at ``path`` (a .safetensors); returns ``path``."""
    return place(sd15_checkpoint(dtype, seed=seed, tree=tree), Path(path))


def sd15_controlnet_layout() -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of an SD1.5 ControlNet (``input_hint_block``, ``zero_convs``, ...), from core's class on the
    meta device. Needs ComfyUI imported in this process."""
    import comfy.cldm.cldm
    import comfy.model_detection as detection
    import comfy.ops

    config = detection.convert_config(SD15_UNET)
    config.pop("out_channels")
    with torch.device("meta"):
        net = comfy.cldm.cldm.ControlNet(hint_channels=3, device="meta", operations=comfy.ops.disable_weight_init,
                                         **config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def sd15_controlnet(dtype: torch.dtype = torch.float16, *, seed: int = 0) -> Path:
    """The cached random full-size SD1.5 ControlNet (.safetensors, ~0.7 GB in fp16; zero convs random too)."""
    recipe = {"kind": "sd15-controlnet", "v": RECIPE_VERSION, "dtype": _dtype_name(dtype), "seed": seed}

    def build(tmp: Path) -> None:
        layout = sd15_controlnet_layout()
        stream_safetensors(tmp, {k: (shape, dtype) for k, shape in layout.items()},
                           lambda k: _random_tensor(k, layout[k], dtype, seed, None))

    return _cached("sd15-controlnet", recipe, ".safetensors", build)


# ---------------------------------------------------------------------------------------------------------
# AnimateDiff v3 domain adapter

# v3_sd15_adapter.ckpt (guoyww/AnimateDiff): an image-model LoRA in diffusers' old attention-processor naming,
# read by animatediff/utils/convert_lora_safetensor_to_diffusers.py load_diffusers_lora (W += scale * up @ down,
# no alpha) and by CameraCtrl's tools/merge_lora2unet.py, which asserts a down/up pair for every to_q/to_k/to_v/
# to_out.0 weight of the SD1.5 UNet. 16 transformer blocks x 2 attentions x 4 projections = 128 pairs; at rank
# 128 in fp32 that is 102.0 MB = 97.3 MiB, the 97.4 MB the official README lists.
SD15_ATTENTION_SEATS = (  # (diffusers transformer prefix, width as a multiple of model_channels)
    *[(f"down_blocks.{i}.attentions.{j}", m) for i, m in enumerate((1, 2, 4)) for j in range(2)],
    ("mid_block.attentions.0", 4),
    *[(f"up_blocks.{i}.attentions.{j}", m) for i, m in zip((1, 2, 3), (4, 2, 1), strict=True) for j in range(3)],
)


def sd15_domain_adapter_layout(rank: int = 128, width: int = 320, context_dim: int = 768) -> dict[str, tuple[int, int]]:
    """``{key: shape}`` of v3_sd15_adapter.ckpt: ``…attn{1,2}.processor.to_{q,k,v,out}_lora.{down,up}.weight``.

    ``width``/``context_dim`` shrink it for a tiny UNet with SD1.5's block structure (names do not change).
    """
    layout = {}
    for seat, mult in SD15_ATTENTION_SEATS:
        c = width * mult
        for attn in ("attn1", "attn2"):
            kv_in = c if attn == "attn1" else context_dim  # attn2 keys/values read the text context
            for proj, fan_in in (("to_q", c), ("to_k", kv_in), ("to_v", kv_in), ("to_out", c)):
                stem = f"{seat}.transformer_blocks.0.{attn}.processor.{proj}_lora"
                layout[f"{stem}.down.weight"] = (rank, fan_in)
                layout[f"{stem}.up.weight"] = (c, rank)
    return layout


def sd15_domain_adapter(path: Path, rank: int = 128, *, width: int = 320, context_dim: int = 768,
                        dtype: torch.dtype = torch.float32, seed: int = 0, wrapped: bool = False) -> Path:
    """Write a random v3 domain adapter (a pickled state dict, like the official .ckpt) to ``path``.

    down ~ N(0, 1/fan_in), up ~ N(0, 0.01/rank): the delta is about a tenth of a LeCun-normal weight.
    ``wrapped`` nests it as ``{"state_dict": …, "animatediff_config": …}``, the training-save form the official
    loader also accepts (which one the released file uses is not public).
    """
    sd = {}
    for key, shape in sd15_domain_adapter_layout(rank, width, context_dim).items():
        std = shape[1] ** -0.5 if key.endswith(".down.weight") else 0.1 * rank ** -0.5
        sd[key] = _random_tensor(key, shape, dtype, seed, std)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "animatediff_config": "adapter"} if wrapped else sd, str(path))
    return Path(path)


# ---------------------------------------------------------------------------------------------------------
# motion modules


def motion_spec(version: str = "v2", widths: tuple[int, ...] = (320, 640, 1280, 1280), heads: int = 8) -> SimpleNamespace:
    """The layout of an official motion module: v1 = no mid, PE 24; v2 = mid, PE 32; v3 = no mid, PE 32."""
    if version not in MOTION_VERSIONS:
        raise ValueError(f"version must be one of {sorted(MOTION_VERSIONS)}, but got {version!r}")
    has_mid, pe_length = MOTION_VERSIONS[version]
    levels = len(widths)
    return SimpleNamespace(widths=tuple(widths), down_modules_per_level=(2,) * levels,
                           up_modules_per_level=(3,) * levels, has_mid_block=has_mid, pe_length=pe_length, heads=heads)


def _motion_model_class() -> type:
    """``MotionModel``, from the already imported pack (``kinema``) if any, else from the repo's ``motion_modules``."""
    pack = sys.modules.get("kinema.motion_modules.model")
    if pack is not None:
        return pack.MotionModel
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))  # appended: ComfyUI's tree (if any) stays ahead of the repo
    from motion_modules.model import MotionModel

    return MotionModel


def motion_state_dict(version: str = "v2", dtype: torch.dtype = torch.float16,
                      widths: tuple[int, ...] = (320, 640, 1280, 1280), *, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random motion-module state dict in the official key layout (``down_blocks.0.motion_modules.0...``)."""
    model_cls = _motion_model_class()
    sinusoid = sys.modules[model_cls.__module__].sinusoid
    with torch.device("meta"):
        model = model_cls(motion_spec(version, widths))
    out = {}
    for key, meta in model.state_dict().items():
        if key.endswith("pos_encoder.pe") and version == "animatelcm":
            continue
        if key.endswith("pos_encoder.pe"):  # (1, pe_length, channels)
            out[key] = sinusoid(meta.shape[1], meta.shape[2]).to(dtype)
        else:
            out[key] = _random_tensor(key, tuple(meta.shape), dtype, seed, 0.02)
    return out


def write_motion_module(path: Path, version: str = "v2", dtype: torch.dtype = torch.float16,
                        widths: tuple[int, ...] = (320, 640, 1280, 1280), *, seed: int = 0) -> Path:
    """Put a random motion module at ``path``: safetensors, or a torch pickle for .ckpt/.pt/.pth; returns ``path``."""
    path = Path(path)
    suffix = ".ckpt" if path.suffix in {".ckpt", ".pt", ".pth"} else ".safetensors"
    recipe = {"kind": "motion", "v": RECIPE_VERSION, "version": version, "dtype": _dtype_name(dtype),
              "widths": list(widths), "seed": seed, "format": suffix}
    motion_spec(version, widths)  # validate before building

    def build(tmp: Path) -> None:
        sd = motion_state_dict(version, dtype, widths, seed=seed)
        if suffix == ".ckpt":
            torch.save(sd, tmp)
        else:
            from safetensors.torch import save_file

            save_file(sd, str(tmp))

    return place(_cached(f"mm_{version}", recipe, suffix, build), path)


# ---------------------------------------------------------------------------------------------------------
# SDXL checkpoint and SDXL motion modules

# SDXL base 1.0's UNet as in sgm's sd_xl_base.yaml (ComfyUI converts it with model_detection.convert_config);
# its VAE has SD1.5's architecture.
SDXL_UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "attention_resolutions": [4, 2], "num_res_blocks": 2, "channel_mult": [1, 2, 4], "num_head_channels": 64,
    "use_spatial_transformer": True, "use_linear_in_transformer": True, "transformer_depth": [1, 2, 10],
    "context_dim": 2048, "adm_in_channels": 2816, "num_classes": "sequential", "legacy": False,
}
SDXL_WIDTHS = (320, 640, 1280)
SDXL_MOTION_LAYOUTS = {  # layout -> (MOTION_VERSIONS entry with its mid block and PE length, key renames)
    "sdxl-beta": ("v3", ()),  # mm_sdxl_v10_beta: no mid block, PE 32, official key names
    "hotshotxl": ("v1", ((".motion_modules.", ".temporal_attentions."), (".temporal_transformer.", "."),
                         ("pos_encoder.pe", "pos_encoder.positional_encoding"))),  # hsxl_temporal_layers: PE 24
}


def sdxl_layout() -> dict[str, tuple[tuple[int, ...], torch.Tensor | None]]:
    """``{key: (shape, fixed value or None)}`` of a single-file SDXL checkpoint, from ComfyUI's classes on the meta
    device and its own ``process_clip_state_dict_for_saving`` (CLIP-G in open_clip names). Checks it detects as SDXL.
    """
    import comfy.model_detection as detection
    import comfy.ops
    import comfy.sdxl_clip
    import comfy.supported_models
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ops = comfy.ops.disable_weight_init
    unet_config = detection.convert_config(SDXL_UNET)
    with torch.device("meta"):
        unet = UNetModel(**unet_config, device="meta", operations=ops)
        clip = comfy.sdxl_clip.SDXLClipModel(device="meta", dtype=torch.float32, model_options={"custom_operations": ops})
        vae = AutoencoderKL(ddconfig=SD15_VAE, embed_dim=4)
    clip_sd = comfy.supported_models.SDXL(unet_config).process_clip_state_dict_for_saving(clip.state_dict())
    layout = {f"model.diffusion_model.{k}": (tuple(v.shape), None) for k, v in unet.state_dict().items()}
    layout.update({k: (tuple(v.shape), None if v.is_meta else v.contiguous()) for k, v in clip_sd.items()})
    layout.update({f"first_stage_model.{k}": (tuple(v.shape), None) for k, v in vae.state_dict().items()})

    meta_sd = {k: torch.empty(shape, device="meta") for k, (shape, _) in layout.items()}
    config = detection.model_config_from_unet(meta_sd, "model.diffusion_model.")
    if type(config).__name__ != "SDXL":
        raise RuntimeError(f"ComfyUI detects the generated layout as {type(config).__name__}, not SDXL")
    return layout


SAFETENSORS_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.int64: "I64"}


def stream_safetensors(out: Path, entries: dict[str, tuple[tuple[int, ...], torch.dtype]],
                       make: Callable[[str], torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a .safetensors file one tensor at a time (``make(key)`` gives each), so memory holds one tensor, not all."""
    header, offset = {}, 0
    for key, (shape, dtype) in entries.items():
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[key] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(out, "wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        for key, (shape, dtype) in entries.items():
            tensor = make(key)
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise ValueError(f"{key}: made {tuple(tensor.shape)} {tensor.dtype}, expected {shape} {dtype}")
            handle.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-d too


def _build_sdxl(out: Path, dtype: torch.dtype, seed: int) -> None:
    """Write the random SDXL checkpoint to ``out`` (run with ComfyUI on sys.path), streaming ~7 GB in fp16."""
    layout = sdxl_layout()
    entries = {k: (shape, dtype if fixed is None else fixed.dtype) for k, (shape, fixed) in layout.items()}

    def make(key: str) -> torch.Tensor:
        shape, fixed = layout[key]
        return fixed if fixed is not None else _random_tensor(key, shape, dtype, seed, None)

    stream_safetensors(out, entries, make, {"kinema_random": json.dumps({"seed": seed, "dtype": str(dtype)})})


def _build_sdxl_main(argv: list[str]) -> None:
    """Subprocess entry: ``--tree T --out P --dtype float16 --seed 0`` (see :func:`sdxl_checkpoint`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(argv)
    sys.path.insert(0, ns.tree)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    _build_sdxl(Path(ns.out), DTYPES[ns.dtype], ns.seed)


def sdxl_checkpoint(dtype: torch.dtype = torch.float16, *, seed: int = 0, tree: Path | None = None) -> Path:
    """The cached random full-size SDXL checkpoint (~7 GB in fp16; built in a ComfyUI subprocess on first use)."""
    recipe = {"kind": "sdxl", "v": RECIPE_VERSION, "dtype": _dtype_name(dtype), "seed": seed}

    def build(tmp: Path) -> None:
        host = tree
        if host is None:
            from _comfy import find_comfyui

            host, why = find_comfyui()
            if host is None:
                raise RuntimeError(f"cannot build the SDXL layout: {why}")
        entry = "import sys; sys.path.insert(0, sys.argv[1]); import _models; _models._build_sdxl_main(sys.argv[2:])"
        cmd = [sys.executable, "-c", entry, str(Path(__file__).resolve().parent), "--tree", str(host),
               "--out", str(tmp), "--dtype", recipe["dtype"], "--seed", str(seed)]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(cmd, cwd=host, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"building the SDXL checkpoint failed ({proc.returncode}):\n{proc.stderr[-4000:]}")

    return _cached("sdxl", recipe, ".safetensors", build)


def write_sdxl_motion_module(path: Path, layout: str = "sdxl-beta", dtype: torch.dtype = torch.float16, *,
                             seed: int = 0) -> Path:
    """Put a random full-size SDXL motion module at ``path`` (.safetensors) in the key layout of ``layout``:
    ``sdxl-beta`` (mm_sdxl_v10_beta: official names, PE 32) or ``hotshotxl`` (hsxl_temporal_layers: PE 24)."""
    if layout not in SDXL_MOTION_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(SDXL_MOTION_LAYOUTS)}, but got {layout!r}")
    version, renames = SDXL_MOTION_LAYOUTS[layout]
    recipe = {"kind": "motion", "v": RECIPE_VERSION, "layout": layout, "dtype": _dtype_name(dtype), "seed": seed}

    def build(tmp: Path) -> None:
        from safetensors.torch import save_file

        sd = {}
        for key, tensor in motion_state_dict(version, dtype, SDXL_WIDTHS, seed=seed).items():
            for old, new in renames:
                key = key.replace(old, new)
            sd[key] = tensor
        save_file(sd, str(tmp))

    return place(_cached(f"mm_{layout}", recipe, ".safetensors", build), Path(path))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "sd15":
        sys.exit("usage: _models.py sd15 --tree TREE --out PATH [--dtype float16] [--seed 0]")
    started = time.perf_counter()
    _build_sd15_main(sys.argv[2:])
    print(f"built in {time.perf_counter() - started:.1f}s", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------
# SparseCtrl (AnimateDiff v3): v3_sd15_sparsectrl_rgb.ckpt / v3_sd15_sparsectrl_scribble.ckpt


def _sparsectrl_module():
    """``motion_modules.sparsectrl``, from the already imported pack (``kinema``) if any, else from the repo."""
    pack = sys.modules.get("kinema.motion_modules.sparsectrl")
    if pack is not None:
        return pack
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    import motion_modules.sparsectrl as module

    return module


def sparsectrl_state_dict(kind: str = "rgb", dtype: torch.dtype = torch.float16,
                          widths: tuple[int, ...] = (320, 640, 1280, 1280), context_dim: int = 768, *,
                          seed: int = 0) -> dict[str, torch.Tensor]:
    """A random SparseCtrl state dict in the official key layout and shapes (RGB: simplified embedding on 4 latent
    channels + mask; scribble: the hint stack on 3 pixel channels + mask), ``pos_encoder.pe`` tables stored.
    Zero convs are random too, so the encoder's output is not zero."""
    module = _sparsectrl_module()
    hint = () if kind == "rgb" else (16, 32, 96, 256)
    spec = module.SparseCtrlSpec(kind=kind, widths=tuple(widths), context_dim=context_dim,
                                 cond_channels=4 if kind == "rgb" else 3, hint_widths=hint)
    sinusoid = sys.modules[module.__name__.rsplit(".", 1)[0] + ".model"].sinusoid
    with torch.device("meta"):
        model = module.SparseCtrlEncoder(spec)
    out = {}
    for key, meta in model.state_dict().items():
        if key.endswith("pos_encoder.pe"):  # (1, 32, channels)
            out[key] = sinusoid(meta.shape[1], meta.shape[2]).to(dtype)
        else:
            std = 0.02 if ".motion_modules." in key else None
            out[key] = _random_tensor(key, tuple(meta.shape), dtype, seed, std)
    return out


def write_sparsectrl(path: Path, kind: str = "rgb", dtype: torch.dtype = torch.float16, *, seed: int = 0) -> Path:
    """Put a random full-size SparseCtrl (official ``v3_sd15_sparsectrl_{kind}.ckpt`` layout, a flat torch pickle
    for .ckpt/.pt/.pth, else safetensors) at ``path``; cached by recipe; returns ``path``."""
    path = Path(path)
    suffix = ".ckpt" if path.suffix in {".ckpt", ".pt", ".pth"} else ".safetensors"
    recipe = {"kind": "sparsectrl", "v": RECIPE_VERSION, "sparse": kind, "dtype": _dtype_name(dtype),
              "seed": seed, "format": suffix}

    def build(tmp: Path) -> None:
        sd = sparsectrl_state_dict(kind, dtype, seed=seed)
        if suffix == ".ckpt":
            torch.save(sd, tmp)
        else:
            from safetensors.torch import save_file

            save_file(sd, str(tmp))

    return place(_cached(f"sparsectrl_{kind}", recipe, suffix, build), path)
