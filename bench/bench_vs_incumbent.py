"""Ours vs AnimateDiff-Evolved vs diffusers vs plain ComfyUI: 16 frames, same weights, same noise, same sampler.

One process holds all four, built from the random full-size SD1.5 checkpoint (core's checkpoint loader) and one
random full-size v2 motion-module file in the official key layout:

- ``plain``: core sampling of the 16 latents as separate images (P0, no motion module);
- ``ours``: the pack's Load Motion Module loader + ``attach`` (the Apply Motion Module node's glue);
- ``evolved``: AnimateDiff-Evolved from the snapshot at ``--evolved-git`` (a bare git dir), unpacked at run time
  into a temp ``custom_nodes`` dir, imported with ComfyUI's ``nodes.load_custom_node``, and used through its
  nodes ADE_LoadAnimateDiffModel -> ADE_ApplyAnimateDiffModelSimple -> ADE_UseEvolvedSampling;
- ``diffusers``: the full ``AnimateDiffPipeline`` (UNetMotionModel; prompt embeddings passed in). Its UNet and
  VAE tensors are ComfyUI's own, converted with diffusers' LDM key maps and assigned without copying; its
  motion weights come from the same module file through diffusers' single-file converter
  (``convert_animatediff_checkpoint_to_diffusers``, what ``MotionAdapter.from_single_file`` runs), offline;
  its scheduler is EulerDiscreteScheduler given ComfyUI's sigmas for the same step count.

The three ComfyUI runs call ``comfy.sample.sample`` (what core's KSampler node calls) with a step callback. Time
per step = (t_N - t_1) / (N - 1) from per-step callback timestamps (step 1 and setup excluded); repeats are
interleaved (the order rotates). Peak memory per phase (sampling, VAE decode) is measured for each in its own
child process. Parity: PSNR of the decoded frames (each decoded by its own VAE) against ours.

    python bench/bench_vs_incumbent.py                                     # CPU, fp32, 64 px
    python bench/bench_vs_incumbent.py --device cuda --dtype fp16 --size 512 --warmup 2 --repeats 5
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
import torch  # noqa: E402

EVOLVED_GIT = Path("/work/.mirror/Kosinkadink+ComfyUI-AnimateDiff-Evolved/repo")
EVOLVED_NODES = ("ADE_LoadAnimateDiffModel", "ADE_ApplyAnimateDiffModelSimple", "ADE_UseEvolvedSampling")
IMPLS = ("plain", "ours", "evolved", "diffusers")
MOTION_NAME = "mm_sd_v15_v2.safetensors"
SD15_UNET_CONFIG = {  # diffusers' UNet2DConditionModel config of SD1.5 (runwayml/stable-diffusion-v1-5)
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False, "flip_sin_to_cos": True,
    "freq_shift": 0, "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2, "downsample_padding": 1, "mid_block_scale_factor": 1, "act_fn": "silu",
    "norm_num_groups": 32, "norm_eps": 1e-5, "cross_attention_dim": 768, "attention_head_dim": 8,
}
SD15_VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
    "act_fn": "silu", "latent_channels": 4, "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215,
}
V2_ADAPTER_CONFIG = {"_class_name": "MotionAdapter", "block_out_channels": [320, 640, 1280, 1280],
                     "motion_layers_per_block": 2, "motion_mid_block_layers_per_block": 1,
                     "motion_num_attention_heads": 8, "motion_norm_num_groups": 32, "motion_max_seq_length": 32,
                     "use_motion_mid_block": True}


# ---------------------------------------------------------------------------------------------------------
# the four implementations


class Failed:
    """An implementation that could not be built or run: the stage and the exact error."""

    def __init__(self, stage: str, error: BaseException | str, logs: list[str] | None = None):
        self.stage = stage
        self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.traceback = "" if isinstance(error, str) else "".join(traceback.format_exception(error))[-3000:]
        self.logs = logs or []

    def as_dict(self) -> dict:
        return {"failed": True, "stage": self.stage, "error": self.error, "traceback": self.traceback,
                "logs": self.logs[-5:]}


class LogCapture(logging.Handler):
    """Collect WARNING+ records (ComfyUI logs a failed custom-node import instead of raising)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def node(host: h.Host, node_id: str, **inputs):
    """Run a V1 node's function by id (what the executor does) and return its outputs."""
    cls = host.env.nodes.NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)(**inputs)


