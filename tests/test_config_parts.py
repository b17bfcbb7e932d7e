"""The named functions that the shared bundle configs call in _target_ blocks instead of branching in expressions."""

import math

import pytest
import torch
from monai.data.utils import set_rnd
from monai.handlers import ROCAUC, ConfusionMatrix
from monai.transforms import Compose, Lambdad

from camcontrast_monai.data import FixedCropDataset, stage2_dataset
from camcontrast_monai.engines import (
    named_optimizer,
    stage1_additional_metrics,
    stage1_loss,
    stage1_loss_keys,
    stage1_metrics,
    stage1_postprocessing,
)
from camcontrast_monai.losses import CAMClassifierLoss
from camcontrast_monai.metrics import AveragePrecision, MeanF1, MultilabelAUC, segmentation_metric
from camcontrast_monai.transforms import (
    BatchStage2Augmentation,
    augmented_views,
    resolve_batched_augmentation,
    stage2_batch_augmentation,
)


def pairs(n_images, size=8, heatmap_size=4):
    """Images whose pixel values are their flat index plus 1000 * image number; heatmaps likewise, on a coarser grid."""
    def grid(side, offset):
        return (torch.arange(side * side, dtype=torch.float32).reshape(1, side, side) + offset)

    return [{"image": grid(size, 1000 * i), "heatmap": grid(heatmap_size, 1000 * i), "label": i % 2} for i in range(n_images)]


@pytest.mark.parametrize(("strategy", "crops"), [("five", 5), ("four", 4)])
def test_fixed_strategies_serve_every_crop_of_every_image(strategy, crops):
    dataset = stage2_dataset(pairs(3), Lambdad("image", lambda x: x), crop_strategy=strategy, num_workers=0, progress=False)
    assert isinstance(dataset, FixedCropDataset) and len(dataset) == 3 * crops
    bottom_right = dataset[3 + crops]  # image 1, crop BR: rows 4-7, columns 4-7 of 8x8; heatmap rows/columns 2-3 of 4x4
    assert bottom_right["image"][0, 0, 0] == 1000 + 4 * 8 + 4 and bottom_right["heatmap"][0, 0, 0] == 1000 + 2 * 4 + 2


def test_random_crops_are_half_size_and_the_same_region_in_image_and_heatmap():
    dataset = stage2_dataset(pairs(2), Lambdad("image", lambda x: x), crop_strategy="random", num_workers=0, progress=False)
    assert len(dataset) == 2
    corners = set()
    for _ in range(40):
        sample = dataset[1]
        image, heatmap = sample["image"][0], sample["heatmap"][0]
        assert image.shape == (4, 4) and heatmap.shape == (2, 2)
        row, col = divmod(int(heatmap[0, 0]) - 1000, 4)  # the heatmap cell the crop starts at
        assert int(image[0, 0]) - 1000 == (2 * row) * 8 + 2 * col  # image pixel (2 row, 2 col): the same corner
        corners.add((row, col))
    assert len(corners) > 1, "the crop position must be random"


def test_no_crop_serves_the_whole_image_and_an_unknown_strategy_is_refused():
    whole = stage2_dataset(pairs(2), Lambdad("image", lambda x: x), crop_strategy="none", num_workers=0, progress=False)
    assert len(whole) == 2 and whole[0]["image"].shape == (1, 8, 8)
    with pytest.raises(ValueError, match="unknown crop strategy 'six'"):
        stage2_dataset(pairs(2), Lambdad("image", lambda x: x), crop_strategy="six")


def test_segmentation_metrics_by_name():
    assert isinstance(segmentation_metric("auc_pr"), AveragePrecision)
    assert isinstance(segmentation_metric("f1"), MeanF1)
    with pytest.raises(ValueError, match="'dice'"):
        segmentation_metric("dice")


