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

from camcontrast_monai.engines.distributed import distributed_world_size, evaluation_sampler, gather_with_grad
from camcontrast_monai.losses import ImageHeatmapNTXentLoss, NTXentLoss, nt_xent
from camcontrast_monai.networks import CAMClassifier, CAMContrastNet

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
        local = NTXentLoss(0.05, gather_distributed=False)(z_image.detach(), z_heatmap.detach())
        loss.backward()
        grads = {name: p.grad for name, p in network.module.named_parameters() if p.grad is not None}
        torch.save(
            {"loss": loss.detach(), "local_loss": local, "grads": grads, "world": distributed_world_size()},
            f"{out_dir}/rank{rank}.pt",
        )
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    # This process is a fork of the multithreaded test process, where gloo's teardown (the process
    # group's destructor joining its threads) once hung for minutes; both ranks have saved their
    # results, so leave without running destructors.
    os._exit(0)


def test_gather_without_process_group_is_identity():
    x = torch.randn(3, 4, requires_grad=True)
    assert distributed_world_size() == 1
    assert gather_with_grad(x) is x


def test_evaluation_sampler_covers_the_set_once_and_refuses_an_empty_share():
    assert list(evaluation_sampler(list(range(5)))) == [0, 1, 2, 3, 4]  # one process: the whole set, in order
    with pytest.raises(ValueError, match="at least one"):
        evaluation_sampler([])


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
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)  # without the gather: this rank's pairs only
        own = nt_xent(z_image[rows].detach(), z_heatmap[rows].detach(), 0.05)
        torch.testing.assert_close(result["local_loss"], own, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(own, loss.detach())
        assert set(result["grads"]) == set(expected)
        assert sum(g.abs().sum() for g in expected.values()) > 0
        for name, grad in expected.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _torchrun_bundle(tmp_path: Path, configs: list[str], extra_config: dict, **overrides) -> None:
    """``torchrun --standalone --nproc_per_node=2 -m monai.bundle run`` of the fundus ``configs`` (gloo on the CPU).

    ``extra_config`` is written as a last config file: ``+run`` / ``+finalize`` lists append to the bundle's.
    """
    extra_path = tmp_path / "extra.json"
    extra_path.write_text(json.dumps(extra_config))
    config_files = [str(FUNDUS_BUNDLE / "configs" / name) for name in configs] + [str(extra_path)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "--config_file", json.dumps(config_files), "--bundle_root", str(FUNDUS_BUNDLE),
    ]  # fmt: skip
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _tensorboard_writers(log_dir: Path) -> set[str]:
    """The processes that wrote event files in ``log_dir`` (``events.out.tfevents.<time>.<host>.<pid>.<n>``)."""
    return {path.name.split(".")[-2] for path in log_dir.glob("events.out.tfevents.*")}


@pytest.fixture
def fundus_data(tmp_path, fundus_dataset_dir):
    return {
        "dataset_dir": fundus_dataset_dir, "output_dir": tmp_path / "runs", "width": 4, "image_size": 32,
        "num_workers": 0,
    }  # fmt: skip


def test_multi_gpu_stage1_bundle_runs_under_torchrun(tmp_path, fundus_data):
    """Stage 1 under DDP: CAMs through DDP's forward, every rank ends with the weights rank 0 saves."""
    rank_weights = str(tmp_path / "rank")
    _torchrun_bundle(
        tmp_path, ["common.json", "stage1.json", "multi_gpu_stage1.json"],
        {"+finalize": [f"$torch.save(@classifier.state_dict(), '{rank_weights}' + os.environ['RANK'] + '.pt')"]},
        **fundus_data, stage1_epochs=1, stage1_batch_size=4, stage1_val_fraction=0.25,
    )  # fmt: skip
    runs = fundus_data["output_dir"] / "stage1"
    saved = torch.load(runs / "classifier.pt", weights_only=True)
    CAMClassifier(width=4).load_state_dict(saved)  # strict: the single-process network, no DDP/wrapper prefix
    for rank in range(WORLD):
        state = torch.load(f"{rank_weights}{rank}.pt", weights_only=True)
        assert state.keys() == saved.keys()
        for key, value in saved.items():  # parameters and batch-norm statistics
            assert torch.equal(state[key], value), f"rank {rank} differs from the saved classifier at {key}"
    # 12 training images (25% of 16 held out), global batch 4 = 2 per process: 3 steps
    assert [step for step, _ in json.loads((runs / "loss_history.json").read_text())["loss"]] == [1, 2, 3]
    assert [epoch for epoch, _ in json.loads((runs / "val_history.json").read_text())["val_auc"]] == [1]
    assert [p.name for p in (runs / "checkpoints").iterdir()] == ["checkpoint_3.pt"]
    checkpoint = torch.load(runs / "checkpoints" / "checkpoint_3.pt", weights_only=True)
    assert checkpoint["network"].keys() == saved.keys()
    assert len(_tensorboard_writers(runs / "tensorboard")) == 1


def test_multi_gpu_finetune_grading_runs_under_torchrun(tmp_path, fundus_data):
    """Fine-tuning under DDP: validation and test metrics over each whole set once, files written by rank 0."""
    rows = str(tmp_path / "metric_rows")
    # the metrics' gathered buffers after the run: the number of samples each metric saw, on every rank
    seen = (
        "{'val': len(@validate#key_metric#val_joint_accuracy.metric_fn.get_buffer()[0]),"
        " 'test': len(@test#metric.metric_fn.get_buffer()[0])}"
    )
    _torchrun_bundle(
        tmp_path, ["common.json", "finetune_cls.json", "multi_gpu_finetune.json"],
        {"+run": [f"$json.dump({seen}, open('{rows}' + os.environ['RANK'] + '.json', 'w'))"]},
        **fundus_data, init="random", finetune_epochs=1, finetune_batch_size=4, crop_size=32,
    )  # fmt: skip
    run_dir = fundus_data["output_dir"] / "finetune" / "grading" / "random_fraction1.0_seed0"
    result = json.loads((run_dir / "test_metrics.json").read_text())
    assert result["weights"] == str(run_dir / "best_model.pt")
    assert (result["n_train"], result["n_val"], result["n_test"]) == (9, 3, 3)
    for rank in range(WORLD):  # 3 samples each, split 2 + 1 over the ranks: no padding duplicates
        assert json.loads(Path(f"{rows}{rank}.json").read_text()) == {"val": 3, "test": 3}
    best = torch.load(run_dir / "best_model.pt", weights_only=True)
    assert best and not any(key.startswith("module.") for key in best)
    val_history = json.loads((run_dir / "val_history.json").read_text())
    assert [epoch for epoch, _ in val_history["val_joint_accuracy"]] == [1]
    # 9 training images, global batch 4 = 2 per process, 5 per process (padded): 2 steps
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["checkpoint_2.pt"]
    assert len(_tensorboard_writers(run_dir / "tensorboard")) == 1


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
    assert len(_tensorboard_writers(output_dir / "pretrain" / "tensorboard")) == 1


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
