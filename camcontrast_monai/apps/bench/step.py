"""``camcontrast bench step``: a compute-only upper bound on stage-2 training throughput.

Times full stage-2 training steps (forward, NT-Xent loss in float32, backward, SGD step) of one
:class:`CAMContrastNet` on random in-memory tensors, for several numeric variants (float32,
bfloat16 autocast, channels-last memory format). No data loading, augmentation or heatmap
computation is involved, so the numbers are upper bounds for the real pipeline.

The variants run alternately, round after round, in one process, and every variant run starts
from the same initial weights and optimizer state and sees the same batches, so machine noise hits
all variants alike and the per-step losses are directly comparable across variants.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from camcontrast_monai.engines.trainers import autocast_context, bf16_supported
from camcontrast_monai.losses.ntxent import ImageHeatmapNTXentLoss
from camcontrast_monai.networks.contrastive import CAMContrastNet
from camcontrast_monai.transforms.crops import HEATMAP_STRIDE_2D
from camcontrast_monai.utils.runtime import tune_malloc

__all__ = [
    "KNOWN_VARIANTS", "STEP_TUNINGS", "bench_step", "bf16_supported", "count_step_flops", "format_report", "matmul_peak_gflops", "parse_variant",
    "split_step_variant", "spread", "synchronize",
]  # fmt: skip

KNOWN_VARIANTS = ("fp32", "bf16", "fp32+channels_last", "bf16+channels_last")
# what bench step may add to a variant, each measured on its own: "bf16+channels_last+cudnn_benchmark+fused"
STEP_TUNINGS = ("cudnn_benchmark", "fused", "compile")
HEATMAP_STRIDE = HEATMAP_STRIDE_2D  # heatmaps are (S/16, S/16) for an S-pixel crop, as in the real pipeline
TEMPERATURE = 0.05
LEARNING_RATE = 0.003
MOMENTUM = 0.95


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so wall-clock times cover it (no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(
    size: int = 4096, dtype: torch.dtype = torch.float32, repeats: int = 5, device: torch.device | str = "cpu"
) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size x size`` matmul in ``dtype`` on ``device`` (after one warm-up)."""
    if size < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be positive, got size={size}, repeats={repeats}")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up: thread pool, kernel selection
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / max(best, 1e-12) / 1e9


def _measure_peaks(size: int, bf16: bool, device: torch.device) -> dict[str, float]:
    peaks = {"fp32": matmul_peak_gflops(size, torch.float32, device=device)}
    if bf16:
        peaks["bf16"] = matmul_peak_gflops(size, torch.bfloat16, device=device)
    return peaks


def split_step_variant(variant: str) -> tuple[str, frozenset[str]]:
    """A ``bench step`` variant as its precision variant (one of :data:`KNOWN_VARIANTS`) and its tunings
    (:data:`STEP_TUNINGS`: ``cudnn_benchmark``, a ``fused`` SGD, ``compile`` with ``torch.compile``)."""
    parts = variant.split("+")
    tunings = [part for part in parts if part in STEP_TUNINGS]
    base = "+".join(part for part in parts if part not in STEP_TUNINGS)
    if len(set(tunings)) != len(tunings):
        raise ValueError(f"variant {variant!r} names a tuning twice")
    parse_variant(base)
    return base, frozenset(tunings)


def parse_variant(variant: str) -> tuple[str | None, bool]:
    if variant not in KNOWN_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {KNOWN_VARIANTS}")
    return ("bfloat16" if variant.startswith("bf16") else None), variant.endswith("+channels_last")


def _train_step(
    network: torch.nn.Module,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    image: torch.Tensor,
    heatmap: torch.Tensor,
    autocast_dtype: str | None,
) -> torch.Tensor:
    """One stage-2 step; the loss is computed in float32 outside autocast. ``optimizer=None`` skips the update."""
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    with autocast_context(image.device, autocast_dtype):
        z_image, z_heatmap = network(image, heatmap)
    loss = loss_fn(z_image.float(), z_heatmap.float())
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    return loss.detach()


def count_step_flops(network: torch.nn.Module, image: torch.Tensor, heatmap: torch.Tensor) -> int:
    """FLOPs of one float32 training step (forward + loss + backward) as ``FlopCounterMode`` counts them.

    Runs on a copy of ``network`` so the caller's weights and gradients are untouched. The optimizer
    update is element-wise and not counted (FlopCounterMode counts matmuls and convolutions).
    """
    clone = copy.deepcopy(network).train()
    loss_fn = ImageHeatmapNTXentLoss(TEMPERATURE)
    with FlopCounterMode(display=False) as counter:
        _train_step(clone, loss_fn, None, image, heatmap, None)
    return int(counter.get_total_flops())


