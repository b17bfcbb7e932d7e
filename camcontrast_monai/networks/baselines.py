"""Pretraining networks of the baselines, and encoders by name for every stage and downstream task.

The baselines of the paper's section 4.4 share CAMContrast's image encoder f_I: SimCLR and SupCon put
the same 2-layer projector g_I on it (:class:`ProjectedEncoder`), SupCE a linear classifier
(:class:`~camcontrast_monai.networks.EncoderClassifier` with one 2-class head). All keep the encoder
under ``encoder``, so ``network.encoder.state_dict()`` is the transferable part, exactly as
``CAMContrastNet.image_encoder`` is for CAMContrast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from monai.networks.nets import BasicUNet
from torch import nn

from camcontrast_monai.networks.backbones import build_encoder
from camcontrast_monai.networks.contrastive import ProjectionHead, global_average_pool
from camcontrast_monai.networks.downstream import load_encoder_weights, pretrained_unet

__all__ = ["ProjectedEncoder", "pretrained_encoder", "segmentation_unet"]


class ProjectedEncoder(nn.Module):
    """``z = g(pool(f(x)))``: an image encoder with the SimCLR projection head (SimCLR and SupCon baselines).

    Args:
        encoder: image encoder mapping ``(B, C, *spatial)`` to a feature map; its ``out_channels`` sizes the head.
        projection_dim: size of the projection (128 in SimCLR and CAMContrast).
        projection_batch_norm: batch norm on the projector's hidden layer, as in CAMContrast's projectors.
    """

    def __init__(self, encoder: nn.Module, projection_dim: int = 128, projection_batch_norm: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = ProjectionHead(encoder.out_channels, projection_dim, batch_norm=projection_batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(global_average_pool(self.encoder(x)))


def pretrained_encoder(
    name: str = "unet",
    spatial_dims: int = 2,
    in_channels: int = 3,
    width: int = 64,
    weights: Mapping[str, torch.Tensor] | str | os.PathLike | None = None,
) -> nn.Module:
    """:func:`~camcontrast_monai.networks.build_encoder` ``name``, loaded from ``weights`` when given
    (strictly, see :func:`~camcontrast_monai.networks.load_encoder_weights`)."""
    encoder = build_encoder(name, spatial_dims, in_channels, width)
    if weights is not None:
        load_encoder_weights(encoder, weights)
    return encoder


def segmentation_unet(
    encoder_name: str = "unet",
    spatial_dims: int = 2,
    in_channels: int = 3,
    out_channels: int = 1,
    width: int = 64,
    encoder_weights: Mapping[str, torch.Tensor] | str | os.PathLike | None = None,
) -> BasicUNet:
    """The segmentation network of the fine-tuning tasks: a U-Net whose encoder is the pretrained one.

    Only the U-Net encoder has a decoder here; any other ``encoder_name`` is refused with a clear error
    rather than silently training a U-Net from scratch.
    """
    if encoder_name != "unet":
        raise ValueError(
            f"segmentation fine-tuning needs the U-Net encoder (encoder_name='unet'), got {encoder_name!r}: "
            "there is no decoder for ResNet/DenseNet encoders yet; use them for classification tasks"
        )
    return pretrained_unet(spatial_dims, in_channels, out_channels, width, encoder_weights)
