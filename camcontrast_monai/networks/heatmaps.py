"""Heatmaps from a trained stage-1 classifier, batched: Eq. 1's class activation map of the abnormal class
min-max normalised per image (section 3.1), the multilabel average of section 4.6, and Table 4's unweighted
ablation. The heatmap engine (:func:`camcontrast_monai.engines.heatmaps.generate_heatmaps`) and the per-image
transforms :class:`camcontrast_monai.transforms.CAMHeatmap` / ``CAMHeatmapd`` call these."""

from __future__ import annotations

import torch
from monai.networks import eval_mode

from camcontrast_monai.networks.cam import minmax_normalize
from camcontrast_monai.networks.cam_classifier import CAMClassifier

__all__ = ["cam_heatmaps", "positive_class_heatmaps", "unweighted_heatmaps"]


def cam_heatmaps(classifier: CAMClassifier, images: torch.Tensor, class_index: int = 1) -> torch.Tensor:
    """Heatmaps ``(B, 1, *feature_spatial)`` in [0, 1]: the CAM of ``class_index`` min-max normalised per image.

    They stay at feature-map resolution (the paper keeps them small for pretraining). The classifier
    is run in eval mode without gradients and its previous mode is restored afterwards.
    """
    with eval_mode(classifier):
        cams = classifier.cams(images)
    if not 0 <= class_index < cams.shape[1]:
        raise ValueError(f"class_index {class_index} is out of range for a classifier with {cams.shape[1]} classes")
    return minmax_normalize(cams[:, class_index : class_index + 1].float())


def positive_class_heatmaps(classifier: CAMClassifier, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multilabel heatmaps (section 4.6): the average of the min-max normalised CAMs of each image's positive classes.

    ``targets`` is ``(B, K)`` 0/1, one column per classifier output. Each class's CAM (Eq. 1) is
    min-max normalised on its own first, so every positive class weighs the same whatever the scale of
    its raw CAM; the average of those maps is the heatmap ``(B, 1, *feature_spatial)`` in [0, 1]. An
    image without a positive class gets an all-zero heatmap, as a normal image does after negative
    suppression. The classifier runs in eval mode without gradients.
    """
    with eval_mode(classifier):
        cams = classifier.cams(images)
    targets = torch.as_tensor(targets, device=cams.device).reshape(cams.shape[0], -1).float()
    if targets.shape[1] != cams.shape[1]:
        raise ValueError(f"targets have {targets.shape[1]} classes but the classifier has {cams.shape[1]}")
    weights = targets / targets.sum(dim=1, keepdim=True).clamp_min(1.0)
    maps = minmax_normalize(cams.float())
    return torch.einsum("bk...,bk->b...", maps, weights).unsqueeze(1)


def unweighted_heatmaps(classifier: CAMClassifier, images: torch.Tensor) -> torch.Tensor:
    """Ablation "unweighted heatmaps" (paper Table 4): the sum of the last convolutional feature maps instead of
    the class-weighted sum of Eq. 1, min-max normalised per image, ``(B, 1, *feature_spatial)`` in [0, 1]."""
    with eval_mode(classifier):
        features = classifier.encoder(images)
    return minmax_normalize(features.float().sum(dim=1, keepdim=True))
