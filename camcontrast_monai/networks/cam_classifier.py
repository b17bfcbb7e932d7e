"""Stage-1 network: encoder -> global average pooling -> linear, with CAMs from the linear weights."""

from __future__ import annotations

import torch
from torch import nn

from camcontrast_monai.networks.cam import class_activation_maps
from camcontrast_monai.networks.unet_encoder import UNetEncoder

__all__ = ["CAMClassifier"]


class CAMClassifier(nn.Module):
    """Normal-vs-abnormal classifier whose class activation maps become stage-2 heatmaps.

    ``forward(x)`` returns logits ``(B, num_classes)``; ``cams(x)`` returns raw CAMs (Eq. 1)
    ``(B, num_classes, *feature_spatial)``; ``forward_with_cams(x)`` returns both from one encoder pass.

    Args:
        spatial_dims: 2 for photographs and radiographs, 3 for volumes.
        in_channels: image channels.
        num_classes: 2 for the coarse normal/abnormal task (class 0 normal, class 1 abnormal).
        width: width of the default U-Net encoder (64 = the paper's 64 -> 1024 channels).
        encoder: any module mapping ``(B, in_channels, *spatial)`` to a feature map ``(B, K, *s)``;
            defaults to :class:`UNetEncoder`. ``feature_channels`` (K) is read from
            ``encoder.out_channels`` unless given.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 2,
        width: int = 64,
        encoder: nn.Module | None = None,
        feature_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.encoder = encoder if encoder is not None else UNetEncoder(spatial_dims, in_channels, width)
        if feature_channels is None:
            feature_channels = getattr(self.encoder, "out_channels", None)
        if not isinstance(feature_channels, int):
            raise ValueError("feature_channels must be given when the encoder has no integer `out_channels`")
        self.classifier = nn.Linear(feature_channels, num_classes)

    def _logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.flatten(2).mean(dim=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits_from_features(self.encoder(x))

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        return class_activation_maps(self.encoder(x), self.classifier.weight)

    def forward_with_cams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        return self._logits_from_features(features), class_activation_maps(features, self.classifier.weight)
