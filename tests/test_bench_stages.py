import pytest

from camcontrast_monai.apps.bench.stages import _run_compute, bench_stages


def test_bench_stages_times_the_shipped_run_against_its_compute(capsys, tmp_path):
    report = bench_stages(stages="finetune_cls", epochs=2, rounds=1, quick=True, workdir=str(tmp_path), num_workers=0)
    row = report["stages"]["finetune_cls"]
    # the quick demo: 40 downstream images, IDRiD's split leaves 24 for training, in batches of 8
    assert row["images_per_epoch"] == 24 and row["batch_size"] == 8 and row["num_workers"] == 0
    assert row["cached"] == "CacheDataset (24/24 cached)"  # the fine-tuning config caches its training images
    assert row["shipped_images_per_s"]["median"] > 0 and row["compute_images_per_s"]["median"] > 0
    ratio = row["shipped_images_per_s"]["median"] / row["compute_images_per_s"]["median"]
    assert row["shipped_over_compute"]["median"] == pytest.approx(ratio)
    assert 0 < row["validation_fraction"]["median"] < 1  # the bundle validates every epoch
    assert "finetune_cls" in capsys.readouterr().out


def test_bench_stages_refuses_unknown_stages_and_single_epochs():
    with pytest.raises(ValueError, match="unknown stages"):
        bench_stages(stages="stage3")
    with pytest.raises(ValueError, match="epochs must be"):
        bench_stages(stages="stage1", epochs=1)


def test_compute_loop_steps_the_trainer_once_per_batch_and_epoch():
    class Recorder:
        autocast_dtype = None

        def __init__(self):
            import torch

            self.network = torch.nn.Linear(2, 1)
            self.optimizer = torch.optim.SGD(self.network.parameters(), lr=0.0)
            self.state = type("State", (), {"device": "cpu", "iteration": 0})()
            self.seen = []

        def forward_loss(self, batch):
            self.seen.append((self.state.iteration, batch["image"].shape[0]))
            return {"loss": self.network(batch["image"]).sum()}

    import torch

    trainer = Recorder()
    batches = [{"image": torch.ones(3, 2)}, {"image": torch.ones(2, 2)}]
    assert _run_compute(trainer, batches, epochs=2) > 0
    # one warm-up step, then two epochs of the two batches, numbered as the trainer's iterations
    assert trainer.seen == [(1, 3), (1, 3), (2, 2), (3, 3), (4, 2)]


def test_bench_stages_times_a_baseline_beside_the_shipped_run(tmp_path, capsys):
    report = bench_stages(
        stages="finetune_cls", epochs=2, rounds=1, quick=True, workdir=str(tmp_path), num_workers=0,
        baseline_overrides={"fused_optimizer": False},
    )  # fmt: skip
    row = report["stages"]["finetune_cls"]
    ratio = row["shipped_images_per_s"]["median"] / row["baseline_images_per_s"]["median"]
    assert row["shipped_over_baseline"]["median"] == pytest.approx(ratio)
    # both runs trained, each in its own folder, the baseline with torch's per-tensor optimiser step
    runs = tmp_path / "runs" / "finetune_cls" / "round0"
    histories = sorted(path.relative_to(runs).parts[0] for path in runs.rglob("loss_history.json"))
    assert histories == ["baseline", "shipped"]
    assert "shipped / baseline" in capsys.readouterr().out
