"""``--tracking mlflow`` (MONAI's built-in experiment tracking, default settings) on every fundus training config.

MONAI's default MLflow handler reads the loss with ``from_engine(['loss'], first=True)``, which needs
decollated trainer outputs; it logs to a SQLite file store under ``output_dir``. The runs are read
back through MLflow's own client.
"""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from camcontrast_monai.apps.bundle import bundle_path, run_bundle

BUNDLE = bundle_path("fundus")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, mlflow_runs, tiny_data):
    root = tmp_path_factory.mktemp("tracking")
    tiny_data(root / "data", "fundus")
    common = {
        "bundle_root": str(BUNDLE), "dataset_dir": str(root / "data"), "output_dir": str(root / "runs"),
        "encoder_path": str(root / "models" / "model.pt"), "width": 2, "image_size": 32, "num_workers": 0,
        "tracking": "mlflow",
    }  # fmt: skip
    for name, configs, overrides in [
        ("stage1", ["stage1.json"], {"stage1_epochs": 2, "stage1_batch_size": 4, "stage1_val_fraction": 0.25}),
        ("heatmaps", ["heatmaps.json"], {"tracking": None}),
        ("pretrain", ["pretrain.json"], {"pretrain_epochs": 1, "pretrain_batch_size": 20}),
        ("simclr", ["pretrain.json", "pretrain_baseline.json", "pretrain_simclr.json"], {"pretrain_epochs": 1, "pretrain_batch_size": 20}),
        ("grading", ["finetune_cls.json"], {"finetune_epochs": 2, "finetune_batch_size": 4, "crop_size": 16}),
        ("vessels", ["finetune_seg.json"], {"seg_task": "vessels", "finetune_epochs": 2, "init": "random"}),
    ]:
        run_bundle(BUNDLE, ["common.json", *configs], "train" if name != "heatmaps" else None, **{**common, "run_name": name, **overrides})
    return root, mlflow_runs(root / "runs")


@pytest.mark.parametrize("run_name", ["stage1", "pretrain", "simclr", "grading", "vessels"])
def test_every_training_config_logs_its_loss_at_every_iteration(tracked, run_name):
    _, runs = tracked
    losses = runs[run_name]["train_loss"]
    assert losses, f"{run_name} logged no train_loss"
    assert [step for step, _ in losses] == list(range(1, len(losses) + 1))
    assert all(value == value and value >= 0 for _, value in losses)  # finite, non-negative


def test_the_logged_losses_are_those_of_the_run(tracked):
    root, runs = tracked
    history = json.loads((root / "runs" / "stage1" / "loss_history.json").read_text())["loss"]
    assert [(step, pytest.approx(value, rel=1e-5)) for step, value in history] == runs["stage1"]["train_loss"]


def tensorboard_scalars(folder: Path) -> set[str]:
    tags = set()
    for log in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(log))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


@pytest.mark.parametrize("run_name,folder,metric", [
    ("stage1", "stage1", "val_auc"), ("grading", "finetune/grading", "val_joint_accuracy"), ("vessels", "finetune/vessels", "val_score"),
])  # fmt: skip
def test_validation_metrics_reach_mlflow_and_tensorboard(tracked, run_name, folder, metric):
    root, runs = tracked
    assert [step for step, _ in runs[run_name][metric]] == [1, 2]
    assert {"train_loss", metric} <= tensorboard_scalars(root / "runs" / folder)