def bench_step(
    width: int = 64,
    crop_size: int = 224,
    batch_size: int = 8,
    steps: int = 5,
    warmup: int = 2,
    rounds: int = 3,
    variants: Sequence[str] = KNOWN_VARIANTS,
    spatial_dims: int = 2,
    seed: int = 0,
    verbose: bool = True,
    peak_size: int = 4096,
    device: str = "cpu",
) -> dict[str, Any]:
    """Pure-compute stage-2 training throughput (crops/s, GFLOP/s vs the matmul peak) per precision variant.

    Args:
        width: U-Net encoder width (64 = the paper's).
        crop_size: image crop side in pixels (224 = the paper's).
        batch_size: crops per step.
        steps: timed steps per variant and round.
        warmup: untimed steps before each timing.
        rounds: the variants run alternately this many times; min/median/max are over rounds.
        variants: comma-separated subset of fp32, bf16, fp32+channels_last, bf16+channels_last (or a sequence),
            each optionally with tunings measured on their own: ``+cudnn_benchmark`` (CUDA only), ``+fused``
            (a fused SGD) and ``+compile`` (``torch.compile``, compiled in the warm-up steps), e.g.
            ``bf16+channels_last+cudnn_benchmark+fused+compile``.
        spatial_dims: 2 for images, 3 for volumes (cubic crops of side ``crop_size``).
        seed: seed of the weights and the random batches.
        verbose: print the table.
        peak_size: side of the square matmul that measures the peak GFLOP/s (smaller is quicker and lower).
        device: cpu or cuda.

    Each (round, variant) run restores the initial weights and a fresh SGD, runs ``warmup`` untimed
    and ``steps`` timed steps over the same fixed batches. Returned per variant: ``crops_per_s``
    (median/min/max over rounds and the per-round list), ``seconds_per_step`` (median), ``gflops``
    (achieved, median), ``fraction_of_peak`` (vs the matmul peak of the variant's dtype),
    ``ratio_to_fp32`` (median of per-round ratios, None without an fp32 variant) and ``losses``
    (per step of round 1). ``loss_max_abs_diff_vs_fp32`` / ``loss_max_rel_diff_vs_fp32`` compare
    those losses with fp32's. ``peak_gflops`` is the best matmul rate measured before and after the runs.
    On a GPU ``peak_gpu_memory_mib`` holds each variant's peak allocated memory.
    """
    variants = _check_step_arguments(variants, width, crop_size, batch_size, steps, warmup, rounds, spatial_dims)
    malloc_tuned = tune_malloc()
    device_t = torch.device(device)
    on_gpu = device_t.type == "cuda"

    bf16_ok, bf16_note = bf16_supported(device_t)
    runnable, notes = _runnable_variants(variants, spatial_dims, bf16_ok, bf16_note, device_t.type)

    torch.manual_seed(seed)
    network = CAMContrastNet(spatial_dims=spatial_dims, width=width).to(device_t).train()
    initial_state = copy.deepcopy(network.state_dict())
    batches = _random_batches(warmup + steps, batch_size, crop_size, spatial_dims, seed, device_t)
    flops_per_step = count_step_flops(network, *batches[0])
    peaks_before = _measure_peaks(peak_size, bf16_ok, device_t)  # measured before and after; the best is the peak
    per_round, losses, peak_gpu = _alternate_variants(
        network, initial_state, runnable, batches, warmup, rounds, batch_size * steps
    )
    peaks = {k: max(v, peaks_before[k]) for k, v in _measure_peaks(peak_size, bf16_ok, device_t).items()}
    loss_diff, loss_rel_diff = _loss_differences_from_fp32(losses)

    report = {
        "config": {
            "width": width, "crop_size": crop_size, "batch_size": batch_size, "steps": steps, "warmup": warmup,
            "rounds": rounds, "spatial_dims": spatial_dims, "seed": seed, "variants": list(variants),
            "peak_size": peak_size, "device": str(device_t),
        },  # fmt: skip
        "rounds_completed": rounds,
        "flops_per_step": flops_per_step,
        "peak_gflops": peaks,
        "variants": _variant_rows(
            per_round, losses, peak_gpu if on_gpu else None, batch_size, flops_per_step, peaks
        ),
        "loss_max_abs_diff_vs_fp32": loss_diff,
        "loss_max_rel_diff_vs_fp32": loss_rel_diff,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.cuda.get_device_name(device_t) if on_gpu else torch.backends.cpu.get_cpu_capability(),
        "malloc_tuned": malloc_tuned,
        "notes": notes,
    }
    if verbose:
        print(format_report(report))
    return report


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the per-round values of a benchmark's rounds."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": list(values)}