def test_optimizers_by_name():
    params = [torch.nn.Parameter(torch.zeros(2))]
    adamw = named_optimizer("adamw", params, lr=3e-4, weight_decay=1e-5)
    sgd = named_optimizer("sgd", params, lr=0.01, weight_decay=1e-5)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["lr"] == 3e-4
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 1e-5
    with pytest.raises(ValueError, match="'adam'"):
        named_optimizer("adam", params, lr=0.1)


def test_stage1_parts_for_coarse_labels():
    loss = stage1_loss(False, attention_weight=0.02)
    assert isinstance(loss, CAMClassifierLoss) and loss.attention_weight == 0.02
    assert stage1_loss_keys(False) == ["loss", "cross_entropy", "attention"]
    assert isinstance(stage1_metrics(False)["val_auc"], ROCAUC)
    assert isinstance(stage1_additional_metrics(False)["val_accuracy"], ConfusionMatrix)
    sample = stage1_postprocessing(False)({"pred": torch.tensor([0.0, math.log(3.0)]), "label": torch.tensor(1)})
    torch.testing.assert_close(sample["pred"], torch.tensor([0.25, 0.75]))  # softmax of logits 0 and log 3
    assert sample["pred_class"].tolist() == [0.0, 1.0] and sample["label"].tolist() == [0.0, 1.0]


def test_stage1_parts_for_multilabel_findings():
    assert isinstance(stage1_loss(True), torch.nn.BCEWithLogitsLoss)
    assert stage1_loss_keys(True) == ["loss"]
    assert isinstance(stage1_metrics(True)["val_auc"], MultilabelAUC) and stage1_additional_metrics(True) == {}
    sample = stage1_postprocessing(True)({"pred": torch.tensor([0.0, math.log(3.0)]), "label": torch.tensor([0.0, 1.0])})
    torch.testing.assert_close(sample["pred"], torch.tensor([0.5, 0.75]))  # sigmoid, no one-hot
    assert "pred_class" not in sample


def test_batched_augmentation_is_off_or_the_2d_chain_by_default():
    assert stage2_batch_augmentation(False, [4, 4]) is None
    assert isinstance(stage2_batch_augmentation(True, [4, 4], seed=3), BatchStage2Augmentation)


def test_auto_augments_in_batches_on_a_gpu_or_without_workers_and_in_the_workers_on_a_cpu():
    assert resolve_batched_augmentation("auto", "cpu", 2) is False
    assert resolve_batched_augmentation("auto", torch.device("cpu"), 0) is True
    assert resolve_batched_augmentation("auto", torch.device("cuda", 1), 2) is True
    assert resolve_batched_augmentation("false", "cuda", 0) is False  # an explicit switch wins, in any spelling
    assert resolve_batched_augmentation(True, "cpu", 2) is True
    with pytest.raises(ValueError, match="'batched_augmentation'.*'sometimes'"):
        resolve_batched_augmentation("sometimes", "cpu", 2)


def test_augmented_views_copy_then_augment_each_view_on_its_own():
    views = Compose(augmented_views(["image", "image_2"], spatial_size=[6, 6], scale=(0.3, 0.5)))
    set_rnd(views, 0)  # as MONAI's DataLoader seeds each random transform of a dataset's chain
    sample = views({"image": torch.rand(3, 12, 12)})
    assert sample["image"].shape == sample["image_2"].shape == (3, 6, 6)
    assert sample["image"].dtype == torch.float32 and not torch.equal(sample["image"], sample["image_2"])
    single = augmented_views(["image"])
    assert len(single) == 2  # no copy: the augmentation and the float conversion
    crop = torch.randint(0, 255, (3, 12, 12), dtype=torch.uint8)
    batched = Compose(augmented_views(["image", "image_2"], spatial_size=[6, 6], batched=True))({"image": crop})
    assert set(batched) == {"image"}  # the trainer draws both views from this unaugmented crop
    assert batched["image"].dtype == torch.float32 and torch.equal(batched["image"], crop.float())
