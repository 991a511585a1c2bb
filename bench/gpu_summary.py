"""Summary table of a GPU suite run: every JSON record in one folder, against issue 17's goals.

    python bench/gpu_summary.py OUT_DIR [--peak-tflops 989]

Reads what bench/gpu_suite.sh wrote (vs_incumbent, overhead, overhead_sdxl, context, decode, precision, compile
records) and prints one markdown table: measure, result, goal, met. Share of peak = the UNet + motion-module FLOPs of
one step (torch's FlopCounterMode, from the overhead record) divided by the measured time per step and the chip's
dense fp16/bf16 peak (``--peak-tflops``; H100/H200 SXM datasheet: 989 TFLOP/s).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def latest(folder: Path, bench: str) -> dict | None:
    """The newest record whose file name starts with ``bench-``."""
    files = sorted(folder.glob(f"{bench}-*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(files[-1].read_text()) if files else None


def row(measure: str, value, goal: str = "", met: bool | None = None) -> list[str]:
    """A table row; floats to 3 decimals."""
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return [measure, text, goal, "" if met is None else ("met" if met else "NOT met")]


def vs_incumbent(r: dict) -> list[list[str]]:
    """Time-per-step ratios, peak memory vs diffusers, parity."""
    rows = []
    t = r.get("timings", {})
    for impl in ("plain", "ours", "evolved", "diffusers"):
        if impl in t:
            rows.append(row(f"ms/step {impl} (SD1.5, 16 frames, CFG)", 1e3 * t[impl]["median_s"]))
        elif impl in r.get("failures", {}):
            f = r["failures"][impl]
            rows.append(row(f"{impl}", f"FAILED at {f.get('stage')}: {str(f.get('error'))[:100]}"))
    for name, goal in (("ours/evolved", 0.80), ("ours/diffusers", 0.80), ("ours/plain", None)):
        v = r.get("ratios", {}).get(name)
        if isinstance(v, float):
            rows.append(row(f"time per step {name}", v, f"<= {goal}" if goal else "", v <= goal if goal else None))
    mem = r.get("memory", {})
    ours, diff = (mem.get(k, {}).get("sampling_peak_extra_mib") for k in ("ours", "diffusers"))
    if isinstance(ours, (int, float)) and isinstance(diff, (int, float)) and diff:
        rows.append(row("sampling peak memory ours/diffusers", ours / diff, "<= 0.75", ours / diff <= 0.75))
        rows.append(row("sampling peak +MiB ours / diffusers", f"{ours:.0f} / {diff:.0f}"))
    for impl, p in (r.get("parity") or {}).items():
        if isinstance(p, dict):
            rows.append(row(f"parity {impl} vs ours, PSNR dB", p.get("psnr_db_vs_ours")))
    return rows


def overhead(r: dict, label: str, peak_tflops: float) -> list[list[str]]:
    """Overhead ratio vs plain images, share of the chip's peak."""
    label = f"{label} {r['config']['size']}px"
    rows = [row(f"{label}: ms/step plain / ours", f"{1e3 * r['timings']['plain']['median_s']:.1f} / "
                f"{1e3 * r['timings']['ours']['median_s']:.1f}")]
    goal = 1.40 if label.startswith("SD1.5") else None
    v = r["ratio_ours_plain"]
    rows.append(row(f"{label}: ours/plain per step", v, f"<= {goal}" if goal else "", v <= goal if goal else None))
    flops = r.get("flops_per_step", {}).get("ours")
    if flops:
        share = flops / r["timings"]["ours"]["median_s"] / (peak_tflops * 1e12)
        rows.append(row(f"{label}: share of {peak_tflops:.0f} TFLOP/s peak (ours, {flops / 1e12:.2f} TFLOP/step)",
                        f"{100 * share:.1f}%", ">= 55%", share >= 0.55))
    return rows


def context(r: dict) -> list[list[str]]:
    """Linearity and memory against clip length."""
    rows = []
    for n, t in (r.get("linearity") or {}).items():
        rows.append(row(f"context: {n} frames, step / (windows x 16-frame step)", t["linearity"], "0.95-1.05",
                        0.95 <= t["linearity"] <= 1.05))
    mem = r.get("memory") or {}
    base = mem.get("16", mem.get(16, {})).get("peak_extra_mib")
    for n, m in mem.items():
        if base and str(n) != "16":
            rows.append(row(f"context: peak memory {n} / 16 frames", m["peak_extra_mib"] / base, "<= 1.05",
                            m["peak_extra_mib"] / base <= 1.05))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    rows: list[list[str]] = []
    if r := latest(args.folder, "vs_incumbent"):
        rows += vs_incumbent(r)
    if r := latest(args.folder, "overhead"):
        rows += overhead(r, "SD1.5", args.peak_tflops)
    if r := latest(args.folder, "overhead_sdxl"):
        rows += overhead(r, "SDXL", args.peak_tflops)
    if r := latest(args.folder, "context"):
        rows += context(r)
    if r := latest(args.folder, "decode"):
        results = r.get("results", {})
        core = results.get("core VAE Decode", {}).get("peak_extra_mib")
        for name, v in results.items():
            if name != "core VAE Decode" and core:
                rows.append(row(f"decode peak {name} / core VAE Decode", v["peak_extra_mib"] / core))
        if core:
            rows.append(row("decode peak core VAE Decode, +MiB", core))
    if r := latest(args.folder, "precision"):
        for name, p in r["runs"].items():
            rows.append(row(f"{name} vs fp32, decoded frames PSNR dB", p["psnr_db_frames"], ">= 35",
                            p["psnr_db_frames"] >= 35))
    if r := latest(args.folder, "compile"):
        rows.append(row("compile option: compiled/eager (one module)", r.get("ratio_compiled_eager", "?")))
    print("| measure | result | goal | |\n|---|---|---|---|")
    for measure, value, goal, met in rows:
        print(f"| {measure} | {value} | {goal} | {met} |")


if __name__ == "__main__":
    main()