def _check_step_arguments(
    variants: Sequence[str] | str,
    width: int,
    crop_size: int,
    batch_size: int,
    steps: int,
    warmup: int,
    rounds: int,
    spatial_dims: int,
) -> tuple[str, ...]:
    """Raise on sizes or variants :func:`bench_step` cannot run; return the variants as a tuple (the CLI may
    pass them as one comma-separated string)."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if min(width, batch_size, steps, rounds) < 1 or warmup < 0:
        raise ValueError("width, batch_size, steps and rounds must be positive and warmup non-negative")
    if crop_size % HEATMAP_STRIDE:
        raise ValueError(f"crop_size must be a multiple of {HEATMAP_STRIDE}, got {crop_size}")
    if isinstance(variants, str):  # from the CLI: --variants fp32 or --variants fp32,bf16
        variants = [v.strip() for v in variants.split(",") if v.strip()]
    variants = tuple(variants)
    if not variants:
        raise ValueError("need at least one variant")
    for variant in variants:
        split_step_variant(variant)
    return variants


def _random_batches(
    count: int, batch_size: int, crop_size: int, spatial_dims: int, seed: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (image, heatmap) batches drawn from ``seed``, so every variant trains on the same data."""
    generator = torch.Generator().manual_seed(seed)
    image_shape = (batch_size, 3) + (crop_size,) * spatial_dims
    heatmap_shape = (batch_size, 1) + (crop_size // HEATMAP_STRIDE,) * spatial_dims
    return [
        (
            torch.randn(image_shape, generator=generator).to(device),
            torch.rand(heatmap_shape, generator=generator).to(device),
        )
        for _ in range(count)
    ]


def _runnable_variants(
    variants: Sequence[str], spatial_dims: int, bf16_ok: bool, bf16_note: str, device_type: str
) -> tuple[list[str], list[str]]:
    """The variants this device can run, and a note for each one skipped."""
    runnable, notes = [], []
    for variant in variants:
        base, tunings = split_step_variant(variant)
        autocast_dtype, channels_last = parse_variant(base)
        if autocast_dtype and not bf16_ok:
            notes.append(f"skipped {variant}: {bf16_note}")
        elif channels_last and spatial_dims != 2:
            notes.append(f"skipped {variant}: channels_last is 2D only")
        elif "cudnn_benchmark" in tunings and device_type != "cuda":
            notes.append(f"skipped {variant}: cudnn_benchmark is for CUDA")
        else:
            runnable.append(variant)
    return runnable, notes


def _time_variant(
    network: torch.nn.Module,
    initial_state: dict[str, torch.Tensor],
    loss_fn: torch.nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    warmup: int,
    variant: str,
) -> tuple[float, list[float], int]:
    """One run of ``variant`` from the initial weights and a fresh SGD over ``batches``: the seconds of the
    steps after ``warmup``, every step's loss, and the peak GPU memory in bytes (0 on the CPU)."""
    base, tunings = split_step_variant(variant)
    autocast_dtype, channels_last = parse_variant(base)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    device = batches[0][0].device
    network.to(memory_format=memory_format)
    network.load_state_dict(initial_state)
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, fused="fused" in tunings or None)
    # the compiled module shares the network's parameters; compiling happens in the warm-up steps
    step_network = torch.compile(network) if "compile" in tunings else network
    torch.backends.cudnn.benchmark = "cudnn_benchmark" in tunings
    run_batches = [
        (image.contiguous(memory_format=memory_format), heatmap.contiguous(memory_format=memory_format))
        for image, heatmap in batches
    ]
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    step_losses = [_train_step(step_network, loss_fn, optimizer, image, heatmap, autocast_dtype) for image, heatmap in run_batches[:warmup]]
    synchronize(device)
    start = time.perf_counter()
    step_losses += [_train_step(step_network, loss_fn, optimizer, image, heatmap, autocast_dtype) for image, heatmap in run_batches[warmup:]]
    synchronize(device)
    elapsed = time.perf_counter() - start
    torch.backends.cudnn.benchmark = False
    return elapsed, [float(loss) for loss in step_losses], torch.cuda.max_memory_allocated(device) if on_gpu else 0


