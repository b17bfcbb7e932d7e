"""Other image encoders than the U-Net: MONAI's ResNet and DenseNet cut before their pooling.

Each returns the feature map of its last convolutional block, ``(B, out_channels, *s)``, which is
what CAMs (Eq. 1), the stage-2 projector and the downstream heads read, so any of them can stand in
for :class:`~camcontrast_monai.networks.UNetEncoder` in stage 1, stage 2 and classification.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet, ResNet
from torch import nn

from camcontrast_monai.networks.unet_encoder import UNetEncoder

__all__ = ["ENCODER_NAMES", "DenseNetEncoder", "ResNetEncoder", "build_encoder"]

# depth -> (block type, blocks per stage), as in torchvision and MONAI's resnet* constructors
_RESNET_LAYOUTS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


class ResNetEncoder(ResNet):
    """MONAI ``ResNet`` (2D or 3D) whose forward stops after ``layer4``: a feature map, not a vector.

    The module names and therefore the state dict are MONAI's ``ResNet(..., feed_forward=False)``'s,
    so the weights load back into a MONAI ResNet. ``conv1_t_stride=2`` (plus the max-pool) gives the
    standard 32x downsampling; MONAI's default stride of 1 makes every layer 4x (in 3D 8x) more
    expensive for no gain in CAM resolution that the heatmaps need.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        depth: 10, 18, 34 or 50.
        width: channels of the first stage (64 = the standard ResNet); the stages use 1, 2, 4, 8 x width.
        conv1_t_stride: stride of the first convolution.
        no_max_pool: skip the max-pool after the first convolution (halves the downsampling: 16x
            instead of 32x with ``conv1_t_stride=2``), for CAMs of small volumes.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        depth: int = 34,
        width: int = 64,
        conv1_t_stride: int = 2,
        no_max_pool: bool = False,
    ) -> None:
        if depth not in _RESNET_LAYOUTS:
            raise ValueError(f"ResNet depth must be one of {sorted(_RESNET_LAYOUTS)}, got {depth}")
        block, layers = _RESNET_LAYOUTS[depth]
        super().__init__(
            block=block,
            layers=list(layers),
            block_inplanes=[width, 2 * width, 4 * width, 8 * width],
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_stride=conv1_t_stride,
            no_max_pool=no_max_pool,
            feed_forward=False,
        )
        self.out_channels = 8 * width * (4 if block == "bottleneck" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DenseNetEncoder(nn.Module):
    """MONAI ``DenseNet121`` features (dense blocks + final BatchNorm) followed by the ReLU that
    MONAI applies before pooling, as a feature map. ``features.*`` keys match MONAI's DenseNet121.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        init_features: channels after the stem (64 = DenseNet-121).
        growth_rate: channels each dense layer adds (32 = DenseNet-121).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, init_features: int = 64, growth_rate: int = 32) -> None:
        super().__init__()
        densenet = DenseNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=1,
            init_features=init_features,
            growth_rate=growth_rate,
            block_config=(6, 12, 24, 16),
        )
        self.features = densenet.features
        self.out_channels: int = densenet.class_layers.out.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.features(x))


ENCODER_NAMES = ("unet", "resnet18", "resnet34", "resnet50", "densenet121")


def build_encoder(name: str = "unet", spatial_dims: int = 2, in_channels: int = 3, width: int = 64) -> nn.Module:
    """The image encoder called ``name`` (one of :data:`ENCODER_NAMES`) at ``width`` (64 = full size).

    ``width`` is the U-Net's first level, the ResNet's first stage and the DenseNet's stem (whose growth
    rate scales with it, 32 at width 64), so one switch shrinks any backbone for quick runs.
    """
    if name == "unet":
        return UNetEncoder(spatial_dims, in_channels, width)
    if name.startswith("resnet") and name[6:].isdigit():
        return ResNetEncoder(spatial_dims, in_channels, depth=int(name[6:]), width=width)
    if name == "densenet121":
        return DenseNetEncoder(spatial_dims, in_channels, init_features=width, growth_rate=max(1, width // 2))
    raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODER_NAMES}")
