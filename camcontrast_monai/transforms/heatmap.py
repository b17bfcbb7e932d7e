"""CAM heatmaps from a trained stage-1 classifier (Eq. 1 + min-max normalisation, section 3.1)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.networks import eval_mode
from monai.transforms import MapTransform, Transform

from camcontrast_monai.networks.cam import minmax_normalize
from camcontrast_monai.networks.cam_classifier import CAMClassifier

__all__ = ["CAMHeatmap", "CAMHeatmapd", "cam_heatmaps", "positive_class_heatmaps", "unweighted_heatmaps"]


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


class CAMHeatmap(Transform):
    """Channel-first image ``(C, *spatial)`` -> heatmap ``(1, *feature_spatial)`` of the abnormal class.

    A constant CAM (no evidence anywhere) gives an all-zero heatmap, never NaN. The heatmap is returned
    on the CPU; the classifier runs on ``device`` (default: where its parameters are).
    """

    def __init__(self, classifier: CAMClassifier, class_index: int = 1, device: torch.device | str | None = None) -> None:
        self.classifier = classifier
        self.class_index = class_index
        self.device = torch.device(device) if device is not None else next(classifier.parameters()).device

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        batch = torch.as_tensor(image, dtype=torch.float32).unsqueeze(0).to(self.device)
        return cam_heatmaps(self.classifier, batch, self.class_index)[0].cpu()


class CAMHeatmapd(MapTransform):
    """Dictionary twin of :class:`CAMHeatmap`: reads ``keys`` (the image) and writes ``heatmap_key``."""

    def __init__(
        self,
        keys: KeysCollection,
        classifier: CAMClassifier,
        heatmap_key: str = "heatmap",
        class_index: int = 1,
        device: torch.device | str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"CAMHeatmapd reads exactly one image key, got {self.keys}")
        self.heatmap_key = heatmap_key
        self.to_heatmap = CAMHeatmap(classifier, class_index, device)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.heatmap_key] = self.to_heatmap(d[key])
        return d
