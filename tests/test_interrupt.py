"""Interrupted runs resume without loss and, with a fixed seed, end with the weights of an uninterrupted run.

In-process: shuffled loaders and random MONAI transforms, a run of 3 epochs against 1 epoch + new
objects resumed for epochs 2-3. Subprocess: the bundle's own command, killed with SIGKILL mid-epoch
and rerun, against the same command run without interruption.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ignite.handlers import DiskSaver
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, RandFlipd, RandGaussianNoised

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.data import FixedCropDataset
from camcontrast_monai.engines import (
    History,
    ResumableCheckpoint,
    Stage1Trainer,
    Stage2Trainer,
    latest_checkpoint,
)
from camcontrast_monai.engines.handlers import EpochSeeding
from camcontrast_monai.losses import CAMClassifierLoss, ImageHeatmapNTXentLoss
from camcontrast_monai.networks import CAMClassifier, CAMContrastNet
from camcontrast_monai.synthetic import write_fundus_dataset
from camcontrast_monai.transforms import stage2_image_augmentation

BUNDLE = bundle_path()


def assert_same_tensors(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, actual[key]), key


# --- in-process: a new trainer restored from the checkpoint repeats the uninterrupted epochs ---------


def stage1_run(out: Path, max_epochs: int, init_seed: int, seeding: bool = True, num_workers: int = 0):
    torch.manual_seed(init_seed)  # a resumed run starts from other weights and another RNG state
    generator = torch.Generator().manual_seed(0)
    data = [{"image": torch.rand(3, 32, 32, generator=generator), "label": i % 2} for i in range(12)]
    transform = Compose(
        [RandFlipd("image", prob=0.5, spatial_axis=-1), RandGaussianNoised("image", prob=0.5, std=0.1)]
    )
    loader = DataLoader(Dataset(data, transform), batch_size=4, shuffle=True, num_workers=num_workers)
    network = CAMClassifier(width=2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    handlers = [
        ResumableCheckpoint(str(out / "checkpoints"), {"network": network, "optimizer": optimizer}),
        History(str(out / "loss.json"), keys=("loss", "attention")),
    ]
    if seeding:
        handlers.insert(0, EpochSeeding(seed=7, data_loader=loader))
    trainer = Stage1Trainer(
        device="cpu", max_epochs=max_epochs, train_data_loader=loader, network=network, optimizer=optimizer,
        loss_function=CAMClassifierLoss(), train_handlers=handlers,
    )  # fmt: skip
    trainer.run()
    return network


def stage2_run(out: Path, max_epochs: int, init_seed: int):
    torch.manual_seed(init_seed)
    generator = torch.Generator().manual_seed(1)
    data = [
        {
            "image": torch.rand(3, 32, 32, generator=generator),
            "heatmap": torch.rand(1, 4, 4, generator=generator),
            "label": i % 2,
        }
        for i in range(4)
    ]
    dataset = FixedCropDataset(
        data, image_transform=Compose([]), crop_transform=stage2_image_augmentation("image", spatial_size=[16, 16]),
        progress=False, num_workers=0,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=5, shuffle=True, drop_last=True)
    network = CAMContrastNet(width=2, heatmap_channels=(4, 4, 4), projection_dim=8)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
    trainer = Stage2Trainer(
        device="cpu", max_epochs=max_epochs, train_data_loader=loader, network=network, optimizer=optimizer,
        loss_function=ImageHeatmapNTXentLoss(temperature=0.5),
        train_handlers=[
            EpochSeeding(seed=3, data_loader=loader),
            ResumableCheckpoint(str(out / "checkpoints"), {"network": network, "optimizer": optimizer}),
            History(str(out / "loss.json"), keys=("loss",)),
        ],
    )  # fmt: skip
    trainer.run()
    return network


@pytest.mark.parametrize("run", [stage1_run, stage2_run], ids=["stage1", "stage2"])
def test_resumed_run_repeats_the_uninterrupted_one(tmp_path, run):
    straight = run(tmp_path / "straight", max_epochs=3, init_seed=0)
    run(tmp_path / "resumed", max_epochs=1, init_seed=0)
    resumed = run(tmp_path / "resumed", max_epochs=3, init_seed=123)  # new objects, other init and RNG state
    assert_same_tensors(straight.state_dict(), resumed.state_dict())
    history = json.loads((tmp_path / "straight" / "loss.json").read_text())
    assert json.loads((tmp_path / "resumed" / "loss.json").read_text()) == history
    steps = [step for step, _ in history["loss"]]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) % 3 == 0
    # rerunning a finished run trains nothing and keeps its history
    again = run(tmp_path / "resumed", max_epochs=3, init_seed=5)
    assert_same_tensors(straight.state_dict(), again.state_dict())
    assert json.loads((tmp_path / "resumed" / "loss.json").read_text()) == history


def test_without_epoch_seeding_a_resumed_run_diverges(tmp_path):
    # the reason EpochSeeding exists: shuffle order and augmentation depend on the process's history
    straight = stage1_run(tmp_path / "a", 3, 0, seeding=False)
    stage1_run(tmp_path / "b", 1, 0, seeding=False)
    resumed = stage1_run(tmp_path / "b", 3, 123, seeding=False)
    assert any(not torch.equal(v, resumed.state_dict()[k]) for k, v in straight.state_dict().items())


def test_worker_processes_are_seeded_per_epoch(tmp_path):
    straight = stage1_run(tmp_path / "a", 2, 0, num_workers=2)
    stage1_run(tmp_path / "b", 1, 0, num_workers=2)
    resumed = stage1_run(tmp_path / "b", 2, 99, num_workers=2)
    assert_same_tensors(straight.state_dict(), resumed.state_dict())


def test_a_save_killed_half_way_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    calls = []
    original = DiskSaver.__call__

    def dies_on_second_save(self, checkpoint, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while saving")
        original(self, checkpoint, filename, metadata)

    monkeypatch.setattr(DiskSaver, "__call__", dies_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        stage1_run(tmp_path, max_epochs=3, init_seed=0)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["checkpoint_3.pt"]
    torch.load(tmp_path / "checkpoints" / "checkpoint_3.pt", weights_only=True)


def test_a_checkpoint_without_an_object_of_the_save_dict_is_refused_by_name(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    trainer_state = {"epoch": 1, "iteration": 3, "epoch_length": 3}
    torch.save({"network": {}, "trainer": trainer_state}, tmp_path / "checkpoints" / "checkpoint_3.pt")
    with pytest.raises(ValueError, match=r"checkpoint_3.pt holds no \['optimizer'\]"):
        stage1_run(tmp_path, max_epochs=2, init_seed=0)


def test_a_checkpoint_of_another_network_shape_names_the_folder_and_the_fix(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    other = CAMClassifier(width=2, num_classes=5)  # e.g. a multilabel stage 1 in the binary run's folder
    optimizer = torch.optim.SGD(other.parameters(), lr=0.1)
    trainer_state = {"epoch": 1, "iteration": 3, "epoch_length": 3}
    torch.save({"network": other.state_dict(), "optimizer": optimizer.state_dict(), "trainer": trainer_state},
               tmp_path / "checkpoints" / "checkpoint_3.pt")  # fmt: skip
    with pytest.raises(ValueError, match=r"checkpoint_3.pt does not fit this run's network .*another output_dir"):
        stage1_run(tmp_path, max_epochs=2, init_seed=0)


def test_epoch_seeds_depend_on_seed_and_epoch_only():
    seeding = EpochSeeding(seed=0)
    assert seeding.epoch_seeds(3) == EpochSeeding(seed=0).epoch_seeds(3)
    assert (
        len({seeding.epoch_seeds(epoch) for epoch in range(1, 50)} | {EpochSeeding(seed=1).epoch_seeds(1)})
        == 50
    )
    with pytest.raises(ValueError, match="non-negative"):
        EpochSeeding(seed=-1)


# --- a real kill -9 of the bundle's command ---------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt_data")
    write_fundus_dataset(root / "pretrain", n=24, seed=0, image_size=64)
    write_fundus_dataset(root / "downstream", n=15, seed=1, image_size=64)
    return root


def bundle_command(configs: list[str], data_dir: Path, output_dir: Path, *overrides: str) -> list[str]:
    """``python -m monai.bundle run`` of ``configs`` at tiny sizes; everything it writes goes under
    ``output_dir`` (the stage-2 encoder too), so two runs differ only in that folder."""
    config_files = str([f"configs/{name}" for name in configs])
    return [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", config_files, "--bundle_root", str(BUNDLE),
        "--dataset_dir", str(data_dir), "--output_dir", str(output_dir), "--encoder_path", str(output_dir / "model.pt"),
        "--image_size", "64", "--width", "2", "--num_workers", "0", *overrides,
    ]  # fmt: skip


def start(command: list[str], log: Path | None = None) -> subprocess.Popen:
    """Start ``command`` in the bundle folder, its output to ``log`` or, without one, to a pipe."""
    # one thread each: two runs side by side on two cores would otherwise stall in OpenMP barriers
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    output = subprocess.PIPE if log is None else log.open("wb")
    process = subprocess.Popen(command, cwd=BUNDLE, stdout=output, stderr=subprocess.STDOUT, env=env)
    if log is not None:
        output.close()
    return process


def finish(process: subprocess.Popen, log: Path) -> str:
    process.wait(timeout=180)
    text = log.read_text(errors="replace")
    assert process.returncode == 0, text[-3000:]
    return text


def kill_mid_epoch(process: subprocess.Popen, progress: str, checkpoints: Path) -> None:
    """Read the run's output until its progress bar shows ``progress`` ("... [epoch/epochs]: [iteration/
    iterations]"), SIGKILL it there, and check that the previous epoch's checkpoint survived."""
    epoch, epoch_length = map(int, re.search(r"\[(\d+)/\d+\]: \[\d+/(\d+)\]", progress).groups())
    pattern, seen, deadline = re.compile(re.escape(progress).encode()), b"", time.monotonic() + 180
    while not pattern.search(seen):
        chunk = os.read(process.stdout.fileno(), 65536)
        assert chunk and time.monotonic() < deadline, (
            f"run ended before {progress!r}: {seen.decode(errors='replace')[-3000:]}"
        )
        seen += chunk
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    # at most one epoch lost, and nothing left that a rerun would trust but cannot load
    newest = latest_checkpoint(checkpoints)
    assert (
        newest is not None
        and int(re.search(r"_(\d+)\.pt$", newest.name).group(1)) >= (epoch - 1) * epoch_length
    )
    for path in checkpoints.glob("checkpoint_*.pt"):
        torch.load(path, map_location="cpu", weights_only=True)