def import_evolved(host: h.Host, git_dir: Path):
    """Unpack the snapshot into <base>/custom_nodes and import it as ComfyUI does; Failed on any error."""
    target = host.base_dir / "custom_nodes" / "ComfyUI-AnimateDiff-Evolved"
    if (git_dir / "__init__.py").is_file():  # an unpacked tree (the GPU suite carries one)
        shutil.copytree(git_dir, target)
        commit = (git_dir / "COMMIT").read_text().strip() if (git_dir / "COMMIT").is_file() else "unpacked tree"
    else:
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(f"git --git-dir='{git_dir}' archive HEAD | tar -x -C '{target}'", shell=True,
                                 capture_output=True, text=True)
        if archive.returncode:
            return Failed("unpack", archive.stderr.strip() or f"git archive exit {archive.returncode}")
        commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    capture = LogCapture()
    logging.getLogger().addHandler(capture)
    try:
        ok = asyncio.run(host.env.nodes.load_custom_node(str(target), module_parent="custom_nodes"))
    except Exception as error:  # noqa: BLE001 - recorded as a finding
        return Failed("import", error, capture.lines)
    finally:
        logging.getLogger().removeHandler(capture)
    missing = [n for n in EVOLVED_NODES if n not in host.env.nodes.NODE_CLASS_MAPPINGS]
    if not ok or missing:
        return Failed("import", f"load_custom_node returned {ok}; missing nodes {missing}", capture.lines)
    return commit


def evolved_model(host: h.Host, base):
    """ADE_LoadAnimateDiffModel -> ADE_ApplyAnimateDiffModelSimple -> ADE_UseEvolvedSampling on ``base``;
    returns (MODEL, beta schedule, the loaded motion model)."""
    load, apply, use = EVOLVED_NODES
    cls = host.env.nodes.NODE_CLASS_MAPPINGS[use]
    beta = cls.INPUT_TYPES()["required"]["beta_schedule"][1]["default"]
    motion = node(host, load, model_name=MOTION_NAME)[0]
    m_models = node(host, apply, motion_model=motion)[0]
    return node(host, use, model=base, beta_schedule=beta, m_models=m_models)[0], beta, motion.model


def evolved_motion_attention() -> str:
    """The attention function Evolved's motion modules call (its own backend pick in utils_motion)."""
    for name, module in sys.modules.items():
        if name.endswith("animatediff.utils_motion") and hasattr(module, "optimized_attention_mm"):
            return module.optimized_attention_mm.__name__
    return "unknown"


class FixedSigmasEuler:
    """Factory for an EulerDiscreteScheduler that takes its sigmas from ComfyUI's scheduler for the same steps."""

    @staticmethod
    def make(model_sampling, scheduler_name: str):
        import comfy.samplers
        from diffusers import EulerDiscreteScheduler

        class Scheduler(EulerDiscreteScheduler):
            def set_timesteps(self, num_inference_steps=None, device=None, **kw):
                sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler_name, num_inference_steps)
                super().set_timesteps(device=device, sigmas=sigmas.cpu().tolist())

        # AnimateDiff's betas ("linear" in diffusers = ComfyUI's sqrt_linear); "leading" makes
        # init_noise_sigma = sqrt(sigma_max^2 + 1), ComfyUI's noise scaling at full denoise
        return Scheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                         timestep_spacing="leading", steps_offset=1, prediction_type="epsilon")


