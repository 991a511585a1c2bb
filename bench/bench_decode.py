"""Peak memory of decoding a clip: core's VAE Decode (all frames that fit in free memory at once) vs the pack's
Decode Frames (a few frames at a time), in a fresh process per setting with the VAE already loaded.

    python bench/bench_decode.py                                 # CPU fp32, 16 frames of 8x8 latents (64 px)
    python bench/bench_decode.py --device cuda --latent 64       # 512 px on a GPU

Each setting runs in its own child (one allocator each): load the cached random full-size SD1.5 checkpoint's VAE
(as core's loader splits it off), decode one frame (loads the VAE), then measure the extra peak of decoding all
frames (CPU: VmHWM rise above the RSS before, after resetting the high-water mark; CUDA: max_memory_allocated above
what was allocated). Also checks that every setting gives the same frames as core's decode.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def worker(args) -> dict:
    import _harness as h
    import torch

    host = h.start_host(args.device, args.comfy)
    try:
        import comfy.sd
        import comfy.utils

        sd = comfy.utils.load_torch_file(str(h.full_checkpoint_path()))
        prefix = "first_stage_model."
        vae = comfy.sd.VAE(sd={k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
        del sd
        latent = torch.randn(args.frames, 4, args.latent, args.latent, generator=torch.Generator().manual_seed(0))
        decode = host.glue("decode").decode_frames
        vae.decode(latent[:1])
        with torch.inference_mode(), h.PeakMemory(torch.device(args.device)) as peak:
            start = time.perf_counter()
            images = vae.decode(latent) if args.worker == 0 else decode(vae, latent, args.worker)
            seconds = time.perf_counter() - start
        return {"peak_extra_mib": peak.mib, "seconds": seconds, "checksum": float(images.double().sum())}
    finally:
        host.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--latent", type=int, default=8, help="latent side (px / 8)")
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    parser.add_argument("--comfy", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # 0 = core's VAE Decode, n = Decode Frames
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return
    rows = {}
    for per_batch in [0, *args.batches]:
        argv = [sys.executable, __file__, "--worker", str(per_batch), "--device", args.device,
                "--frames", str(args.frames), "--latent", str(args.latent)]
        argv += ["--comfy", str(args.comfy)] if args.comfy else []
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        rows["core VAE Decode" if per_batch == 0 else f"Decode Frames, {per_batch} per batch"] = json.loads(
            done.stdout.strip().splitlines()[-1])
    core = rows["core VAE Decode"]
    print(f"{args.frames} frames of {args.latent}x{args.latent} latents ({8 * args.latent} px), {args.device}")
    print("| decode | extra peak MiB | vs core | seconds | same frames as core |\n|---|---|---|---|---|")
    for name, r in rows.items():
        same = abs(r["checksum"] - core["checksum"]) <= 1e-4 * abs(core["checksum"]) + 1e-3
        print(f"| {name} | {r['peak_extra_mib']:.0f} | {r['peak_extra_mib'] / max(core['peak_extra_mib'], 1):.2f} | "
              f"{r['seconds']:.2f} | {'yes' if same else 'NO'} |")
    out = args.out / f"decode-{args.device}-{args.latent}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "decode", "config": {k: str(v) for k, v in vars(args).items()},
                               "results": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
