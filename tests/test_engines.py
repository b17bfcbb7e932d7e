import json

import pytest
import torch
from monai.engines.utils import IterationEvents
from monai.transforms import Lambdad

from camcontrast_monai.data import FixedCropDataset
from camcontrast_monai.engines import (
    FinetuneTrainer,
    History,
    MultilabelStage1Trainer,
    ResumableCheckpoint,
    Stage1Trainer,
    Stage2Trainer,
    latest_checkpoint,
)
from camcontrast_monai.losses import CAMClassifierLoss, ImageHeatmapNTXentLoss
from camcontrast_monai.networks import CAMClassifier, CAMContrastNet


def stage1_batches():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 32, 32, generator=generator)
    labels = torch.tensor([0, 1] * 6)
    return [{"image": images[i : i + 4], "label": labels[i : i + 4]} for i in range(0, 12, 4)]


def stage1_trainer(save_dir, history_path, max_epochs, seed=0):
    torch.manual_seed(seed)
    network = CAMClassifier(width=2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    handlers = [
        ResumableCheckpoint(str(save_dir), {"network": network, "optimizer": optimizer}),
        History(str(history_path), keys=("loss", "attention")),
    ]
    trainer = Stage1Trainer(
        device="cpu", max_epochs=max_epochs, train_data_loader=stage1_batches(), network=network,
        optimizer=optimizer, loss_function=CAMClassifierLoss(), train_handlers=handlers,
    )  # fmt: skip
    return trainer, network


def test_resumed_run_continues_with_identical_losses_and_weights(tmp_path):
    straight, straight_net = stage1_trainer(tmp_path / "a", tmp_path / "a.json", max_epochs=3)
    straight.run()

    first, _ = stage1_trainer(tmp_path / "b", tmp_path / "b.json", max_epochs=1)
    first.run()
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint_3.pt"
    # a new process: new objects with a different initialisation, restored from the checkpoint
    resumed, resumed_net = stage1_trainer(tmp_path / "b", tmp_path / "b.json", max_epochs=3, seed=123)
    resumed.run()

    assert resumed.state.iteration == 9 and resumed.state.epoch == 3
    for key, value in straight_net.state_dict().items():
        assert torch.equal(value, resumed_net.state_dict()[key]), key
    straight_history = json.loads((tmp_path / "a.json").read_text())
    resumed_history = json.loads((tmp_path / "b.json").read_text())
    assert resumed_history == straight_history
    assert [step for step, _ in resumed_history["loss"]] == list(range(1, 10))
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["checkpoint_9.pt"]  # the epoch-1 file is pruned


def test_checkpoints_refuse_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "ckpt").mkdir()
    torch.save({"network": Payload()}, tmp_path / "ckpt" / "checkpoint_5.pt")
    trainer, _ = stage1_trainer(tmp_path / "ckpt", tmp_path / "h.json", max_epochs=1)
    with pytest.raises(ValueError, match="refused to load .*checkpoint_5.pt"):
        trainer.run()


def test_history_from_metrics_records_per_epoch(tmp_path):
    history = History(str(tmp_path / "val.json"), keys=("val_auc",), source="metrics")
    with pytest.raises(ValueError, match="source"):
        History(str(tmp_path / "x.json"), source="bogus")

    class FakeEngine:
        class state:
            epoch = 2
            metrics = {"val_auc": 0.75, "other": 1.0}

    history._record(FakeEngine)
    assert json.loads((tmp_path / "val.json").read_text()) == {"val_auc": [[2, 0.75]]}


def test_stage1_trainer_reports_loss_terms_under_bf16_autocast():
    torch.manual_seed(0)
    network = CAMClassifier(width=2)
    trainer = Stage1Trainer(
        device="cpu", max_epochs=1, train_data_loader=stage1_batches()[:1], network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.01), loss_function=CAMClassifierLoss(),
        autocast_dtype="bfloat16",
    )  # fmt: skip
    batch_output = []  # the output before MONAI decollates it
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda engine: batch_output.append(dict(engine.state.output)))
    trainer.run()
    loss = batch_output[0]["loss"]
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(batch_output[0]["cross_entropy"].item() + 0.01 * batch_output[0]["attention"].item(), rel=1e-5)
    assert len(trainer.state.output) == 4  # decollated, MONAI's default: one dict per sample, the loss in each
    assert trainer.state.output[0]["pred"].shape == (2,) and trainer.state.output[3]["loss"] == pytest.approx(loss.item())
    with pytest.raises(ValueError, match="autocast dtype"):
        Stage1Trainer(device="cpu", max_epochs=1, train_data_loader=[], network=network, optimizer=trainer.optimizer,
                      loss_function=CAMClassifierLoss(), autocast_dtype="int8")  # fmt: skip