def _assign(module_cls, config: dict, state: dict):
    """``module_cls(**config)`` built on the meta device, then given ``state``'s tensors without copying."""
    with torch.device("meta"):
        model = module_cls(**config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise RuntimeError(f"{module_cls.__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def diffusers_pipeline(host: h.Host, base, vae, motion_path: Path, args, shared_motion: dict | None = None):
    """AnimateDiffPipeline sharing ComfyUI's UNet and VAE tensors, its motion weights read from the module file
    (or, to save memory, Evolved's tensors of the same file in ``shared_motion``)."""
    from diffusers import (
        AnimateDiffPipeline,
        AutoencoderKL,
        MotionAdapter,
        UNet2DConditionModel,
        UNetMotionModel,
    )
    from diffusers.loaders import single_file_utils as sfu
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    unet_sd = {f"model.diffusion_model.{k}": v for k, v in base.model.diffusion_model.state_dict().items()}
    state = sfu.convert_ldm_unet_checkpoint(unet_sd, SD15_UNET_CONFIG)
    state |= motion_state(motion_path if shared_motion is None else shared_motion, h.DTYPES[args.dtype])
    with torch.device("meta"):
        adapter = MotionAdapter(**{k: v for k, v in V2_ADAPTER_CONFIG.items() if not k.startswith("_")})
        motion_unet = UNetMotionModel.from_unet2d(UNet2DConditionModel(**SD15_UNET_CONFIG), adapter,
                                                  load_weights=False)
    missing, unexpected = motion_unet.load_state_dict(state, strict=False, assign=True)
    del state
    fill_pe_buffers(motion_unet)
    if unexpected or [k for k in missing if not k.endswith("pos_embed.pe")]:
        raise RuntimeError(f"UNetMotionModel: missing {missing[:5]}, unexpected {unexpected[:5]}")
    vae_state = sfu.convert_ldm_vae_checkpoint(vae.first_stage_model.state_dict(), SD15_VAE_CONFIG)
    dvae = _assign(AutoencoderKL, SD15_VAE_CONFIG, vae_state)
    pipe = AnimateDiffPipeline(vae=dvae, text_encoder=None, tokenizer=None, unet=motion_unet.eval(),
                               motion_adapter=None, scheduler=FixedSigmasEuler.make(ours_sampling(host, base),
                                                                                    args.scheduler))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=args.device, dtype=h.DTYPES[args.dtype])


def motion_state(source: Path | dict, dtype: torch.dtype) -> dict:
    """The module file (or an original-layout state dict) through diffusers' own single-file conversion, what
    MotionAdapter.from_single_file calls. Without accelerate, from_single_file first random-initialises all
    453M parameters and then copies; this gives the same tensors without that transient copy.
    """
    import comfy.utils
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    raw = source if isinstance(source, dict) else comfy.utils.load_torch_file(str(source), safe_load=True)
    return {k: v.to(dtype) for k, v in convert_animatediff_checkpoint_to_diffusers(raw).items()}


def fill_pe_buffers(model) -> None:
    """diffusers recomputes the sinusoid PE instead of loading it: build the tables left on the meta device."""
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding

    for module in model.modules():
        if isinstance(module, SinusoidalPositionalEmbedding) and module.pe.is_meta:
            module.pe = SinusoidalPositionalEmbedding(module.pe.shape[2], module.pe.shape[1]).pe
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"UNetMotionModel: tensors left without values: {left[:5]}")


def ours_sampling(host: h.Host, base):
    """The model_sampling (noise schedule) ours samples with: the v2 module's own, AnimateDiff's betas."""
    from kinema.motion_modules import standard_spec

    schedule = host.glue("schedule")
    return schedule.motion_model_sampling(base, standard_spec("v2"), schedule.BetaSchedule.AUTO.value)


def diffusers_attention(pipe) -> str:
    """Processor classes of a spatial and a motion attention in the diffusers UNet."""
    procs = pipe.unet.attn_processors
    spatial = next(v for k, v in procs.items() if "attentions" in k and "motion" not in k)
    motion = next(v for k, v in procs.items() if "motion_modules" in k)
    return f"spatial {type(spatial).__name__}, motion {type(motion).__name__}"


