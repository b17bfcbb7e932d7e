"""Multilabel classification metric of the chest X-ray tasks: per-class AUC-ROC and their mean (Tables 8, 10, B.2)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric, compute_roc_auc

__all__ = ["MultilabelAUC", "MultilabelAUCMetric", "multilabel_auc"]


def multilabel_auc(scores: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> tuple[float, list[float]]:
    """Per-class AUC-ROC of ``scores`` against 0/1 ``targets``, both ``(N, K)``, and their mean.

    Each class is scored on its own with MONAI's ``compute_roc_auc``; a class whose targets are all 0
    or all 1 has no AUC (NaN in the list) and is left out of the mean (NaN when no class has one).
    """
    scores, targets = torch.as_tensor(scores).float(), torch.as_tensor(targets).float()
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores and targets must both be (N, K); got {tuple(scores.shape)} and {tuple(targets.shape)}")
    per_class = []
    for k in range(scores.shape[1]):
        if targets[:, k].unique().numel() < 2:
            per_class.append(math.nan)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per_class.append(float(compute_roc_auc(scores[:, k], targets[:, k])))
    present = [value for value in per_class if not math.isnan(value)]
    return (float(np.mean(present)) if present else math.nan), per_class


class MultilabelAUCMetric(CumulativeIterationMetric):
    """Cumulative :func:`multilabel_auc`: call with ``y_pred`` scores and ``y`` targets, ``(B, K)`` each;
    ``aggregate()`` returns the mean over classes and sets ``per_class``."""

    def reset(self) -> None:
        super().reset()
        self.per_class: list[float] = []

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return y_pred.detach().float().cpu().reshape(y_pred.shape[0], -1), y.float().cpu().reshape(y.shape[0], -1)

    def aggregate(self) -> float:
        buffers = self.get_buffer()
        if buffers is None or len(buffers) == 0 or buffers[0] is None or buffers[0].numel() == 0:
            raise RuntimeError("MultilabelAUCMetric has no data: call it on at least one batch before aggregate()")
        mean, self.per_class = multilabel_auc(*buffers)
        return mean


class MultilabelAUC(IgniteMetricHandler):
    """Ignite handler for :class:`MultilabelAUCMetric` (mean AUC-ROC over classes); ``per_class`` after the epoch."""

    def __init__(self, output_transform: Callable = lambda x: x) -> None:
        super().__init__(metric_fn=MultilabelAUCMetric(), output_transform=output_transform, save_details=False)

    @property
    def per_class(self) -> list[float]:
        return self.metric_fn.per_class
