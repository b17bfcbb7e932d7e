"""CAM heatmaps of one image at a time, as MONAI transforms (Eq. 1 + min-max normalisation, section 3.1).

These two are the only transforms that run a network: the public API keeps a per-image heatmap in a
transform chain (``CAMHeatmapd``), while the computation itself, batched, lives in
:mod:`camcontrast_monai.networks.heatmaps` with the classifier it runs. The batched functions are
re-exported here because ``camcontrast_monai.transforms`` has always offered them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from camcontrast_monai.networks.cam_classifier import CAMClassifier
from camcontrast_monai.networks.heatmaps import cam_heatmaps, positive_class_heatmaps, unweighted_heatmaps

__all__ = ["CAMHeatmap", "CAMHeatmapd", "cam_heatmaps", "positive_class_heatmaps", "unweighted_heatmaps"]


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