# ---------------------------------------------------------------------------------------------------------
# running


class Bench:
    """Everything built once: conditioning, noise, the four models, and their runners."""

    def __init__(self, host: h.Host, args, only: tuple[str, ...] = IMPLS):
        self.host, self.args, self.device = host, args, torch.device(args.device)
        self.base, clip, self.vae = h.load_full_sd15(h.DTYPES[args.dtype])
        self.positive, self.negative = h.encode(clip, h.POSITIVE), h.encode(clip, h.NEGATIVE)
        del clip
        h.release_freed()
        self.motion_path = h.place_motion_file(host, args.mm_dtype, MOTION_NAME)
        side = args.size // 8
        self.latent = torch.zeros(args.frames, 4, side, side)
        import comfy.sample

        self.noise = comfy.sample.prepare_noise(self.latent, args.seed)
        self.models: dict[str, object] = {}
        self.info: dict[str, dict] = {}
        self.evolved_motion = None
        for impl in only:
            self._build(impl)

    def _build(self, impl: str) -> None:
        """Build one implementation; a Failed stands in when it cannot be built."""
        started = time.perf_counter()
        try:
            if impl == "plain":
                self.models[impl] = self.base
                self.info[impl] = {}
            elif impl == "ours":
                motion = h.load_full_motion(self.host, self.motion_path)
                self.models[impl] = self.host.glue("attach").attach(self.base, motion)
                self.info[impl] = {"motion_weight_dtype": str(next(motion.patcher.model.parameters()).dtype),
                                   "beta_schedule": "auto (motion module's)"}
            elif impl == "evolved":
                commit = import_evolved(self.host, self.args.evolved_git)
                if isinstance(commit, Failed):
                    self.models[impl] = commit
                    return
                model, beta, self.evolved_motion = evolved_model(self.host, self.base)
                self.models[impl] = model
                self.info[impl] = {"commit": commit, "beta_schedule": beta,
                                   "motion_attention": evolved_motion_attention()}
            elif impl == "diffusers":
                share = self.args.diffusers_motion_from == "evolved" and self.evolved_motion is not None
                pipe = diffusers_pipeline(self.host, self.base, self.vae, self.motion_path, self.args,
                                          self.evolved_motion.state_dict() if share else None)
                self.models[impl] = pipe
                self.info[impl] = {"attention": diffusers_attention(pipe), "what": "AnimateDiffPipeline (full)",
                                   "motion_weights": "Evolved's tensors of the same file (shared)" if share
                                   else "read from the module file"}
        except Exception as error:  # noqa: BLE001 - recorded as a finding, the others go on
            self.models[impl] = Failed("build", error)
            h.log.warning("%s could not be built: %s", impl, self.models[impl].error)
        h.release_freed()
        self.info.setdefault(impl, {})["build_s"] = time.perf_counter() - started
        self.info[impl]["rss_after_build_mib"] = h.rss_kib() / 1024 if self.device.type == "cpu" else None

    def sample(self, impl: str, steps: int | None = None) -> tuple[float | None, torch.Tensor]:
        """One sampling run: (seconds per step or None if fewer than 3 steps, latent (f, 4, h, w) on CPU)."""
        steps = steps or self.args.steps
        clock = h.StepClock(self.device)
        model = self.models[impl]
        if impl == "diffusers":
            out = model(num_frames=self.args.frames, height=self.args.size, width=self.args.size,
                        num_inference_steps=steps, guidance_scale=self.args.cfg,
                        latents=self.noise.transpose(0, 1).unsqueeze(0).to(self.device, h.DTYPES[self.args.dtype]),
                        prompt_embeds=self.positive[0][0].to(self.device), output_type="latent",
                        negative_prompt_embeds=self.negative[0][0].to(self.device),
                        callback_on_step_end=clock.diffusers_callback).frames
            # b c f h w -> f c h w, and from the UNet's space to ComfyUI's (VAE) latent space
            latent = out[0].transpose(0, 1).float().cpu() / model.vae.config.scaling_factor
        else:
            import comfy.sample

            latent = comfy.sample.sample(model, self.noise, steps, self.args.cfg, self.args.sampler,
                                         self.args.scheduler, self.positive, self.negative, self.latent,
                                         callback=clock.comfy_callback, disable_pbar=True, seed=self.args.seed)
            latent = latent.float().cpu()
        return (clock.per_step() if len(clock.stamps) >= 2 else None), latent

    def release(self) -> None:
        """Drop every model this bench holds and let ComfyUI unload them."""
        import comfy.model_management as mm

        self.models.clear()
        self.base = self.vae = self.evolved_motion = None
        mm.unload_all_models()
        h.release_freed()

    def decode(self, impl: str, latent: torch.Tensor) -> torch.Tensor:
        """Frames (f, H, W, 3) in [0, 1] decoded by the implementation's own VAE."""
        if impl == "diffusers":
            pipe = self.models[impl]
            with torch.inference_mode():
                unet_space = latent * pipe.vae.config.scaling_factor  # decode_latents divides by it again
                video = pipe.decode_latents(unet_space.transpose(0, 1).unsqueeze(0).to(self.device, pipe.vae.dtype),
                                            decode_chunk_size=self.args.frames)  # (1, 3, f, H, W) in [-1, 1]
            return ((video[0].permute(1, 2, 3, 0).float().cpu() + 1) / 2).clamp(0, 1)
        if impl == "ours":  # the pack's Decode Frames node
            return self.host.glue("decode").decode_frames(self.vae, latent, self.args.decode_batch).float().cpu()
        return self.vae.decode(latent).float().cpu()  # (f, H, W, 3): core's VAE Decode


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two image batches in [0, 1]."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def per_frame_norm(pipe) -> list:
    """Make diffusers' motion-module input GroupNorm run per frame, as the official modules (undo: call result)."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    undo = []
    for module in pipe.unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            norm = module.norm

            def forward(x, _norm=norm):
                b, c, f, hh, ww = x.shape  # b c f h w -> (b f) c h w -> b c f h w
                y = torch.nn.functional.group_norm(x.transpose(1, 2).reshape(b * f, c, hh, ww), _norm.num_groups,
                                                   _norm.weight, _norm.bias, _norm.eps)
                return y.reshape(b, f, c, hh, ww).transpose(1, 2)

            norm.forward = forward
            undo.append(norm)
    return undo


def parity(bench: Bench, outputs: dict[str, torch.Tensor]) -> dict:
    """PSNR of each implementation's decoded frames against ours, and latent differences."""
    ok = {k: v for k, v in outputs.items() if k != "plain"}
    if "ours" not in ok:
        return {"error": "ours did not run"}
    frames = {impl: bench.decode(impl, latent) for impl, latent in ok.items()}
    result = {}
    for impl in ok:
        if impl == "ours":
            continue
        result[impl] = {"psnr_db_vs_ours": psnr(frames[impl], frames["ours"]),
                        "latent_max_abs_diff": (ok[impl] - ok["ours"]).abs().max().item(),
                        "latent_rel_l2": ((ok[impl] - ok["ours"]).norm() / ok["ours"].norm()).item()}
    if "diffusers" in ok:  # the one known, by-design difference; measured with the norm made per frame
        undo = per_frame_norm(bench.models["diffusers"])
        _, latent = bench.sample("diffusers")
        for norm in undo:
            del norm.forward
        result["diffusers_per_frame_norm"] = {
            "psnr_db_vs_ours": psnr(bench.decode("diffusers", latent), frames["ours"]),
            "latent_max_abs_diff": (latent - ok["ours"]).abs().max().item(),
            "latent_rel_l2": ((latent - ok["ours"]).norm() / ok["ours"].norm()).item()}
    return result


