"""Stage-1 losses: the complementary guided attention loss (Eq. 4) and the combined objective (Eq. 2-3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from camcontrast_monai.networks.cam import minmax_normalize

__all__ = ["AttentionLoss", "CAMClassifierLoss"]

NORMAL, ABNORMAL = 0, 1


def _flat_labels(labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).reshape(-1).long()
    if labels.numel() != batch_size:
        raise ValueError(f"expected {batch_size} labels (one per image), got shape {tuple(labels.shape)}")
    return labels


class AttentionLoss(nn.Module):
    """Eq. 4: ``1(p0 >= 0.5, y = 0) / |M^0| * sum_ij (1 - M^0_ij + M^1_ij)``, averaged over the batch.

    ``forward(cams, logits, labels)`` with raw CAMs ``(B, 2, *spatial)`` for the normal (0) and
    abnormal (1) class, logits ``(B, 2)`` and labels ``(B,)``. Each CAM of each sample is min-max
    normalised on its own. Only true negatives that are predicted normal contribute; the sum over those
    is divided by the whole batch size B, since Eq. 2 carries the 1/B.
    """

    def forward(self, cams: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if cams.ndim < 3 or cams.shape[1] < 2:
            raise ValueError(f"cams must be (B, 2, *spatial) raw CAMs, got shape {tuple(cams.shape)}")
        batch_size = cams.shape[0]
        labels = _flat_labels(labels, batch_size).to(cams.device)
        with torch.no_grad():
            predicted_normal = F.softmax(logits.float(), dim=1)[:, NORMAL] >= 0.5
            contributes = (predicted_normal & (labels == NORMAL)).float()
        maps = minmax_normalize(cams[:, (NORMAL, ABNORMAL)].float())
        per_sample = (1.0 - maps[:, NORMAL] + maps[:, ABNORMAL]).flatten(1).mean(dim=1)
        return (per_sample * contributes).sum() / batch_size


class CAMClassifierLoss(nn.Module):
    """Eq. 2: ``1/B sum_i [L_ce(x_i, y_i) + lambda * L_attn(x_i, y_i)]`` with lambda = 0.01.

    ``forward(logits, cams, labels)`` returns the total; :meth:`terms` returns the total with its
    cross-entropy (Eq. 3) and attention (Eq. 4) parts, for logging.
    """

    def __init__(self, attention_weight: float = 0.01) -> None:
        super().__init__()
        self.attention_weight = attention_weight
        self.attention = AttentionLoss()

    def terms(self, logits: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = _flat_labels(labels, logits.shape[0]).to(logits.device)
        cross_entropy = F.cross_entropy(logits.float(), labels)
        attention = self.attention(cams, logits, labels) if self.attention_weight else cross_entropy.new_zeros(())
        return {
            "loss": cross_entropy + self.attention_weight * attention,
            "cross_entropy": cross_entropy,
            "attention": attention,
        }

    def forward(self, logits: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.terms(logits, cams, labels)["loss"]
