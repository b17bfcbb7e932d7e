"""The paper's downstream metrics (Table 2), as plain functions and as MONAI/Ignite cumulative metrics.

- IDRiD-cls: joint accuracy, the fraction of images whose DR grade and DME risk are both right.
- REFUGE-cls: F1-score of the glaucoma class over the test images.
- IDRiD-seg: average AUC-PR, the area under the precision-recall curve of each lesion type over all
  test pixels, averaged over the lesion types.
- REFUGE-seg, Vessel-seg, SIIM-ACR: (average) F1-score over all test pixels, i.e. Dice of the
  thresholded prediction, averaged over structures (optic disc, optic cup) where there are several.

Segmentation scores pool every pixel of the test set before computing the metric (one curve / one
F1 per class for the whole set), rather than averaging per-image scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import ConfusionMatrixMetric, CumulativeIterationMetric

__all__ = [
    "AveragePrecision",
    "AveragePrecisionMetric",
    "ClassF1",
    "ClassF1Metric",
    "JointAccuracy",
    "JointAccuracyMetric",
    "MeanF1",
    "MeanF1Metric",
    "average_precision",
    "binary_f1",
    "joint_accuracy",
    "mean_average_precision",
    "mean_f1",
    "segmentation_metric",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence


def _binary(values: ArrayLike, name: str) -> torch.Tensor:
    """``values`` as a bool tensor; anything other than 0/1 (e.g. an interpolated soft mask) is rejected."""
    values = torch.as_tensor(values)
    if values.dtype != torch.bool:
        if not ((values == 0) | (values == 1)).all():
            raise ValueError(f"{name} must be binary (0/1 or bool); threshold soft masks first")
        values = values != 0
    return values


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is."""
    defined = [value for value in values if not math.isnan(value)]
    return sum(defined) / len(defined) if defined else math.nan


def _f1_from_counts(true_pos: int, false_pos: int, false_neg: int) -> float:
    """2TP / (2TP + FP + FN); NaN when the class is absent from both prediction and ground truth."""
    denominator = 2 * true_pos + false_pos + false_neg
    return 2 * true_pos / denominator if denominator else math.nan


def _check_same_shape(first: torch.Tensor, second: torch.Tensor, names: str, min_dims: int = 2) -> None:
    if first.shape != second.shape or first.ndim < min_dims:
        raise ValueError(
            f"{names} must have the same shape with at least {min_dims} axes, got "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )


def joint_accuracy(predicted: ArrayLike, target: ArrayLike) -> float:
    """IDRiD-cls "joint accuracy": the fraction of samples whose every head (DR grade, DME risk) is correct.

    Both arguments hold one integer class per head, ``(N, n_heads)``; ``(N,)`` is read as a single head
    (plain accuracy).
    """
    predicted, target = torch.as_tensor(predicted), torch.as_tensor(target)
    if predicted.shape != target.shape or predicted.ndim not in (1, 2):
        raise ValueError(
            f"predicted and target must both be (N, n_heads), got {tuple(predicted.shape)} "
            f"and {tuple(target.shape)}"
        )
    if predicted.shape[0] == 0:
        raise ValueError("joint accuracy of zero samples is undefined")
    all_correct = (predicted == target).reshape(predicted.shape[0], -1).all(dim=1)
    return all_correct.double().mean().item()


