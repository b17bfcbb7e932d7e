"""The issue-7 device check in one process: ``bench step`` and ``bench pipeline`` at the paper's sizes, plus projections.

Run as ``camcontrast bench gpu`` by ``scripts/gpu_check.sh`` on a GPU machine (defaults: 224-px crops, batch 120, full-width
U-Net encoder, bf16 autocast); the same code runs on the CPU at small sizes in the test suite.
Prints, besides the two benchmark tables: crops/s, peak GPU memory, the achieved fraction of the
device's measured bf16 matmul peak (model FLOPs per step / step time / peak), and the projected
wall time of the paper's full stage-2 runs from the measured step time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from camcontrast_monai.apps.bench.pipeline import bench_pipeline
from camcontrast_monai.apps.bench.step import bench_step

__all__ = ["GPU_VARIANTS", "PAPER_RUNS", "project_hours", "run_gpu_check"]

# each tuning of issue 18 on top of the last, so the step table shows what each one adds
GPU_VARIANTS = (
    "fp32", "bf16", "bf16+channels_last", "bf16+channels_last+cudnn_benchmark",
    "bf16+channels_last+cudnn_benchmark+fused", "bf16+channels_last+cudnn_benchmark+fused+compile",
)  # fmt: skip
# the goals on a GPU: compute at this fraction of the bf16 matmul peak, the pipeline at this fraction of compute
GOAL_FRACTION_OF_PEAK = 0.40
GOAL_PIPELINE_OVER_COMPUTE = 0.85

# (name, stage-2 steps, batch) of the paper's full pretraining runs (section 4.1)
PAPER_RUNS = (("ODIR fundus, 25k steps", 25_000, 120), ("ChestX-ray14, 72k steps", 72_000, 120))


def project_hours(
    seconds_per_step: float, steps: int, n_devices: int = 1, scaling_efficiency: float = 1.0
) -> float:
    """Hours of ``steps`` steps at the global batch measured on one device, spread over ``n_devices`` devices.

    Each device computes ``batch / n_devices`` pairs per step, so the step time shrinks by
    ``n_devices * scaling_efficiency`` (1.0 = perfect scaling; the gather of 2 x batch x 128 projections
    per step is tiny next to the encoder, but the data pipeline and all-reduce of the gradients are not free).
    """
    if seconds_per_step <= 0 or steps < 1 or n_devices < 1 or not 0 < scaling_efficiency <= 1:
        raise ValueError(
            "seconds_per_step > 0, steps >= 1, n_devices >= 1 and 0 < scaling_efficiency <= 1 needed"
        )
    return seconds_per_step * steps / (n_devices * scaling_efficiency) / 3600.0


def _goal_lines(variants: dict[str, dict[str, Any]], pipeline: dict[str, Any]) -> list[str]:
    """Whether the best bf16 step variant reaches :data:`GOAL_FRACTION_OF_PEAK` and the pipeline
    :data:`GOAL_PIPELINE_OVER_COMPUTE`."""
    fractions = {v: row["fraction_of_peak"] for v, row in variants.items() if v.startswith("bf16") and row["fraction_of_peak"]}
    lines = []
    if fractions:
        best = max(fractions, key=fractions.get)
        met = "met" if fractions[best] >= GOAL_FRACTION_OF_PEAK else "NOT met"
        lines.append(f"goal compute >= {GOAL_FRACTION_OF_PEAK:.0%} of the bf16 matmul peak: {met} ({best}: {fractions[best]:.1%})")
    ratio = pipeline["ours_over_compute"]["median"]
    met = "met" if ratio >= GOAL_PIPELINE_OVER_COMPUTE else "NOT met"
    lines.append(f"goal pipeline >= {GOAL_PIPELINE_OVER_COMPUTE:.2f} of its compute bound: {met} ({ratio:.2f})")
    return lines


def run_gpu_check(
    device: str = "cuda",
    width: int = 64,
    crop_size: int = 224,
    batch_size: int = 120,
    steps: int = 5,
    warmup: int = 2,
    rounds: int = 3,
    num_workers: int = 8,
    peak_size: int = 8192,
    variants: Sequence[str] = GPU_VARIANTS,
    precision: str = "bf16",
    pipeline_batch_size: int | None = None,
    json_out: str | None = None,
) -> dict[str, Any]:
    """``bench step`` and ``bench pipeline`` at the paper's sizes, the fraction of the matmul peak, and projections.

    Prints both benchmark tables and a summary; returns ``{"step", "pipeline", "pipeline_per_crop", "summary"}``.

    Args:
        device: cuda (refused when torch sees no GPU) or cpu.
        width: U-Net encoder width (64 = the paper's).
        crop_size: crop side in pixels (224 = the paper's).
        batch_size: crops per step of ``bench step`` (120 = the paper's).
        steps: timed steps per variant and round.
        warmup: untimed steps before each timing.
        rounds: the variants and pipelines run alternately this many times.
        num_workers: DataLoader workers of the pipelines.
        peak_size: side of the square matmul that measures the peak.
        variants: ``bench step`` variants, comma-separated or a sequence.
        precision: the variant of the pipeline's ours and compute.
        pipeline_batch_size: crops per step of the pipelines (default: ``batch_size``).
        json_out: also write the results to this JSON file.

    The pipeline runs twice: with the bundle's default batched augmentation (on the GPU, one batch at a
    time) and with per-crop augmentation in the DataLoader workers. The projections use the default.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU; pass --device cpu for a CPU run")
    step = bench_step(
        width=width, crop_size=crop_size, batch_size=batch_size, steps=steps, warmup=warmup, rounds=rounds,
        variants=variants, device=device, peak_size=peak_size,
    )  # fmt: skip
    # the bundle's default (batched augmentation, on the GPU) and per-crop augmentation in the workers
    pipeline, pipeline_per_crop = (
        bench_pipeline(
            width=width, crop_size=crop_size, batch_size=pipeline_batch_size or batch_size, steps=steps,
            warmup=warmup, rounds=rounds, num_workers=num_workers, precision=precision, device=device,
            batched_augmentation=batched,
        )  # fmt: skip
        for batched in (True, False)
    )
    summary: dict[str, Any] = {"variants": {}, "projections": {}}
    for variant, row in step["variants"].items():
        summary["variants"][variant] = {
            "crops_per_s": row["crops_per_s"]["median"],
            "seconds_per_step": row["seconds_per_step"],
            "fraction_of_peak": row["fraction_of_peak"],
            "peak_gpu_memory_mib": row["peak_gpu_memory_mib"],
        }
    lines = [
        f"== summary ({device}; matmul peak "
        + ", ".join(f"{k} {v / 1000:.1f} TFLOP/s" for k, v in step["peak_gflops"].items())
        + f"; {step['flops_per_step'] / 1e9:.1f} GFLOP per step of {batch_size} crops)"
    ]
    for variant, row in summary["variants"].items():
        memory = f"{row['peak_gpu_memory_mib']:.0f} MiB" if row["peak_gpu_memory_mib"] is not None else "-"
        fraction = f"{100 * row['fraction_of_peak']:.1f}%" if row["fraction_of_peak"] is not None else "-"
        lines.append(
            f"step {variant:<20} {row['crops_per_s']:9.2f} crops/s  {row['seconds_per_step']:8.3f} s/step  "
            f"{fraction} of its dtype's matmul peak  GPU memory {memory}"
        )
    for run, augmentation in ((pipeline, "batched augmentation"), (pipeline_per_crop, "per-crop augmentation in workers")):
        ours_run = run["pipelines"]["ours"]
        lines.append(
            f"pipeline ours ({run['config']['precision']}, {augmentation}) {ours_run['crops_per_s']['median']:.2f} "
            f"crops/s, data wait {100 * ours_run['data_wait_fraction']['median']:.1f}%, ours/reference "
            f"{run['ours_over_reference']['median']:.2f}x, ours/compute {run['ours_over_compute']['median']:.2f}"
        )
    lines += _goal_lines(summary["variants"], pipeline)
    ours = pipeline["pipelines"]["ours"]
    # projection from the end-to-end rate of our pipeline, rescaled to the paper's batch of 120
    seconds_per_crop = 1.0 / ours["crops_per_s"]["median"]
    for name, run_steps, run_batch in PAPER_RUNS:
        per_step = seconds_per_crop * run_batch
        hours = {n: project_hours(per_step, run_steps, n) for n in (1, 2, 4, 8)}
        summary["projections"][name] = hours
        lines.append(
            f"projection {name} at batch {run_batch}: "
            + ", ".join(f"{n} device{'s' if n > 1 else ''} {h:.1f} h" for n, h in hours.items())
            + " (ideal scaling)"
        )
    print("\n".join(lines))
    result = {"step": step, "pipeline": pipeline, "pipeline_per_crop": pipeline_per_crop, "summary": summary}
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=1, default=str))
    return result


