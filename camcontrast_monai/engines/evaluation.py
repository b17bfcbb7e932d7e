"""Final test evaluation of a fine-tuned model: best validation checkpoint -> test metrics JSON; and the test
score of the trivial predictor, which sees no image, for the power check of a downstream task."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from monai.engines import Evaluator
from monai.handlers import IgniteMetricHandler

from camcontrast_monai.engines.distributed import (
    broadcast_module_state,
    distributed_rank,
    distributed_world_size,
)
from camcontrast_monai.utils.io import load_weights, write_json

__all__ = ["combination_logits", "evaluate_best_model", "label_combination_logits", "trivial_test_score"]

logger = logging.getLogger(__name__)


def evaluate_best_model(
    evaluator: Evaluator,
    best_model_path: str,
    output_path: str,
    details: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load the best validation weights into ``evaluator.network``, run it once, write the metrics.

    The JSON holds ``metrics`` (the evaluator's metric values), then for each ``details`` entry the
    named metric handler's ``per_head`` / ``per_class`` values (read after the run), and ``info``
    (task, initialisation, label fraction, seed, split sizes) so every number says where it came from.
    If validation never saved a best model (e.g. zero epochs), the current weights are evaluated and
    the JSON says so.

    Under a process group (``torchrun``) every process must call it: rank 0 reads the best model (only
    rank 0 wrote it, and other nodes may not see its disk) and broadcasts the weights, so every process
    evaluates the same model on its share of the test set (a ``DistributedSampler``; the metrics gather
    the shares), and rank 0 alone writes the JSON. Every process returns the same result.
    """
    rank = distributed_rank()
    from_best = rank == 0 and Path(best_model_path).is_file()
    if from_best:
        load_weights(evaluator.network, best_model_path)
    if distributed_world_size() > 1:
        decision = [from_best]
        dist.broadcast_object_list(decision, src=0)
        from_best = decision[0]
        broadcast_module_state(evaluator.network, src=0)
    if not from_best and rank == 0:
        logger.warning("no best model at %s: evaluating the current weights", best_model_path)
    evaluator.run()
    result: dict[str, Any] = {
        "metrics": dict(evaluator.state.metrics),
        "weights": str(best_model_path) if from_best else "last",
        **dict(info or {}),
    }
    for name, handler in (details or {}).items():
        result[name] = getattr(handler, name)
    if rank == 0:
        write_json(result, output_path)
        logger.info("test metrics %s written to %s", result["metrics"], output_path)
    return result


def label_combination_logits(train_labels: Sequence[Sequence[int]] | np.ndarray, head_sizes: Sequence[int]) -> list[torch.Tensor]:
    """One logit vector ``(sum(head_sizes),)`` per label combination seen in training, most frequent first.

    These are the constant predictions a classifier can make without the image; for a multi-head task
    (IDRiD grading: DR grade and DME risk) the combination is a pair, whose mode maximises joint accuracy
    even where the per-head majorities form a rarer pair. Ties keep the combination that sorts first.
    """
    labels = np.asarray(train_labels, dtype=int).reshape(len(train_labels), -1)
    if labels.shape[1] != len(head_sizes) or len(labels) == 0:
        raise ValueError(f"train labels must be (N, {len(head_sizes)}) with N > 0, got {labels.shape}")
    combinations, counts = np.unique(labels, axis=0, return_counts=True)
    return list(combination_logits(combinations[np.argsort(-counts, kind="stable")], head_sizes))


def combination_logits(combinations: np.ndarray, head_sizes: Sequence[int]) -> torch.Tensor:
    """One-hot logits ``(N, sum(head_sizes))`` that predict label combination ``combinations[i]`` (one class
    per head, ``(N, n_heads)``) for row ``i``, in the layout of an ``EncoderClassifier``'s concatenated heads."""
    combinations = np.asarray(combinations, dtype=int).reshape(len(combinations), -1)
    logits = torch.zeros(len(combinations), sum(head_sizes))
    columns = np.cumsum([0, *head_sizes[:-1]]) + combinations
    logits[np.arange(len(combinations))[:, None], torch.as_tensor(columns)] = 1.0
    return logits


def _score(metric: IgniteMetricHandler, samples: Iterable[Mapping[str, Any]], predict: Callable[[torch.Tensor], torch.Tensor]) -> float:
    metric_fn = metric.metric_fn
    metric_fn.reset()
    for sample in samples:
        label = torch.as_tensor(np.asarray(sample["label"]))[None]
        metric_fn(y_pred=predict(label), y=label)
    return float(metric_fn.aggregate())


def trivial_test_score(
    metric: IgniteMetricHandler, train: Iterable[Mapping[str, Any]], test: Iterable[Mapping[str, Any]],
    candidates: Sequence[Callable[[torch.Tensor], torch.Tensor]],
) -> float:  # fmt: skip
    """The test score of the best predictor that sees no image: of the constant ``candidates``, the one that
    ``metric`` scores highest on ``train`` (samples with a ``label``), scored on ``test``.

    A candidate maps a batch of one label to its prediction: ``torch.zeros_like`` (all background) and
    ``torch.ones_like`` (all foreground) for segmentation, a function returning one of
    :func:`label_combination_logits` for classification. Choosing on the training split keeps the test
    split unseen: the most frequent class for accuracy, the positive class for an F1 of a rare class.
    The same metric code scores the fine-tuned models, so a downstream task is learnable in its budget
    only where random initialisation beats this number.
    """
    train, test = list(train), list(test)
    best = max(candidates, key=lambda predict: _score(metric, train, predict))
    return _score(metric, test, best)