def kill_and_resume(
    configs: list[str], data_dir: Path, out: Path, run_dir: str, progress: str, *overrides: str
):
    """Run the command uninterrupted in ``out/straight`` and, side by side, killed at ``progress`` and
    rerun in ``out/killed``; check that the rerun resumed and wrote the same histories. Returns both
    run folders."""
    straight = start(bundle_command(configs, data_dir, out / "straight", *overrides), out / "straight.log")
    kill_mid_epoch(
        start(bundle_command(configs, data_dir, out / "killed", *overrides)),
        progress,
        out / "killed" / run_dir / "checkpoints",
    )
    resumed = start(bundle_command(configs, data_dir, out / "killed", *overrides), out / "resumed.log")
    finish(straight, out / "straight.log")
    log = finish(resumed, out / "resumed.log")
    # the bundle's logging.conf prints the handler's line
    assert re.search(
        r"camcontrast_monai\.engines\.handlers - INFO - resumed from \S+checkpoint_\d+\.pt at epoch [1-9]",
        log,
    ), log[-3000:]
    a, b = out / "straight" / run_dir, out / "killed" / run_dir
    for name in ("loss_history.json", "val_history.json"):
        if (a / name).exists():
            assert json.loads((b / name).read_text()) == json.loads((a / name).read_text()), name
    return a, b


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_stage1_killed_mid_epoch_resumes_to_the_same_classifier(data_dir, tmp_path):
    # 18 training images (6 of 24 held out, by patient), batch 2 -> 9 iterations an epoch
    overrides = ["--stage1_epochs", "4", "--stage1_batch_size", "2", "--stage1_val_fraction", "0.25"]
    a, b = kill_and_resume(
        ["common.json", "stage1.json"], data_dir, tmp_path, "stage1", "stage 1 [2/4]: [4/9]", *overrides
    )
    assert_same_tensors(load(a / "classifier.pt"), load(b / "classifier.pt"))
    assert [p.name for p in (b / "checkpoints").iterdir()] == ["checkpoint_36.pt"]


