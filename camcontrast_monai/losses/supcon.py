"""Baseline pretraining loss: supervised contrastive learning (SupCon, Khosla et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SupConLoss", "supcon_loss"]


def supcon_loss(z_a: torch.Tensor, z_b: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon, the L_out form of Khosla et al. 2020 (Eq. 2 there), over the 2B vectors of two views.

    ``L = 1/2B sum_i -1/|P(i)| sum_{p in P(i)} log exp(z_i.z_p/tau) / sum_{a != i} exp(z_i.z_a/tau)``

    Row i of ``z_a`` and row i of ``z_b`` are two views of sample i with label ``labels[i]``. P(i) holds
    every other vector whose sample has the same label, so it always contains i's other view; with all
    labels distinct this is exactly SimCLR's NT-Xent (:func:`~camcontrast_monai.losses.nt_xent`). Inputs
    are L2-normalised here; the denominator is a log-sum-exp, so small temperatures stay finite. The
    reference implementation's extra ``tau / base_tau`` factor is left out (it is 1 at equal values).
    Computed in float32 even under autocast.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(f"expected two (B, D) projections of equal shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    labels = torch.as_tensor(labels, device=z_a.device).reshape(-1)
    if labels.numel() != z_a.shape[0]:
        raise ValueError(f"expected {z_a.shape[0]} labels (one per sample), got shape {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
    all_labels = torch.cat([labels, labels])
    self_pairs = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    similarity = (z @ z.T / temperature).masked_fill(self_pairs, float("-inf"))  # a != i
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (all_labels[:, None] == all_labels[None, :]) & ~self_pairs
    per_anchor = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(dim=1)
    return -per_anchor.mean()


class SupConLoss(nn.Module):
    """The SupCon baseline's loss: ``loss(z_view1, z_view2, labels)`` for ``(B, D)`` projections (see :func:`supcon_loss`)."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supcon_loss(z_a, z_b, labels, self.temperature)