def _alternate_variants(
    network: torch.nn.Module,
    initial_state: dict[str, torch.Tensor],
    variants: Sequence[str],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    warmup: int,
    rounds: int,
    timed_crops: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """Run every variant once per round, in turn, each from the initial weights: per variant the crops/s of
    each round, the step losses of round 1, and the peak GPU memory in bytes over the rounds (0 on the CPU)."""
    loss_fn = ImageHeatmapNTXentLoss(TEMPERATURE)
    per_round: dict[str, list[float]] = {v: [] for v in variants}
    losses: dict[str, list[float]] = {}
    peak_gpu: dict[str, int] = {}
    for round_index in range(rounds):
        for variant in variants:
            elapsed, step_losses, peak_memory = _time_variant(network, initial_state, loss_fn, batches, warmup, variant)
            peak_gpu[variant] = max(peak_gpu.get(variant, 0), peak_memory)
            per_round[variant].append(timed_crops / elapsed)
            if round_index == 0:
                losses[variant] = step_losses
    network.to(memory_format=torch.contiguous_format)
    return per_round, losses, peak_gpu


def _variant_rows(
    per_round: dict[str, list[float]],
    losses: dict[str, list[float]],
    peak_gpu: dict[str, int] | None,
    batch_size: int,
    flops_per_step: int,
    peaks: dict[str, float],
) -> dict[str, dict[str, Any]]:
    """:func:`bench_step`'s row per variant; ``peak_gpu`` is None on the CPU, where there is no GPU memory to report."""
    rows: dict[str, dict[str, Any]] = {}
    for variant, rates in per_round.items():
        seconds_per_step = batch_size / statistics.median(rates)
        gflops = flops_per_step / seconds_per_step / 1e9
        peak = peaks.get(variant.split("+")[0])
        ratio = None
        if "fp32" in per_round:
            ratio = statistics.median(r / base for r, base in zip(rates, per_round["fp32"], strict=True))
        rows[variant] = {
            "crops_per_s": spread(rates),
            "seconds_per_step": seconds_per_step,
            "gflops": gflops,
            "fraction_of_peak": gflops / peak if peak else None,
            "ratio_to_fp32": ratio,
            "losses": losses[variant],
            "peak_gpu_memory_mib": peak_gpu[variant] / 2**20 if peak_gpu is not None else None,
        }
    return rows


def _loss_differences_from_fp32(losses: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Per variant, the largest absolute and relative difference of its step losses from fp32's (empty without fp32)."""
    absolute, relative = {}, {}
    if "fp32" in losses:
        for variant, values in losses.items():
            pairs = list(zip(values, losses["fp32"], strict=True))
            absolute[variant] = max(abs(a - b) for a, b in pairs)
            relative[variant] = max(abs(a - b) / max(abs(b), 1e-12) for a, b in pairs)
    return absolute, relative


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`bench_step`'s result."""
    config = report["config"]
    lines = [
        f"stage-2 train step, compute only: width {config['width']}, crop {config['crop_size']}, "
        f"batch {config['batch_size']}, {config['steps']} timed steps x {report['rounds_completed']} rounds "
        f"({report['threads']} threads, {report['cpu_capability']})",
        f"FLOPs/step (fwd+bwd): {report['flops_per_step'] / 1e9:.2f} GFLOP; matmul peak: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in report["peak_gflops"].items()),
        f"{'variant':<44} {'crops/s med':>11} {'min':>8} {'max':>8} {'s/step':>8} {'GFLOP/s':>8} "
        f"{'% peak':>7} {'x fp32':>7} {'|dloss|':>8} {'rel':>7} {'GPU MiB':>8}",
    ]
    for variant, row in report["variants"].items():
        rate = row["crops_per_s"]
        frac = f"{100 * row['fraction_of_peak']:.1f}" if row["fraction_of_peak"] is not None else "-"
        ratio = f"{row['ratio_to_fp32']:.2f}" if row["ratio_to_fp32"] is not None else "-"
        diff = report["loss_max_abs_diff_vs_fp32"].get(variant)
        diff_text = f"{diff:.2e}" if diff is not None else "-"
        rel = report["loss_max_rel_diff_vs_fp32"].get(variant)
        rel_text = f"{100 * rel:.1f}%" if rel is not None else "-"
        gpu = f"{row['peak_gpu_memory_mib']:.0f}" if row["peak_gpu_memory_mib"] is not None else "-"
        lines.append(
            f"{variant:<44} {rate['median']:>11.2f} {rate['min']:>8.2f} {rate['max']:>8.2f} "
            f"{row['seconds_per_step']:>8.3f} {row['gflops']:>8.1f} {frac:>7} {ratio:>7} {diff_text:>8} {rel_text:>7}"
            f" {gpu:>8}"
        )
    lines.append(
        "|dloss|, rel: max abs / relative loss difference from fp32 over the same steps from the same weights"
    )
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)
