"""Tiny SD1.5-shaped ComfyUI models with random weights, built in-process for fast host tests."""
from __future__ import annotations

import torch

TINY_WIDTH = 32  # model_channels; levels 32/64/128/128 (GroupNorm(32) and 8 heads still fit)
TINY_CONTEXT = 32


def tiny_unet_config(width: int = TINY_WIDTH, context_dim: int = TINY_CONTEXT) -> dict:
    """An SD1.5 UNet config (ComfyUI naming) shrunk to ``width`` channels."""
    return {
        "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "num_classes": None, "adm_in_channels": None, "in_channels": 4,
        "model_channels": width, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
        "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
        # ComfyUI pops this list from the end while building output_blocks 0..11 (model_detection's SD15 order):
        # no attention in output_blocks 0-2 (the deepest up level), one transformer in 3-11.
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "use_linear_in_transformer": False, "context_dim": context_dim, "num_heads": 8,
        "num_head_channels": -1, "use_temporal_resblock": False, "use_temporal_attention": False,
    }


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Fill every parameter with seeded small normals (norm weights around 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * std
            if name.endswith("weight") and p.ndim == 1:
                noise += 1.0
            p.copy_(noise.to(p.dtype))
    return module


def randomize_fan_in(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded weights ~ N(0, 1/fan_in), norm scales 1 ± 0.1, biases ~ N(0, 0.1²): activations stay O(1) at any size."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim > 1:
                noise /= (p.numel() // p.shape[0]) ** 0.5
            else:
                noise = noise * 0.1 + (1.0 if name.endswith("weight") else 0.0)
            p.copy_(noise.to(p.dtype))
    return module


def sd15_patcher(unet_config: dict, seed: int = 0, init=randomize):
    """A ModelPatcher around an SD1.5 BaseModel built from ``unet_config`` on the CPU, weights set by ``init``."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SD15(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.BaseModel(config, device="cpu")
    init(model.diffusion_model, seed)
    model.diffusion_model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


def tiny_sd15_patcher(seed: int = 0, width: int = TINY_WIDTH):
    """A ModelPatcher around a random tiny SD1.5 BaseModel on the CPU (eps prediction)."""
    return sd15_patcher(tiny_unet_config(width), seed)


def motion_state_dict(spec, seed: int = 0) -> dict:
    """Random original-layout motion weights for ``spec`` (fan-in scaled as ``randomize_fan_in``); PE = the sinusoid."""
    from importlib import import_module

    mm = import_module("kinema.motion_modules")
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in mm.expected_shapes(spec).items():
        if key.endswith("pos_encoder.pe"):
            sd[key] = mm.sinusoidal_pe(shape[1], shape[2])
            continue
        noise = torch.randn(shape, generator=g)
        if len(shape) > 1:
            sd[key] = noise / shape[-1] ** 0.5
        else:
            sd[key] = noise * 0.1 + (1.0 if "norm" in key and key.endswith("weight") else 0.0)
    return sd


def loaded_motion(spec, state_dict: dict, name: str = "random.safetensors"):
    """A LoadedMotionModule (the MOTION_MODULE socket value) holding ``state_dict``, on the CPU."""
    from importlib import import_module

    import comfy.model_patcher

    loading = import_module("kinema.comfy_glue.loading")
    model = loading.build_motion_model(spec, state_dict)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    channels = {n: model.get_submodule(n).temporal_transformer.proj_in.in_features for n in model.module_names()}
    return loading.LoadedMotionModule(patcher, spec, name, channels)


def tiny_controlnet(seed: int = 0, width: int = TINY_WIDTH):
    """Core's ``comfy.controlnet.ControlNet`` around a tiny SD1.5 ControlNet loaded from a random state dict
    (zero convs included, so it steers), on the CPU."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.ops

    config = tiny_unet_config(width)
    config.pop("out_channels")
    config.update(hint_channels=3, dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init)
    net = comfy.cldm.cldm.ControlNet(**config)
    comfy.controlnet.controlnet_load_state_dict(net, randomize(comfy.cldm.cldm.ControlNet(**config), seed).state_dict())
    net.eval()
    return comfy.controlnet.ControlNet(net, load_device=torch.device("cpu"), manual_cast_dtype=None)


def conditioning(frames_seed: int = 0, tokens: int = 7, dim: int = TINY_CONTEXT) -> list:
    """A ComfyUI CONDITIONING value with one random text embedding."""
    g = torch.Generator().manual_seed(frames_seed)
    return [[torch.randn(1, tokens, dim, generator=g), {}]]


# ---- SDXL ---------------------------------------------------------------------------------------------------

TINY_POOLED = 32  # pooled text embedding width of the tiny SDXL (CLIP-G's is 1280)
SDXL_SIZE_EMBEDS = 6 * 256  # SDXL.encode_adm: height, width, crop_h, crop_w, target h/w, each a 256-wide sinusoid


def tiny_sdxl_unet_config(width: int = TINY_WIDTH, context_dim: int = TINY_CONTEXT, pooled_dim: int = TINY_POOLED,
                          head_channels: int = 16) -> dict:
    """An SDXL UNet config (ComfyUI naming) shrunk to ``width`` channels: three levels, no attention on the
    first, transformer depth 2 then 10 (10 in the middle), linear projections, ADM input."""
    return {
        "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "num_classes": "sequential", "adm_in_channels": pooled_dim + SDXL_SIZE_EMBEDS,
        "in_channels": 4, "model_channels": width, "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4],
        "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_middle": 10,
        # popped from the end while building output_blocks 0..8 (deepest up level first): 10, 10, 10, 2, 2, 2, 0, 0, 0
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
        "use_linear_in_transformer": True, "context_dim": context_dim, "num_heads": -1,
        "num_head_channels": head_channels, "use_temporal_resblock": False, "use_temporal_attention": False,
    }


def sdxl_patcher(unet_config: dict, seed: int = 0, init=randomize):
    """A ModelPatcher around an SDXL BaseModel (eps) built from ``unet_config`` on the CPU, weights set by ``init``."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SDXL(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.SDXL(config, model_type=comfy.model_base.ModelType.EPS, device="cpu")
    init(model.diffusion_model, seed)
    model.diffusion_model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


def tiny_sdxl_patcher(seed: int = 0, width: int = TINY_WIDTH, init=randomize):
    """A ModelPatcher around a random tiny SDXL BaseModel on the CPU (eps prediction)."""
    return sdxl_patcher(tiny_sdxl_unet_config(width), seed, init)


def sdxl_conditioning(seed: int = 0, tokens: int = 7, dim: int = TINY_CONTEXT, pooled_dim: int = TINY_POOLED,
                      size: tuple[int, int] = (128, 96)) -> list:
    """An SDXL CONDITIONING value: a random text embedding plus what CLIPTextEncodeSDXL adds (pooled, sizes)."""
    g = torch.Generator().manual_seed(seed)
    width, height = size
    return [[torch.randn(1, tokens, dim, generator=g),
             {"pooled_output": torch.randn(1, pooled_dim, generator=g), "width": width, "height": height,
              "crop_w": 0, "crop_h": 0, "target_width": width, "target_height": height}]]