def _finetune_run(trainer_class, batch=None, seen_inputs=None, **kwargs):
    """One SGD step of a small conv classifier with ``trainer_class``: the weights after it and the batch output."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    batch = batch or stage1_batches()[:1]
    seen_dtypes = []
    network[0].register_forward_hook(lambda module, inputs, output: seen_dtypes.append(output.dtype))
    if seen_inputs is not None:
        network[0].register_forward_pre_hook(lambda module, inputs: seen_inputs.append(type(inputs[0])))
    trainer = trainer_class(
        device="cpu", max_epochs=1, train_data_loader=batch, network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.5),
        loss_function=torch.nn.CrossEntropyLoss(), **kwargs,
    )  # fmt: skip
    outputs = []
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda engine: outputs.append(dict(engine.state.output)))
    trainer.run()
    return torch.cat([p.detach().flatten() for p in network.parameters()]), outputs[0], seen_dtypes


def test_finetune_trainer_steps_as_supervised_trainer_and_autocasts_on_the_cpu():
    from monai.engines import SupervisedTrainer

    monai_weights, monai_output, _ = _finetune_run(SupervisedTrainer)
    ours_weights, ours_output, dtypes = _finetune_run(FinetuneTrainer)
    assert dtypes == [torch.float32]
    assert torch.allclose(ours_weights, monai_weights, atol=1e-7)
    assert ours_output["loss"].item() == pytest.approx(monai_output["loss"].item(), rel=1e-6)
    assert set(ours_output) >= {"image", "label", "pred", "loss"}
    # SupervisedTrainer(amp=True) autocasts on CUDA only; ours runs the forward in bf16 on the CPU, the loss in float32
    bf16_weights, bf16_output, dtypes = _finetune_run(FinetuneTrainer, autocast_dtype="bfloat16", channels_last=True)
    assert dtypes == [torch.bfloat16]
    assert bf16_output["loss"].dtype == torch.float32 and bf16_output["pred"].dtype == torch.float32
    assert bf16_output["loss"].item() == pytest.approx(monai_output["loss"].item(), abs=0.02)
    assert not torch.equal(bf16_weights, monai_weights) and torch.allclose(bf16_weights, monai_weights, atol=0.02)


def test_the_step_sees_a_plain_tensor_with_the_values_of_a_metatensor_batch():
    from monai.data import MetaTensor

    plain = stage1_batches()[:1]
    meta = [{"image": MetaTensor(plain[0]["image"], meta={"filename_or_obj": "a.png"}), "label": plain[0]["label"]}]
    seen = []
    plain_weights, plain_output, _ = _finetune_run(FinetuneTrainer, batch=plain, seen_inputs=seen)
    meta_weights, meta_output, _ = _finetune_run(FinetuneTrainer, batch=meta, seen_inputs=seen)
    assert seen == [torch.Tensor, torch.Tensor]  # no MetaTensor bookkeeping through the forward and backward passes
    assert torch.equal(meta_weights, plain_weights) and meta_output["loss"].item() == plain_output["loss"].item()


def test_auto_precision_is_bf16_where_the_cpu_has_it_and_float32_with_a_note_where_not(monkeypatch, caplog):
    from camcontrast_monai.engines import bf16_supported, resolve_autocast_dtype

    assert resolve_autocast_dtype("cpu", None) is None and resolve_autocast_dtype("cpu", "bfloat16") == "bfloat16"
    native, _ = bf16_supported("cpu")
    assert resolve_autocast_dtype("cpu", "auto") == ("bfloat16" if native else None)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level("WARNING"):
        assert resolve_autocast_dtype("cpu", "auto") is None
    assert "autocast_dtype auto -> float32: CPU lacks native bf16" in caplog.text
    _, _, dtypes = _finetune_run(FinetuneTrainer, autocast_dtype="auto")
    assert dtypes == [torch.float32]


def test_fixed_crop_dataset_serves_every_crop_of_every_image():
    images = [torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(3, 32, 32) + 10_000 * i for i in range(2)]
    heatmaps = [torch.arange(4, dtype=torch.float32).reshape(1, 2, 2) + 100 * i for i in range(2)]
    data = [{"image": images[i], "heatmap": heatmaps[i], "label": i} for i in range(2)]
    dataset = FixedCropDataset(data, image_transform=Lambdad("image", lambda x: x), progress=False, num_workers=0)
    assert len(dataset) == 10
    sample = dataset[7]  # image 1, crop 2 = bottom-left
    assert sample["crop_index"] == 2 and sample["label"] == 1
    assert torch.equal(sample["image"], images[1][:, 16:, :16])
    assert torch.equal(sample["heatmap"], heatmaps[1][:, 1:, :1])
    with pytest.raises(ValueError, match="empty"):
        FixedCropDataset([], image_transform=Lambdad("image", lambda x: x))


def test_stage2_trainer_learns_to_match_images_to_heatmaps():
    torch.manual_seed(0)
    images = torch.rand(8, 3, 32, 32)
    heatmaps = torch.rand(8, 1, 2, 2)
    network = CAMContrastNet(width=2, heatmap_channels=(4, 4, 4), projection_dim=16)
    loss = ImageHeatmapNTXentLoss(temperature=0.5)
    trainer = Stage2Trainer(
        device="cpu", max_epochs=30, train_data_loader=[{"image": images, "heatmap": heatmaps}], network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-2), loss_function=loss,
    )  # fmt: skip
    with torch.no_grad():
        before = loss(*network.eval()(images, heatmaps)).item()
    trainer.run()
    with torch.no_grad():
        after = loss(*network.eval()(images, heatmaps)).item()
    assert len(trainer.state.output) == 8 and trainer.state.output[0]["z_image"].shape == (16,)
    assert after < before - 0.5


def test_stage2_trainer_augments_each_batch_with_the_iteration_as_step():
    images, heatmaps = torch.rand(4, 3, 32, 32), torch.rand(4, 1, 2, 2)
    network = CAMContrastNet(width=2, heatmap_channels=(4, 4, 4), projection_dim=8)
    calls, seen = [], []
    network.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))

    def augmentation(batch, step):
        calls.append((step, torch.is_grad_enabled(), batch.dtype))
        return 1.0 - batch

    trainer = Stage2Trainer(
        device="cpu", max_epochs=2, train_data_loader=[{"image": images, "heatmap": heatmaps}], network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.0), loss_function=ImageHeatmapNTXentLoss(0.5),
        batch_augmentation=augmentation, autocast_dtype="bfloat16",
    )  # fmt: skip
    trainer.run()
    assert calls == [(1, False, torch.float32), (2, False, torch.float32)]
    torch.testing.assert_close(seen[0], 1.0 - images)


def _linear_multilabel_trainer(batches, accumulation_steps=1, prepare_batch=None):
    """A network without batch norm and a mean loss, so 2 accumulated batches of 2 equal 1 batch of 4."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.5)
    extra = {"prepare_batch": prepare_batch} if prepare_batch else {}
    trainer = MultilabelStage1Trainer(
        device="cpu", max_epochs=1, train_data_loader=batches, network=network, optimizer=optimizer,
        loss_function=torch.nn.BCEWithLogitsLoss(), accumulation_steps=accumulation_steps, **extra,
    )  # fmt: skip
    return trainer, network