def test_stage2_killed_mid_epoch_resumes_to_the_same_encoder(data_dir, tmp_path):
    # heatmaps from a 1-epoch stage 1, made in this process (setup, not under test)
    common = {"bundle_root": str(BUNDLE), "dataset_dir": str(data_dir), "output_dir": str(tmp_path / "stage1"),
              "width": 2, "image_size": 64, "num_workers": 0}  # fmt: skip
    run_bundle(
        BUNDLE,
        ["common.json", "stage1.json"],
        "train",
        **common,
        stage1_epochs=1,
        stage1_batch_size=4,
        stage1_val_fraction=0.25,
    )
    run_bundle(BUNDLE, ["common.json", "heatmaps.json"], **common)
    # 24 images x 5 crops / batch 10 -> 12 iterations an epoch
    overrides = ["--heatmap_datalist", str(tmp_path / "stage1" / "heatmaps" / "heatmap_datalist.json"),
                 "--pretrain_epochs", "3", "--pretrain_batch_size", "10"]  # fmt: skip
    a, b = kill_and_resume(
        ["common.json", "pretrain.json"], data_dir, tmp_path, "pretrain", "stage 2 [2/3]: [5/12]", *overrides
    )
    assert_same_tensors(load(a.parent / "model.pt"), load(b.parent / "model.pt"))


def test_finetuning_killed_mid_epoch_resumes_to_the_same_weights_and_best_model(data_dir, tmp_path):
    # 9 training images of 15 (60%, by patient), batch 2 -> 4 iterations an epoch
    overrides = [
        "--init",
        "random",
        "--finetune_epochs",
        "3",
        "--finetune_batch_size",
        "2",
        "--crop_size",
        "48",
    ]
    run_dir = "finetune/grading/random_fraction1.0_seed0"
    a, b = kill_and_resume(
        ["common.json", "finetune_cls.json"],
        data_dir,
        tmp_path,
        run_dir,
        "fine-tune grading (random) [2/3]: [2/4]",
        *overrides,
    )
    final_a, final_b = latest_checkpoint(a / "checkpoints"), latest_checkpoint(b / "checkpoints")
    assert final_a.name == final_b.name
    assert_same_tensors(load(final_a)["network"], load(final_b)["network"])
    # the best-model tracking is part of the checkpoint: the resumed run keeps the same best model
    assert_same_tensors(load(a / "best_model.pt"), load(b / "best_model.pt"))
    metrics_a, metrics_b = (json.loads((run / "test_metrics.json").read_text()) for run in (a, b))
    assert metrics_b | {"weights": None} == metrics_a | {"weights": None}  # "weights" names the file