def timed(bench: Bench, impl: str, outputs: dict) -> float:
    """One timed run; keeps the output for parity."""
    seconds, outputs[impl] = bench.sample(impl)
    return seconds


def memory_worker(args) -> dict:
    """In a fresh process: peak extra memory of sampling and of VAE decode for ``args.worker``."""
    host = h.start_host(args.device, args.comfy, args.pytorch_attention)
    try:
        bench = Bench(host, args, only=(args.worker,))
        if isinstance(bench.models[args.worker], Failed):
            return bench.models[args.worker].as_dict()
        bench.sample(args.worker, steps=1)  # loads, one-time allocations
        device = torch.device(args.device)
        with h.PeakMemory(device) as sampling:
            _, latent = bench.sample(args.worker, steps=2)
        bench.decode(args.worker, latent[:1])  # loads the VAE: its one-time cost is not the decode's peak
        start = time.perf_counter()
        with h.PeakMemory(device) as decoding:
            bench.decode(args.worker, latent)
        return {"sampling_peak_extra_mib": sampling.mib, "decode_peak_extra_mib": decoding.mib,
                "rss_before_sampling_mib": sampling.base_mib, "decode_s": time.perf_counter() - start}
    finally:
        host.cleanup()


def memory(args) -> dict:
    """One child process per implementation."""
    out = {}
    for impl in args.impls:
        argv = [sys.executable, __file__, "--worker", impl, "--device", args.device, "--dtype", args.dtype,
                "--size", str(args.size), "--frames", str(args.frames), "--steps", str(args.steps),
                "--threads", str(args.threads), "--mm-dtype", args.mm_dtype, "--evolved-git", str(args.evolved_git),
                "--decode-batch", str(args.decode_batch)]
        argv += ["--comfy", str(args.comfy)] if args.comfy else []
        argv += ["--pytorch-attention"] if args.pytorch_attention else []
        h.log.info("memory child: %s", impl)
        done = subprocess.run(argv, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        out[impl] = json.loads(lines[-1]) if done.returncode == 0 and lines else {
            "failed": True, "stage": "memory child", "error": done.stderr.strip().splitlines()[-1:]}
    return out


# ---------------------------------------------------------------------------------------------------------
# report


def _mib(figures: dict, key: str) -> str:
    """A MiB figure from a memory child, or why there is none."""
    value = figures.get(key)
    return f"{value:.0f}" if isinstance(value, (int, float)) else "-"


def report(args, r: dict) -> None:
    """Setup line, the comparison table, ratios, parity."""
    print(f"16 frames · random full-size SD1.5 + random full-size v2 module ({args.mm_dtype} file) · {args.size} px "
          f"({args.size // 8}x{args.size // 8} latent) · {args.sampler}/{args.scheduler} cfg {args.cfg} · "
          f"{args.device} {args.dtype} · {h.torch.get_num_threads()} threads · ComfyUI {r['environment']['comfyui']} "
          f"· load {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}")
    rows = []
    for impl in args.impls:
        t, m, info = r["timings"].get(impl), r["memory"].get(impl, {}), r["info"].get(impl, {})
        failed = r["failures"].get(impl)
        attention = {"plain": r["attention_backend"], "ours": f"{r['attention_backend']} (UNet), {r.get('motion_attention', '?')} (motion)",
                     "evolved": f"{r['attention_backend']} (UNet), {info.get('motion_attention', '?')} (motion)",
                     "diffusers": info.get("attention", "?")}[impl]
        if failed:
            rows.append([impl, "FAILED", "-", "-", "-", "-", f"{failed['stage']}: {failed['error'][:160]}"])
            continue
        rows.append([impl, 1e3 * t["median_s"], f"{100 * t['spread']:.1f}%",
                     ", ".join(f"{1e3 * s:.0f}" for s in t["runs_s"]), _mib(m, "sampling_peak_extra_mib"),
                     _mib(m, "decode_peak_extra_mib"), attention])
    print(h.table(["impl", "ms/step (median)", "spread", "runs ms/step", "sampling peak +MiB", "decode peak +MiB",
                   "attention"], rows))
    print()
    for name, value in r["ratios"].items():
        print(f"ratio {name}: {value:.3f}" if isinstance(value, float) else f"ratio {name}: {value}")
    if r.get("parity"):
        print("\nparity vs ours (same noise, same sigmas; frames decoded by each one's own VAE)")
        print(h.table(["impl", "PSNR dB", "latent max |diff|", "latent rel L2"],
                      [[k, v["psnr_db_vs_ours"], v["latent_max_abs_diff"], v["latent_rel_l2"]]
                       for k, v in r["parity"].items() if isinstance(v, dict)]))


def main() -> None:
    parser = h.common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=64, steps=4)
    parser.add_argument("--mm-dtype", default="fp16", choices=sorted(h.FILE_DTYPES),
                        help="dtype stored in the motion-module file")
    parser.add_argument("--evolved-git", type=Path, default=EVOLVED_GIT, help="AnimateDiff-Evolved: bare git dir or unpacked tree")
    parser.add_argument("--diffusers-motion-from", choices=("file", "evolved"), default="file",
                        help="diffusers' motion weights: read from the file, or share Evolved's (saves ~1.8 GB)")
    parser.add_argument("--decode-batch", type=int, default=4, help="ours: Decode Frames' frames_per_batch")
    parser.add_argument("--impls", type=lambda s: s.split(","), default=list(IMPLS))
    parser.add_argument("--skip", default="", help="comma list of parts to skip: memory,parity")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    h.check_common(parser, args)
    h.quiet_logs(args.verbose)
    if args.worker:
        print(json.dumps(memory_worker(args), default=str))
        return
    host = h.start_host(args.device, args.comfy, args.pytorch_attention)
    try:
        record = run(host, args)
    finally:
        host.cleanup()
    report(args, record)
    h.write_record(args, "vs_incumbent", record)


