"""Baseline pretraining loss: SimCLR's NT-Xent between two augmented views of the same image (Chen et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn

from camcontrast_monai.losses.ntxent import nt_xent

__all__ = ["SimCLRLoss"]


class SimCLRLoss(nn.Module):
    """SimCLR (Chen et al. 2020): ``loss(z_view1, z_view2)``, the symmetric NT-Xent of Eq. 5 with the
    heatmap view replaced by a second augmented view of the same image (or of the same fixed crop).

    Row i of both inputs are the two views of sample i; each anchor's negatives are the other 2B - 2
    vectors. It is the same function as CAMContrast's loss, :func:`~camcontrast_monai.losses.nt_xent`,
    so the two methods differ only in their second view.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return nt_xent(z_a, z_b, self.temperature)
