"""Global-batch NT-Xent under DDP: 2 gloo processes with B/2 pairs each == 1 process with B pairs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from camcontrast_monai.engines.distributed import distributed_world_size, gather_with_grad
from camcontrast_monai.losses import ImageHeatmapNTXentLoss
from camcontrast_monai.networks import CAMContrastNet

BATCH = 8
WORLD = 2
FUNDUS_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "camcontrast_fundus"


def _network() -> CAMContrastNet:
    torch.manual_seed(0)
    # eval(): batch norm uses its running statistics, so per-process batch statistics (there is no
    # SyncBatchNorm on the CPU) cannot make the two runs differ; everything else trains as usual
    return CAMContrastNet(width=2, heatmap_channels=(4, 4, 4), projection_dim=8).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 32, 32, generator=generator), torch.rand(BATCH, 1, 2, 2, generator=generator)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        network = torch.nn.parallel.DistributedDataParallel(_network())
        images, heatmaps = _batch()
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        z_image, z_heatmap = network(images[rows], heatmaps[rows])
        loss = ImageHeatmapNTXentLoss(0.05)(z_image, z_heatmap)
        loss.backward()
        grads = {name: p.grad for name, p in network.module.named_parameters() if p.grad is not None}
        torch.save(
            {"loss": loss.detach(), "grads": grads, "world": distributed_world_size()},
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_gather_without_process_group_is_identity():
    x = torch.randn(3, 4, requires_grad=True)
    assert distributed_world_size() == 1
    assert gather_with_grad(x) is x


def test_two_gloo_processes_match_one_process_with_the_full_batch(tmp_path):
    network = _network()
    images, heatmaps = _batch()
    z_image, z_heatmap = network(images, heatmaps)
    loss = ImageHeatmapNTXentLoss(0.05)(z_image, z_heatmap)
    loss.backward()
    expected = {name: p.grad for name, p in network.named_parameters() if p.grad is not None}

    # fork: the workers need no fresh interpreter (spawn would re-import torch and MONAI in each)
    mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True, start_method="fork"
    )
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["world"] == WORLD
        torch.testing.assert_close(result["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
        assert set(result["grads"]) == set(expected)
        assert sum(g.abs().sum() for g in expected.values()) > 0
        for name, grad in expected.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_multi_gpu_pretrain_bundle_runs_under_torchrun(tmp_path, fundus_pretrain_inputs):
    """A real ``torchrun --standalone --nproc_per_node=2`` run of multi_gpu_pretrain.json (gloo on the CPU)."""
    data_dir, heatmap_datalist = fundus_pretrain_inputs
    output_dir = tmp_path / "runs"
    encoder_path = tmp_path / "model.pt"
    configs = [
        str(FUNDUS_BUNDLE / "configs" / name)
        for name in ("common.json", "pretrain.json", "multi_gpu_pretrain.json")
    ]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run",
        "--config_file", json.dumps(configs), "--bundle_root", str(FUNDUS_BUNDLE),
        "--dataset_dir", str(data_dir), "--output_dir", str(output_dir), "--heatmap_datalist", str(heatmap_datalist),
        "--encoder_path", str(encoder_path), "--width", "2", "--image_size", "64", "--pretrain_epochs", "2",
        "--pretrain_batch_size", "8", "--num_workers", "0",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = torch.load(encoder_path, weights_only=True)
    assert any(key.startswith("conv_0") for key in state)
    history = json.loads((output_dir / "pretrain" / "loss_history.json").read_text())
    losses = np.array([entry for entry in _loss_values(history)])
    # 40 crops of 8 images, global batch 8 = 4 per process: 5 steps per epoch, 2 epochs
    assert len(losses) == 10 and np.all(np.isfinite(losses))
    checkpoints = sorted((output_dir / "pretrain" / "checkpoints").glob("checkpoint_*.pt"))
    assert [p.name for p in checkpoints] == ["checkpoint_10.pt"]
    saved = torch.load(checkpoints[0], weights_only=True)
    assert not any(key.startswith("module.") for key in saved["network"])  # loads into the single-GPU network


def _loss_values(history) -> list[float]:
    if isinstance(history, dict) and "loss" in history:
        values = history["loss"]
        return list(values.values()) if isinstance(values, dict) else list(values)
    raise AssertionError(f"unexpected loss history layout: {str(history)[:200]}")


@pytest.fixture
def fundus_pretrain_inputs(tmp_path):
    """8 small RGB images with heatmaps and a heatmap datalist, as the heatmaps stage writes them."""
    from PIL import Image

    rng = np.random.default_rng(0)
    image_dir = tmp_path / "data" / "images"
    heatmap_dir = tmp_path / "data" / "heatmaps"
    image_dir.mkdir(parents=True)
    heatmap_dir.mkdir(parents=True)
    entries = []
    for index in range(8):
        image_path = image_dir / f"img{index}.png"
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(image_path)
        heatmap_path = heatmap_dir / f"img{index}.npy"
        np.save(heatmap_path, rng.uniform(0, 1, (4, 4)).astype(np.float32) * (index % 2))
        entries.append(
            {"id": f"img{index}", "image": str(image_path), "heatmap": str(heatmap_path), "label": index % 2}
        )
    datalist = tmp_path / "data" / "heatmap_datalist.json"
    datalist.write_text(json.dumps(entries))
    return tmp_path / "data", datalist