def run(host: h.Host, args) -> dict:
    """Build, time interleaved, check parity, measure memory in children; the JSON record."""
    skip = set(filter(None, args.skip.split(",")))
    bench = Bench(host, args, only=tuple(args.impls))
    failures = {k: v.as_dict() for k, v in bench.models.items() if isinstance(v, Failed)}
    outputs: dict[str, torch.Tensor] = {}
    runnable = {}
    for impl in args.impls:
        if impl in failures:
            continue
        try:  # a first run outside the timing: an implementation that breaks at run time is a finding too
            bench.sample(impl, steps=args.steps)
            runnable[impl] = (lambda i=impl: timed(bench, i, outputs))
        except Exception as error:  # noqa: BLE001
            failures[impl] = Failed("sampling", error).as_dict()
            h.log.warning("%s failed while sampling: %s", impl, failures[impl]["error"])
    load_before = h.load_average()
    timings = h.interleaved(runnable, max(args.warmup - 1, 0), args.repeats)  # the first run above warmed up
    load_after = h.load_average()
    med = {k: v["median_s"] for k, v in timings.items()}
    ratios = {f"ours/{k}": (med["ours"] / med[k] if "ours" in med and k in med else f"n/a ({k} did not run)")
              for k in ("evolved", "diffusers", "plain")}
    record = {"bench": "vs_incumbent", "config": vars(args), "info": bench.info, "failures": failures,
              "timings": timings, "ratios": ratios, "attention_backend": h.attention_backend(),
              "motion_attention": h.motion_attention_backend(host),
              "method": "per step = (t_N - t_1)/(N-1) from sampler-callback timestamps; "
                        f"{args.warmup} warm-up, {args.repeats} interleaved repeats, median",
              "load_average_before": load_before, "load_average_after": load_after}
    record["parity"] = None if "parity" in skip else parity(bench, outputs)
    runnable.clear()
    outputs.clear()
    bench.release()  # the memory children need the room
    record["memory"] = {} if "memory" in skip else memory(args)
    record["environment"] = h.environment(args, host)
    return record


if __name__ == "__main__":
    main()
