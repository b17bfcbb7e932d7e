"""``bench pipeline`` / ``bench heatmaps`` / the GPU check script: structure and sanity at tiny CPU sizes, never timings."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from camcontrast_monai.apps.bench.gpu_check import project_hours
from camcontrast_monai.apps.bench.pipeline import (
    PIPELINES,
    ReferenceCropDataset,
    bench_heatmaps,
    bench_pipeline,
    write_reference_crops,
    write_source_images,
)
from camcontrast_monai.transforms.crops import fixed_crop_boxes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks gain nothing from 2 threads, and on a loaded machine the threads' spin-waits cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spread_ok(spread: dict, rounds: int) -> None:
    assert len(spread["rounds"]) == rounds
    assert all(math.isfinite(v) for v in spread["rounds"])
    assert spread["min"] <= spread["median"] <= spread["max"]


def test_bench_pipeline_structure(capsys, tmp_path):
    report = bench_pipeline(
        width=2, crop_size=32, batch_size=4, steps=1, warmup=1, rounds=2, num_workers=0, workdir=str(tmp_path)
    )
    printed = capsys.readouterr().out
    assert "(a) ours / reference" in printed and "(c) ours / compute" in printed and "crops/s" in printed
    # by default ours runs what the bundle ships: bf16 autocast where the CPU has it natively, and channels-last
    from camcontrast_monai.engines import bf16_supported

    shipped = ("bf16" if bf16_supported()[0] else "fp32") + "+channels_last"
    assert report["config"]["precision"] == shipped and f"precision shipped -> {shipped}" in printed
    assert set(report["pipelines"]) == set(PIPELINES)  # the reference runs at ours' precision too
    for row in report["pipelines"].values():
        _spread_ok(row["crops_per_s"], 2)
        assert row["crops_per_s"]["min"] > 0
        _spread_ok(row["data_wait_fraction"], 2)
        assert all(0 <= w < 1 for w in row["data_wait_fraction"]["rounds"])
        assert row["peak_memory_mib"] > 10  # this process holds torch: tens of MiB at least
        assert row["peak_gpu_memory_mib"] is None
    assert report["pipelines"]["compute"]["data_wait_fraction"]["max"] < 0.05  # batches already in memory
    ratios = [o / r for o, r in zip(report["pipelines"]["ours"]["crops_per_s"]["rounds"],
                                     report["pipelines"]["reference"]["crops_per_s"]["rounds"], strict=True)]  # fmt: skip
    assert report["ours_over_reference"]["rounds"] == pytest.approx(ratios)
    # (4 + 4) crops = 2 images; heatmaps are (64/16)^2 float32 files, the reference writes 10 JPEGs per image
    assert report["config"]["n_images"] == 2 and report["config"]["image_size"] == 64
    assert len(list((tmp_path / "reference_crops").glob("*.jpg"))) == 2 * 10
    assert 1.0 < report["disk_ratio_ours"] < report["disk_ratio_reference"]
    assert report["config"]["batched_augmentation"] and "each batch in the trainer" in printed


def test_bench_pipeline_runs_the_reference_at_ours_precision_where_that_is_not_fp32(tmp_path):
    report = bench_pipeline(
        width=2, crop_size=32, batch_size=4, steps=1, warmup=1, rounds=1, num_workers=0, workdir=str(tmp_path),
        precision="fp32+channels_last", verbose=False,
    )  # fmt: skip
    assert set(report["pipelines"]) == set(PIPELINES)
    ours = report["pipelines"]["ours"]["crops_per_s"]["rounds"][0]
    same = report["pipelines"]["reference_same_precision"]["crops_per_s"]["rounds"][0]
    assert report["ours_over_reference_same_precision"]["median"] == pytest.approx(ours / same)
    # at fp32 the reference at ours' precision is the reference itself, run once
    report = bench_pipeline(
        width=2, crop_size=32, batch_size=4, steps=1, warmup=1, rounds=1, num_workers=0, workdir=str(tmp_path / "fp32"),
        precision="fp32", verbose=False,
    )  # fmt: skip
    assert set(report["pipelines"]) == set(PIPELINES) - {"reference_same_precision"}
    assert report["ours_over_reference_same_precision"] == report["ours_over_reference"]


def test_reference_crops_match_the_fixed_crops(tmp_path):
    datalist = write_source_images(tmp_path / "src", n_images=1, source_size=40, heatmap_size=4, seed=3)
    crops = write_reference_crops(datalist, tmp_path / "crops", image_size=32)
    assert len(crops) == 5
    heatmap = np.load(datalist[0]["heatmap"])
    dataset = ReferenceCropDataset(crops, augmentation=lambda d: d)
    for position, box in enumerate(fixed_crop_boxes((4, 4))):
        image, heatmap_crop = dataset[position]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        # lossy 8-bit JPEG heatmaps, as the public implementation stores them
        assert heatmap_crop.shape == (1, 2, 2)
        assert np.abs(heatmap_crop[0].numpy() - heatmap[box]).max() < 0.15


def test_bench_pipeline_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 16"):
        bench_pipeline(crop_size=30, verbose=False)
    with pytest.raises(ValueError, match="warmup"):
        bench_pipeline(warmup=0, verbose=False)


def test_bench_heatmaps_structure(capsys):
    report = bench_heatmaps(width=2, image_size=32, n_images=3, batch_size=2, rounds=2, num_workers=0)
    assert "images/s" in capsys.readouterr().out
    for key in ("images_per_s", "compute_images_per_s"):
        _spread_ok(report[key], 2)
        assert report[key]["min"] > 0


def test_project_hours():
    assert project_hours(2.0, 25_000) == pytest.approx(2.0 * 25_000 / 3600)
    assert project_hours(2.0, 25_000, n_devices=4) == pytest.approx(2.0 * 25_000 / 3600 / 4)
    with pytest.raises(ValueError):
        project_hours(1.0, 10, n_devices=0)


def test_gpu_check_script_runs_on_cpu_at_small_sizes(tmp_path):
    env = dict(
        os.environ, DEVICE="cpu", WIDTH="2", CROP="32", BATCH="4", STEPS="1", WARMUP="1", ROUNDS="1", WORKERS="0",
        PEAK="128", VARIANTS="fp32", PRECISION="fp32", OUT=str(tmp_path), PYTHON=sys.executable, OMP_NUM_THREADS="1",
    )  # fmt: skip
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "== summary (cpu" in out and "of its dtype's matmul peak" in out
    assert "projection ODIR fundus, 25k steps at batch 120" in out and "8 devices" in out
    assert "per-crop augmentation in workers" in out and "batched augmentation" in out
    assert "goal pipeline >= 0.85 of its compute bound" in out
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["pipeline"]["config"]["batched_augmentation"] and not saved["pipeline_per_crop"]["config"]["batched_augmentation"]
    summary = saved["summary"]
    assert set(summary["variants"]) == {"fp32"}
    assert 0 < summary["variants"]["fp32"]["fraction_of_peak"]
    hours = summary["projections"]["ChestX-ray14, 72k steps"]
    assert hours["1"] == pytest.approx(8 * hours["8"])
