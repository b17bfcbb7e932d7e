"""What stage 1 optimises, evaluates and logs, for coarse labels and for the multilabel setting (section 4.6).

One ``stage1.json`` serves every bundle: these functions take the bundle's ``multilabel`` switch and
return the matching parts, so the config names them in ``_target_`` blocks instead of branching in
expressions.
"""

from __future__ import annotations

import torch
from monai.handlers import ROCAUC, ConfusionMatrix, IgniteMetricHandler, from_engine
from monai.transforms import Activationsd, AsDiscreted, Compose, CopyItemsd, ToDeviced

from camcontrast_monai.losses import CAMClassifierLoss
from camcontrast_monai.metrics import MultilabelAUC

__all__ = ["stage1_additional_metrics", "stage1_loss", "stage1_loss_keys", "stage1_metrics", "stage1_postprocessing"]


def stage1_loss(multilabel: bool, attention_weight: float = 0.01) -> torch.nn.Module:
    """Eq. 2 (cross-entropy plus ``attention_weight`` times the attention loss of Eq. 4) for coarse labels.

    With ``multilabel`` it is ``BCEWithLogitsLoss`` over the K findings: the attention loss contrasts the
    normal class's CAM with the abnormal one, and a multilabel head has no normal class.
    """
    return torch.nn.BCEWithLogitsLoss() if multilabel else CAMClassifierLoss(attention_weight=attention_weight)


def stage1_loss_keys(multilabel: bool) -> list[str]:
    """The loss terms that stage 1 logs: the total, and for Eq. 2 its cross-entropy and attention parts."""
    return ["loss"] if multilabel else ["loss", "cross_entropy", "attention"]


def stage1_postprocessing(multilabel: bool) -> Compose:
    """Validation outputs on the CPU as the metrics read them: sigmoid scores, or softmax scores with one-hot
    ``pred_class`` and ``label`` for the accuracy of the two-class head."""
    scores_on_cpu = ToDeviced(keys="pred", device="cpu")
    if multilabel:
        return Compose([scores_on_cpu, Activationsd(keys="pred", sigmoid=True)])
    return Compose([
        scores_on_cpu,
        Activationsd(keys="pred", softmax=True),
        CopyItemsd(keys="pred", names="pred_class"),
        AsDiscreted(keys=["pred_class", "label"], argmax=[True, False], to_onehot=2),
        ToDeviced(keys="label", device="cpu"),  # pred_class comes from pred, on the CPU already; label from the device
    ])  # fmt: skip


def stage1_metrics(multilabel: bool) -> dict[str, IgniteMetricHandler]:
    """The key validation metric, ``val_auc``: ROC AUC of the abnormal class, or the mean over findings."""
    auc = MultilabelAUC if multilabel else ROCAUC
    return {"val_auc": auc(output_transform=from_engine(["pred", "label"]))}


def stage1_additional_metrics(multilabel: bool) -> dict[str, IgniteMetricHandler]:
    """``val_accuracy`` of the two-class head; none for multilabel heads, where AUC is the paper's metric."""
    if multilabel:
        return {}
    return {"val_accuracy": ConfusionMatrix(metric_name="accuracy", output_transform=from_engine(["pred_class", "label"]))}
