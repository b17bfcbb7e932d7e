"""Stage-2 networks: heatmap encoder f_h, projectors g_I / g_h, and the image-heatmap pair model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers import Conv
from torch import nn

from camcontrast_monai.networks.unet_encoder import UNetEncoder

__all__ = ["HeatmapEncoder", "ProjectionHead", "CAMContrastNet", "global_average_pool"]


def global_average_pool(feature_map: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial) -> (B, C)``, for any number of spatial axes."""
    return feature_map.flatten(2).mean(dim=2)


class HeatmapEncoder(nn.Module):
    """f_h: three 3x3 convolutions, each followed by ReLU, then global average pooling (section 4.2).

    The paper does not give the channel counts; (64, 128, 256) keeps it far smaller than the image
    encoder while the heatmap crops are tiny (14x14 for a 224-px crop of a 448-px image). ``bias=False`` follows
    the public reference: every suppressed (all-zero) heatmap then maps to one identical vector,
    the "prototype of an empty heatmap" that negative suppression pulls normal crops towards.
    """

    def __init__(
        self, spatial_dims: int = 2, in_channels: int = 1, channels: Sequence[int] = (64, 128, 256), bias: bool = False
    ) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"the heatmap encoder has three conv layers, got channels={tuple(channels)}")
        conv_type = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True):
            layers += [conv_type(c_in, c_out, kernel_size=3, padding=1, bias=bias), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.out_channels = channels[-1]

    def forward(self, heatmap: torch.Tensor) -> torch.Tensor:
        return global_average_pool(self.convs(heatmap))


class ProjectionHead(nn.Module):
    """g: the SimCLR 2-layer MLP projector, ``Linear -> [BatchNorm] -> ReLU -> Linear`` to a 128-d space.

    ``batch_norm=True`` puts batch normalisation on the hidden layer, as SimCLR's reference code
    does. Without it we measured stage 2 collapsing on a short schedule: every projection of a batch
    ended up the same vector (pairwise cosine 0.99999, loss stuck at log(2B - 1)), because the
    pooled features vary little across crops at initialisation and the projector's bias dominates.
    The output is not normalised here; the contrastive loss L2-normalises it (Algorithm 1, lines 21-22).
    """

    def __init__(
        self, in_features: int, out_features: int = 128, hidden_features: int | None = None, batch_norm: bool = True
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        hidden: list[nn.Module] = [nn.Linear(in_features, hidden_features, bias=not batch_norm)]
        if batch_norm:
            hidden.append(nn.BatchNorm1d(hidden_features))
        self.mlp = nn.Sequential(*hidden, nn.ReLU(inplace=True), nn.Linear(hidden_features, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class CAMContrastNet(nn.Module):
    """The four stage-2 networks of Algorithm 1: ``z_I = g_I(f_I(image))`` and ``z_h = g_h(f_h(heatmap))``.

    After pretraining only ``image_encoder`` (f_I) is kept; its state dict is a plain U-Net encoder
    state dict (see :class:`UNetEncoder`). ``forward(image, heatmap)`` returns the unnormalised
    projections ``(z_image, z_heatmap)``, each ``(B, projection_dim)``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        width: int = 64,
        projection_dim: int = 128,
        heatmap_channels: Sequence[int] = (64, 128, 256),
        image_encoder: nn.Module | None = None,
        image_feature_channels: int | None = None,
        projection_batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder if image_encoder is not None else UNetEncoder(spatial_dims, in_channels, width)
        image_features = image_feature_channels or self.image_encoder.out_channels
        self.heatmap_encoder = HeatmapEncoder(spatial_dims, 1, heatmap_channels)
        self.image_projector = ProjectionHead(image_features, projection_dim, batch_norm=projection_batch_norm)
        self.heatmap_projector = ProjectionHead(
            self.heatmap_encoder.out_channels, projection_dim, batch_norm=projection_batch_norm
        )

    def embed_image(self, image: torch.Tensor) -> torch.Tensor:
        """f_I(image) pooled to a vector: the representation downstream tasks transfer."""
        return global_average_pool(self.image_encoder(image))

    def forward(self, image: torch.Tensor, heatmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_image = self.image_projector(self.embed_image(image))
        z_heatmap = self.heatmap_projector(self.heatmap_encoder(heatmap))
        return z_image, z_heatmap
