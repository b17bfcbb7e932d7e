"""``bench_step`` / ``matmul_peak_gflops``: structure and sanity only, never timing thresholds."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from camcontrast_monai.apps.bench.step import bench_step, format_report, matmul_peak_gflops
from camcontrast_monai.losses.ntxent import ImageHeatmapNTXentLoss
from camcontrast_monai.networks.contrastive import CAMContrastNet


def _positive_finite(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def _independent_step_flops(width: int, crop_size: int, batch_size: int) -> int:
    network = CAMContrastNet(width=width).train()
    image = torch.randn(batch_size, 3, crop_size, crop_size)
    heatmap = torch.rand(batch_size, 1, crop_size // 16, crop_size // 16)
    with FlopCounterMode(display=False) as counter:
        z_image, z_heatmap = network(image, heatmap)
        ImageHeatmapNTXentLoss(0.05)(z_image, z_heatmap).backward()
    return int(counter.get_total_flops())


def test_bench_step_structure_and_sanity(capsys):
    report = bench_step(
        width=2,
        crop_size=32,
        batch_size=4,
        steps=1,
        warmup=0,
        rounds=2,
        variants=("fp32", "bf16"),
        peak_size=256,
    )
    printed = capsys.readouterr().out
    assert "fp32" in printed and "crops/s" in printed
    assert report["rounds_completed"] == 2
    assert report["flops_per_step"] == _independent_step_flops(2, 32, 4)
    assert report["flops_per_step"] > 0
    assert _positive_finite(report["peak_gflops"]["fp32"])

    ran = set(report["variants"])
    assert "fp32" in ran
    assert ran <= {"fp32", "bf16"}
    if "bf16" not in ran:  # skipped on CPUs without bf16, with a note saying so
        assert any("bf16" in note for note in report["notes"])
    for variant, row in report["variants"].items():
        rates = row["crops_per_s"]
        assert len(rates["rounds"]) == 2
        assert all(_positive_finite(r) for r in rates["rounds"])
        assert rates["min"] <= rates["median"] <= rates["max"]
        assert _positive_finite(row["seconds_per_step"])
        assert _positive_finite(row["gflops"])
        assert _positive_finite(row["fraction_of_peak"])
        assert _positive_finite(row["ratio_to_fp32"])
        assert len(row["losses"]) == 1 and all(math.isfinite(x) for x in row["losses"])
        assert math.isfinite(report["loss_max_abs_diff_vs_fp32"][variant])
    assert report["variants"]["fp32"]["ratio_to_fp32"] == 1.0
    assert report["loss_max_abs_diff_vs_fp32"]["fp32"] == 0.0
    assert report["loss_max_rel_diff_vs_fp32"]["fp32"] == 0.0
    assert format_report(report).splitlines()[0].startswith("stage-2 train step")


def test_step_tunings_are_measured_on_their_own_and_cudnn_only_on_cuda():
    from camcontrast_monai.apps.bench.step import split_step_variant

    assert split_step_variant("bf16+channels_last+fused+compile") == ("bf16+channels_last", frozenset({"fused", "compile"}))
    assert split_step_variant("fp32") == ("fp32", frozenset())
    with pytest.raises(ValueError, match="twice"):
        split_step_variant("fp32+fused+fused")
    with pytest.raises(ValueError, match="unknown variant"):
        split_step_variant("fp16+fused")
    report = bench_step(
        width=2, crop_size=32, batch_size=4, steps=2, warmup=1, rounds=1, variants="fp32,fp32+fused,fp32+cudnn_benchmark",
        peak_size=256, verbose=False,
    )  # fmt: skip
    assert set(report["variants"]) == {"fp32", "fp32+fused"}
    assert "skipped fp32+cudnn_benchmark: cudnn_benchmark is for CUDA" in report["notes"]
    # a fused SGD takes the same steps: the same losses from the same weights and batches
    assert report["loss_max_rel_diff_vs_fp32"]["fp32+fused"] < 1e-5


def test_matmul_peak_positive():
    assert matmul_peak_gflops(size=256, repeats=1) > 0