def average_precision(scores: ArrayLike, targets: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision, ``sum_n (R_n - R_{n-1}) P_n``.

    The thresholds are the distinct scores in decreasing order; P_n and R_n are precision and recall
    when every sample scoring at least the n-th threshold is called positive, with R_0 = 0. This is
    scikit-learn's ``average_precision_score``: no interpolation, and tied scores form one threshold,
    so the result does not depend on the order of tied samples. Inputs of any shape are flattened.

    Computed exactly as the mean, over the positive samples, of the precision at the positive's own
    score: a threshold whose tie group holds k positives raises recall by k / (number of positives),
    so the sum above gives each positive the weight 1 / (number of positives). That needs sorted
    values only (no argsort), about half a second for 10^7 pixels with 1% positives.

    Args:
        scores: per-sample scores, higher meaning more likely positive (probabilities or logits give
            the same value, as only the order matters). NaN scores are rejected.
        targets: binary ground truth of the same size (0/1 or bool).

    Returns:
        The average precision, or NaN when there is no positive sample (recall is undefined).
    """
    scores = torch.as_tensor(scores).detach().cpu().reshape(-1)
    targets = _binary(targets, "targets").cpu().reshape(-1)
    if scores.numel() != targets.numel():
        raise ValueError(f"scores and targets differ in size: {scores.numel()} vs {targets.numel()}")
    # numpy has no bfloat16/float16 sort worth using; float32 holds both exactly, float64 stays float64
    scores = scores.numpy() if scores.dtype == torch.float64 else scores.float().numpy()
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN, which has no place in a ranking")
    positive_scores = np.sort(scores[targets.numpy()])
    if positive_scores.size == 0:
        return math.nan

    all_sorted = np.sort(scores)
    # samples (all, and positive only) scoring at least each positive's score; side="left" counts ties in
    at_or_above = scores.size - np.searchsorted(all_sorted, positive_scores, side="left")
    positives_at_or_above = positive_scores.size - np.searchsorted(
        positive_scores, positive_scores, side="left"
    )
    return float(np.mean(positives_at_or_above / at_or_above))


def mean_average_precision(probs: ArrayLike, masks: ArrayLike) -> tuple[float, list[float]]:
    """IDRiD-seg "average AUC-PR": the average precision of each class over all pixels of all images, then
    their mean.

    Args:
        probs: per-pixel scores ``(N, C, *spatial)``, one channel per lesion type.
        masks: binary ground truth of the same shape.

    Returns:
        ``(mean, per_class)``. A class without any positive pixel in ``masks`` scores NaN in
        ``per_class`` and is left out of the mean (NaN if every class is empty).
    """
    probs, masks = torch.as_tensor(probs), torch.as_tensor(masks)
    _check_same_shape(probs, masks, "probs and masks")
    per_class = [average_precision(probs[:, index], masks[:, index]) for index in range(probs.shape[1])]
    return _nanmean(per_class), per_class


def binary_f1(pred_binary: ArrayLike, target: ArrayLike) -> float:
    """F1-score over all pixels, 2TP / (2TP + FP + FN), which equals the Dice coefficient.

    NaN when both prediction and target are empty (nothing to find, nothing found); a non-empty
    prediction of an empty target scores 0.
    """
    predicted, target = _binary(pred_binary, "pred_binary"), _binary(target, "target")
    if predicted.shape != target.shape:
        raise ValueError(
            f"pred_binary and target differ in shape: {tuple(predicted.shape)} vs {tuple(target.shape)}"
        )
    true_pos = int((predicted & target).sum())
    return _f1_from_counts(true_pos, int(predicted.sum()) - true_pos, int(target.sum()) - true_pos)


def mean_f1(probs: ArrayLike, masks: ArrayLike, threshold: float = 0.5) -> tuple[float, list[float]]:
    """REFUGE-seg "average F1-score" (optic disc, optic cup) and the Vessel-seg / SIIM-ACR F1-score.

    ``probs >= threshold`` is the prediction; each class's F1 pools all pixels of all images.

    Args:
        probs: ``(N, C, *spatial)`` probabilities (or an already binary prediction).
        masks: binary ground truth of the same shape.
        threshold: probability at or above which a pixel is predicted positive.

    Returns:
        ``(mean, per_class)``; classes whose F1 is NaN (see :func:`binary_f1`) are left out of the mean.
    """
    probs, masks = torch.as_tensor(probs), torch.as_tensor(masks)
    _check_same_shape(probs, masks, "probs and masks")
    predicted = probs >= threshold
    per_class = [binary_f1(predicted[:, index], masks[:, index]) for index in range(probs.shape[1])]
    return _nanmean(per_class), per_class


def _require_data(buffer: object, metric: str) -> None:
    if buffer is None:
        raise ValueError(f"{metric}: no data accumulated yet, call the metric on a batch before aggregate()")


class JointAccuracyMetric(CumulativeIterationMetric):
    """Cumulative IDRiD-cls joint accuracy, from the concatenated logits of an ``EncoderClassifier``.

    Call with ``y_pred`` logits ``(B, sum(head_sizes))`` and ``y`` classes ``(B, n_heads)``; each head's
    prediction is the argmax over its slice of the logits. ``aggregate()`` returns the joint accuracy
    and sets ``per_head``, the accuracy of each head alone (the paper's Table B.1 reports both).
    """

    def __init__(self, head_sizes: int | Sequence[int]) -> None:
        super().__init__()
        self.head_sizes = (head_sizes,) if isinstance(head_sizes, int) else tuple(head_sizes)

    def reset(self) -> None:
        super().reset()
        self.per_head: list[float] = []

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if y_pred.ndim != 2 or y_pred.shape[1] != sum(self.head_sizes):
            raise ValueError(f"y_pred must be logits (B, {sum(self.head_sizes)}), got {tuple(y_pred.shape)}")
        predicted = torch.stack(
            [head.argmax(dim=1) for head in torch.split(y_pred, self.head_sizes, dim=1)], dim=1
        )
        target = y.reshape(y.shape[0], -1).long()
        if target.shape != predicted.shape:
            raise ValueError(
                f"y must hold one class per head, (B, {len(self.head_sizes)}), got {tuple(y.shape)}"
            )
        return predicted.cpu(), target.cpu()

    def aggregate(self) -> float:
        buffers = self.get_buffer()
        _require_data(buffers, "JointAccuracyMetric")
        predicted, target = buffers
        self.per_head = (predicted == target).double().mean(dim=0).tolist()
        return joint_accuracy(predicted, target)


class ClassF1Metric(CumulativeIterationMetric):
    """Cumulative F1-score of one class (REFUGE-cls: glaucoma, class 1) over all images.

    Call with ``y_pred`` logits ``(B, n_classes)`` and ``y`` classes ``(B,)`` or ``(B, 1)``; the predicted
    class is the argmax. ``aggregate()`` returns :func:`binary_f1` of "is ``positive_class``": 0 when the
    class is never predicted but present, NaN when it is neither predicted nor present.
    """

    def __init__(self, positive_class: int = 1) -> None:
        super().__init__()
        self.positive_class = positive_class

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if y_pred.ndim != 2 or y_pred.shape[1] <= self.positive_class:
            raise ValueError(f"y_pred must be logits (B, n_classes > {self.positive_class}), got {tuple(y_pred.shape)}")
        target = y.reshape(-1).long()
        if len(target) != len(y_pred):
            raise ValueError(f"y must hold one class per image, {len(y_pred)}, got {tuple(y.shape)}")
        return y_pred.argmax(dim=1).cpu(), target.cpu()

    def aggregate(self) -> float:
        buffers = self.get_buffer()
        _require_data(buffers, "ClassF1Metric")
        predicted, target = buffers
        return binary_f1(predicted == self.positive_class, target == self.positive_class)


class AveragePrecisionMetric(CumulativeIterationMetric):
    """Cumulative IDRiD-seg average AUC-PR: keeps every pixel's score and label, computes at the end.

    Call with ``y_pred`` per-pixel scores and ``y`` binary masks, both ``(B, C, *spatial)``.
    ``aggregate()`` returns the mean over classes of :func:`average_precision` on all pooled pixels and
    sets ``per_class`` (NaN for classes with no positive pixel, which the mean leaves out).

    The whole set's scores are kept (float32, on CPU) because an exact PR curve needs them all: IDRiD-seg's
    27 test images x 4 lesion types at 1024 px are ~0.5 GB, which is fine here; masks are kept as uint8.
    """

    def reset(self) -> None:
        super().reset()
        self.per_class: list[float] = []

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        _check_same_shape(y_pred, y, "y_pred and y", min_dims=3)
        return y_pred.float().cpu(), _binary(y, "y").to(torch.uint8).cpu()

    def aggregate(self) -> float:
        buffers = self.get_buffer()
        _require_data(buffers, "AveragePrecisionMetric")
        scores, masks = buffers
        mean, self.per_class = mean_average_precision(scores, masks)
        return mean


class MeanF1Metric(ConfusionMatrixMetric):
    """Cumulative average F1-score over classes (REFUGE-seg, Vessel-seg, SIIM-ACR), pooling all pixels.

    MONAI's ``ConfusionMatrixMetric("f1 score")`` with the confusion matrices summed over every image
    before the score (``compute_sample=False``, ``reduction="sum_batch"``): one F1 per class for the
    whole set. Call with ``y_pred`` probabilities and ``y`` binary masks, both ``(B, C, *spatial)``;
    pixels with ``y_pred >= threshold`` are predicted positive. ``aggregate()`` returns the mean F1
    over classes and sets ``per_class`` (NaN for a class absent from both prediction and ground
    truth, left out of the mean).
    """

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__(include_background=True, metric_name="f1 score", compute_sample=False, reduction="sum_batch")
        self.threshold = threshold
        self.per_class: list[float] = []

    def reset(self) -> None:
        super().reset()
        self.per_class = []

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        _check_same_shape(y_pred, y, "y_pred and y", min_dims=3)
        return super()._compute_tensor((y_pred >= self.threshold).float(), _binary(y, "y").float()).cpu()

    def aggregate(self) -> float:  # type: ignore[override]
        _require_data(self.get_buffer(), "MeanF1Metric")
        (per_class,) = super().aggregate()
        self.per_class = [float(value) for value in per_class]
        return _nanmean(self.per_class)


class JointAccuracy(IgniteMetricHandler):
    """Ignite handler for :class:`JointAccuracyMetric` (IDRiD-cls); ``per_head`` after the epoch.

    Args:
        head_sizes: classes per head, e.g. ``(5, 3)`` for DR grade and DME risk.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, e.g. ``from_engine(["pred", "label"])``.
    """

    def __init__(self, head_sizes: int | Sequence[int], output_transform: Callable = lambda x: x) -> None:
        super().__init__(
            metric_fn=JointAccuracyMetric(head_sizes), output_transform=output_transform, save_details=False
        )

    @property
    def per_head(self) -> list[float]:
        return self.metric_fn.per_head


class ClassF1(IgniteMetricHandler):
    """Ignite handler for :class:`ClassF1Metric` (REFUGE-cls F1-score of the glaucoma class)."""

    def __init__(self, positive_class: int = 1, output_transform: Callable = lambda x: x) -> None:
        super().__init__(
            metric_fn=ClassF1Metric(positive_class), output_transform=output_transform, save_details=False
        )


class AveragePrecision(IgniteMetricHandler):
    """Ignite handler for :class:`AveragePrecisionMetric` (IDRiD-seg average AUC-PR); ``per_class`` after the epoch.

    Per-image details are not saved to ``engine.state.metric_details``: they would be the whole set of pixels again.
    """

    def __init__(self, output_transform: Callable = lambda x: x) -> None:
        super().__init__(
            metric_fn=AveragePrecisionMetric(), output_transform=output_transform, save_details=False
        )

    @property
    def per_class(self) -> list[float]:
        return self.metric_fn.per_class


class MeanF1(IgniteMetricHandler):
    """Ignite handler for :class:`MeanF1Metric` (average F1-score over classes); ``per_class`` after the epoch."""

    def __init__(self, threshold: float = 0.5, output_transform: Callable = lambda x: x) -> None:
        super().__init__(
            metric_fn=MeanF1Metric(threshold), output_transform=output_transform, save_details=False
        )

    @property
    def per_class(self) -> list[float]:
        return self.metric_fn.per_class


SEGMENTATION_METRICS = {"auc_pr": AveragePrecision, "f1": MeanF1}


def segmentation_metric(name: str, output_transform: Callable | None = None) -> IgniteMetricHandler:
    """The handler of the paper's segmentation metric ``name``: ``"auc_pr"`` (IDRiD-seg) or ``"f1"`` (the others).

    ``output_transform`` defaults to reading ``pred`` and ``label`` from a (decollated or batched) engine
    output, as the fine-tuning configs need; a config names the task's metric instead of branching on it.
    """
    if name not in SEGMENTATION_METRICS:
        raise ValueError(f"segmentation metric must be one of {sorted(SEGMENTATION_METRICS)}, got {name!r}")
    return SEGMENTATION_METRICS[name](output_transform=output_transform or from_engine(["pred", "label"]))
