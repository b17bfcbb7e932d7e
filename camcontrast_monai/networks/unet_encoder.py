"""The contracting path of the paper's U-Net, built so its weights load into MONAI's ``BasicUNet``."""

from __future__ import annotations

import torch
from monai.networks.nets.basic_unet import Down, TwoConv
from torch import nn

__all__ = ["UNetEncoder", "unet_features"]


def unet_features(width: int = 64) -> tuple[int, int, int, int, int]:
    """Channel counts of the five encoder levels: ``width`` doubling four times (64 -> 1024 in the paper)."""
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    return tuple(width * 2**level for level in range(5))


class UNetEncoder(nn.Module):
    """U-Net encoder: double 3x3 conv + BN + ReLU blocks and four 2x max-pool downsamplings.

    The submodules are named and built exactly as in ``monai.networks.nets.BasicUNet`` (``conv_0``,
    ``down_1`` .. ``down_4``), so ``encoder.state_dict()`` loads into
    ``BasicUNet(features=(*unet_features(width), width), act="relu", norm="batch")`` key for key.
    ``width=64`` is the paper's network (64 -> 1024 channels); smaller widths are for quick runs.
    Works for 2D and 3D inputs through ``spatial_dims``; each spatial size must be divisible by 16.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        width: int = 64,
        act: str | tuple = "relu",
        norm: str | tuple = "batch",
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.features = unet_features(width)
        f = self.features
        self.conv_0 = TwoConv(spatial_dims, in_channels, f[0], act, norm, bias, dropout)
        self.down_1 = Down(spatial_dims, f[0], f[1], act, norm, bias, dropout)
        self.down_2 = Down(spatial_dims, f[1], f[2], act, norm, bias, dropout)
        self.down_3 = Down(spatial_dims, f[2], f[3], act, norm, bias, dropout)
        self.down_4 = Down(spatial_dims, f[3], f[4], act, norm, bias, dropout)

    @property
    def out_channels(self) -> int:
        return self.features[-1]

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of all five levels, full resolution first: the skip connections of a U-Net decoder."""
        # unrolled rather than a loop over a tuple of modules, which TorchScript cannot compile
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        return [x0, x1, x2, x3, self.down_4(x3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest feature map, ``(B, 16 * width, *spatial / 16)``: what CAMs and the stage-2 head read."""
        return self.forward_levels(x)[-1]