def _multilabel_batches(batch_size):
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(8, 3, 4, 4, generator=generator), torch.randint(0, 2, (8, 2), generator=generator)
    return [{"image": images[i : i + batch_size], "label": labels[i : i + batch_size]} for i in range(0, 8, batch_size)]


def test_accumulated_gradients_step_as_one_larger_batch():
    whole, whole_net = _linear_multilabel_trainer(_multilabel_batches(4))
    accumulated, accumulated_net = _linear_multilabel_trainer(_multilabel_batches(2), accumulation_steps=2)
    steps = []
    accumulated.optimizer.register_step_post_hook(lambda *_: steps.append(accumulated.state.iteration))
    whole.run()
    accumulated.run()
    assert steps == [2, 4]  # one optimiser step per 2 batches
    for (name, value), other in zip(whole_net.state_dict().items(), accumulated_net.state_dict().values(), strict=True):
        torch.testing.assert_close(other, value, rtol=1e-6, atol=1e-7, msg=name)
    # an epoch that ends inside a window still steps: 3 batches with accumulation 2 step at 2 and 3
    odd, _ = _linear_multilabel_trainer(_multilabel_batches(2)[:3], accumulation_steps=2)
    odd_steps = []
    odd.optimizer.register_step_post_hook(lambda *_: odd_steps.append(odd.state.iteration))
    odd.run()
    assert odd_steps == [2, 3]
    with pytest.raises(ValueError, match="accumulation_steps"):
        _linear_multilabel_trainer(_multilabel_batches(2), accumulation_steps=0)


