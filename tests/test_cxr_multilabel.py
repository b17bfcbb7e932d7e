"""Multilabel stage 1 (section 4.6): heatmap = average of the positive classes' CAMs; per-class AUC-ROC; synthetic CXRs."""

import math

import numpy as np
import pytest
import torch

from camcontrast_monai.metrics import MultilabelAUC, multilabel_auc
from camcontrast_monai.networks import CAMClassifier, positive_class_heatmaps
from camcontrast_monai.synthetic import CXR_FINDINGS, generate_cxr, write_chestxray14_dataset


def three_class_classifier():
    """Features are the 2 input channels; class 0 reads channel 0, class 1 channel 1, class 2 their sum."""
    model = CAMClassifier(encoder=torch.nn.Identity(), feature_channels=2, num_classes=3)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model.classifier.bias.zero_()
    return model


def test_heatmap_averages_the_minmax_cams_of_the_positive_classes():
    features = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]]])
    images = features.expand(4, 2, 2, 2)
    targets = torch.tensor([[1, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 1]])
    heatmaps = positive_class_heatmaps(three_class_classifier(), images, targets)
    assert heatmaps.shape == (4, 1, 2, 2)
    # by hand: M0 = minmax(F0) = [[0, 1/3], [2/3, 1]], M1 = minmax(F1) = [[1, 0], [0, 0]],
    # M2 = minmax(F0 + F1 = [[1, 1], [2, 3]]) = [[0, 0], [0.5, 1]]
    m0 = torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]])
    m1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    m2 = torch.tensor([[0.0, 0.0], [0.5, 1.0]])
    assert torch.allclose(heatmaps[0, 0], torch.tensor([[0.5, 1 / 6], [1 / 3, 0.5]]))
    assert torch.allclose(heatmaps[0, 0], (m0 + m1) / 2)
    assert torch.equal(heatmaps[1, 0], torch.zeros(2, 2))  # no positive class: empty heatmap
    assert torch.allclose(heatmaps[2, 0], m2)
    assert torch.allclose(heatmaps[3, 0], torch.tensor([[0.0, 1 / 6], [7 / 12, 1.0]]))


def test_heatmap_refuses_targets_of_the_wrong_width():
    with pytest.raises(ValueError, match="targets have 2 classes but the classifier has 3"):
        positive_class_heatmaps(three_class_classifier(), torch.zeros(1, 2, 2, 2), torch.ones(1, 2))


def test_multilabel_auc_per_class_and_mean_by_hand():
    scores = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5], [0.6, 0.3, 0.5], [0.4, 0.7, 0.5]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0]])
    mean, per_class = multilabel_auc(scores, targets)
    # class 0: positives 0.9, 0.4 vs negatives 0.1, 0.6 -> 3 of 4 pairs ordered; class 1: positives 0.8, 0.3
    # vs negatives 0.2, 0.7 -> 3 of 4; class 2 has no positive: no AUC, left out of the mean
    assert per_class[:2] == [0.75, 0.75] and math.isnan(per_class[2])
    assert mean == 0.75
    handler = MultilabelAUC()
    handler.reset()
    handler.update((scores[:2], targets[:2]))
    handler.update((scores[2:], targets[2:]))
    assert handler.compute() == 0.75 and handler.per_class[:2] == [0.75, 0.75]


def test_synthetic_radiograph_masks_lie_where_the_findings_are_drawn():
    normal = generate_cxr(96, [], anatomy_seed=5, finding_seed=1)
    assert normal.image.dtype == np.uint8 and normal.image.shape == (96, 96) and normal.findings == []
    assert normal.image[0, 0] < 15 < normal.image[48, 30]  # dark air outside the body (suppressed), lungs above it
    for name in CXR_FINDINGS:
        sample = generate_cxr(96, [name], anatomy_seed=5, finding_seed=1)
        assert sample.findings == [name] and sample.masks[name].any()
        changed = np.abs(sample.image.astype(int) - normal.image.astype(int)) > 10
        inside = changed[sample.masks[name]].mean()
        assert inside > 0.3, f"{name}: only {inside:.2f} of its mask differs from the normal image"
    both = generate_cxr(96, ["Effusion", "Pneumothorax"], anatomy_seed=5, finding_seed=2)
    assert both.findings == ["Effusion", "Pneumothorax"]
    assert np.array_equal(generate_cxr(96, ["Mass"], 5, 1).image, generate_cxr(96, ["Mass"], 5, 1).image)


def test_synthetic_chestxray14_lists_are_patient_disjoint(tmp_path):
    summary = write_chestxray14_dataset(tmp_path, n=12, seed=1, image_size=32, test_fraction=0.4, progress=False)
    header = (tmp_path / "Data_Entry_2017.csv").read_text().splitlines()[0]
    assert header.startswith("Image Index,Finding Labels,Follow-up #,Patient ID,") and "OriginalImage[Width,Height]" in header
    patient = lambda name: name.split("_")[0]  # noqa: E731
    train_val = (tmp_path / "train_val_list.txt").read_text().split()
    test = (tmp_path / "test_list.txt").read_text().split()
    assert len(train_val) + len(test) == 12 == summary["images"]
    assert not {patient(n) for n in train_val} & {patient(n) for n in test}