def test_a_prepare_batch_callable_maps_each_batch_first():
    renamed = [{"pixels": b["image"], "targets": b["label"]} for b in _multilabel_batches(4)]
    seen = []

    def prepare(batch, device, non_blocking):
        seen.append(device)
        return {"image": batch["pixels"], "label": batch["targets"]}

    trainer, _ = _linear_multilabel_trainer(renamed, prepare_batch=prepare)
    trainer.run()
    assert len(seen) == 2 and trainer.state.output[0]["loss"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 loss scaling is for CUDA; scripts/gpu_check.sh runs it there")
def test_float16_on_cuda_scales_the_loss():
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2)).cuda()
    trainer = MultilabelStage1Trainer(
        device="cuda", max_epochs=1, train_data_loader=_multilabel_batches(4), network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1), loss_function=torch.nn.BCEWithLogitsLoss(),
        autocast_dtype="float16",
    )  # fmt: skip
    trainer.run()
    assert trainer.grad_scaler is not None and trainer.grad_scaler.get_scale() > 0


def test_no_loss_scaler_off_cuda_or_without_float16():
    trainer, _ = _linear_multilabel_trainer(_multilabel_batches(4))
    assert trainer.grad_scaler is None


def test_trivial_predictor_scores_by_hand():
    import numpy as np

    from camcontrast_monai.engines import label_combination_logits, trivial_test_score
    from camcontrast_monai.metrics import JointAccuracy, segmentation_metric

    # (DR, DME) pairs: (2, 1) is the most frequent pair; the per-head majorities would give (0, 1)
    train = [[0, 1], [2, 1], [2, 1], [0, 0], [0, 2]]
    candidates = label_combination_logits(train, [5, 3])
    assert [c.nonzero().flatten().tolist() for c in candidates] == [[2, 6], [0, 5], [0, 6], [0, 7]]
    constants = [lambda label, c=c: c[None] for c in candidates]
    train_samples = [{"label": np.array(pair)} for pair in train]
    test = [{"label": np.array(pair)} for pair in ([2, 1], [2, 0], [2, 1], [0, 1])]
    assert trivial_test_score(JointAccuracy([5, 3]), train_samples, test, constants) == pytest.approx(0.5)
    # segmentation: all foreground beats all background on the training masks' F1 (2p / (1 + p), p = 1/2), and
    # scores 2 * 6/128 / (1 + 6/128) on the test masks; every constant has AUC-PR = positive-pixel rate
    first, second = torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)
    first[0, :2, :2], second[0, 0, :2] = 1, 1
    masks = [{"label": first}, {"label": second}]
    half = torch.zeros(1, 8, 8)
    half[0, :4] = 1
    both = [torch.zeros_like, torch.ones_like]
    rate = 6 / 128
    assert trivial_test_score(segmentation_metric("f1"), [{"label": half}], masks, both) == pytest.approx(2 * rate / (1 + rate))
    assert trivial_test_score(segmentation_metric("auc_pr"), [{"label": half}], masks, both) == pytest.approx(rate)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        label_combination_logits([[1, 2, 3]], [5, 3])
