import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from camcontrast_monai.metrics import (
    AveragePrecision,
    AveragePrecisionMetric,
    JointAccuracy,
    JointAccuracyMetric,
    MeanF1,
    MeanF1Metric,
    average_precision,
    binary_f1,
    joint_accuracy,
    mean_average_precision,
    mean_f1,
)


def brute_force_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """The textbook sum over thresholds, one threshold per distinct score, highest first."""
    positives = targets.sum()
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores.tolist()), reverse=True):
        called = scores >= threshold
        true_pos = (called & (targets == 1)).sum()
        recall = true_pos / positives
        total += (recall - previous_recall) * true_pos / called.sum()
        previous_recall = recall
    return total


def run_engine(handler, name: str, batches: list) -> float:
    engine = Engine(lambda engine, batch: batch)
    handler.attach(engine, name)
    engine.run(batches, max_epochs=1)
    return engine.state.metrics[name]


# ---- average precision (IDRiD-seg AUC-PR)


def test_average_precision_by_hand():
    # thresholds 0.9 (P=1, R=1/2), 0.8 (R unchanged), 0.7 (P=2/3, R=1): 1 * 0.5 + 2/3 * 0.5
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    assert average_precision([0.1, 0.2, 0.3], [0, 0, 1]) == pytest.approx(1.0)


def test_tied_scores_form_one_threshold_whatever_their_order():
    # threshold 0.9: P=1, R=1/2; threshold 0.5 takes both tied samples: P=2/3, R=1
    assert average_precision([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(5 / 6)
    assert average_precision([0.9, 0.5, 0.5, 0.1], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # all samples tied: one threshold at which precision is the positive rate
    assert average_precision([0.3] * 4, [1, 0, 0, 0]) == pytest.approx(0.25)


def test_average_precision_without_positives_is_nan():
    assert math.isnan(average_precision([0.9, 0.1], [0, 0]))


def test_average_precision_matches_brute_force_threshold_loop():
    generator = np.random.default_rng(0)
    for _ in range(5):
        # coarse scores so that ties occur often
        scores = generator.integers(0, 20, size=300) / 20.0
        targets = (generator.random(300) < 0.3).astype(np.int64)
        expected = brute_force_average_precision(scores, targets)
        assert average_precision(torch.from_numpy(scores), targets) == pytest.approx(expected, abs=1e-12)
        assert average_precision(scores.astype(np.float32), targets.astype(bool)) == pytest.approx(
            expected, abs=1e-6
        )


def test_average_precision_matches_scikit_learn_when_available():
    metrics = pytest.importorskip("sklearn.metrics")
    generator = np.random.default_rng(1)
    scores = generator.integers(0, 50, size=1000) / 50.0
    targets = (generator.random(1000) < 0.2).astype(np.int64)
    assert average_precision(scores, targets) == pytest.approx(
        metrics.average_precision_score(targets, scores)
    )


def test_average_precision_rejects_soft_masks_and_nan_scores():
    with pytest.raises(ValueError, match="binary"):
        average_precision([0.2, 0.4], [0.0, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        average_precision([float("nan"), 0.4], [0, 1])


def test_mean_average_precision_leaves_classes_without_lesions_out_of_the_mean():
    probs = torch.tensor([0.9, 0.8, 0.7, 0.6]).reshape(1, 1, 2, 2).repeat(1, 3, 1, 1)
    masks = torch.zeros(1, 3, 2, 2)
    masks[0, 0] = torch.tensor([[1, 0], [1, 0]])  # AP 5/6 as above
    masks[0, 2] = torch.tensor([[1, 1], [0, 0]])  # the two top scores: AP 1
    mean, per_class = mean_average_precision(probs, masks)
    assert per_class[0] == pytest.approx(5 / 6)
    assert math.isnan(per_class[1])
    assert per_class[2] == pytest.approx(1.0)
    assert mean == pytest.approx((5 / 6 + 1) / 2)


def test_mean_average_precision_pools_pixels_across_images():
    generator = torch.Generator().manual_seed(2)
    probs = torch.rand(3, 2, 8, 8, generator=generator)
    masks = (torch.rand(3, 2, 8, 8, generator=generator) < 0.2).float()
    _, per_class = mean_average_precision(probs, masks)
    for index in range(2):
        pooled = average_precision(probs[:, index].flatten(), masks[:, index].flatten())
        assert per_class[index] == pytest.approx(pooled)


# ---- joint accuracy (IDRiD-cls) and F1


def test_joint_accuracy_needs_every_head_right():
    predicted = [[0, 1], [2, 2], [4, 0], [1, 1]]
    target = [[0, 1], [2, 1], [3, 0], [1, 1]]
    # per head DR 3/4 right, DME 3/4 right, but only samples 0 and 3 get both
    assert joint_accuracy(predicted, target) == pytest.approx(0.5)
    assert joint_accuracy(np.array([1, 2, 3]), np.array([1, 2, 0])) == pytest.approx(2 / 3)


def test_binary_f1_by_hand():
    predicted = [1, 1, 1, 0, 0, 0]
    target = [1, 1, 0, 1, 0, 0]
    # TP 2, FP 1, FN 1 -> 4 / 6
    assert binary_f1(predicted, target) == pytest.approx(2 / 3)
    assert binary_f1([1, 0], [0, 0]) == 0.0
    assert math.isnan(binary_f1([0, 0], [0, 0]))


def test_mean_f1_thresholds_and_leaves_empty_classes_out():
    probs = torch.tensor([[[0.9, 0.6, 0.2, 0.4]], [[0.1, 0.1, 0.1, 0.1]], [[0.5, 0.7, 0.0, 0.0]]]).reshape(
        1, 3, 2, 2
    )
    masks = torch.tensor([[[1, 0, 1, 0]], [[0, 0, 0, 0]], [[1, 1, 0, 0]]]).reshape(1, 3, 2, 2)
    mean, per_class = mean_f1(probs, masks)
    # class 0: predicted {0, 1}, truth {0, 2}: TP 1, FP 1, FN 1 -> 1/2; class 1 empty; class 2: 0.5 >= 0.5 -> perfect
    assert per_class[0] == pytest.approx(0.5)
    assert math.isnan(per_class[1])
    assert per_class[2] == pytest.approx(1.0)
    assert mean == pytest.approx(0.75)
    assert mean_f1(probs, masks, threshold=0.55)[1][2] == pytest.approx(2 / 3)


# ---- cumulative metrics through an ignite Engine


def test_joint_accuracy_handler_matches_the_function():
    generator = torch.Generator().manual_seed(3)
    batches = [
        (
            torch.randn(4, 8, generator=generator),
            torch.stack([torch.randint(0, 5, (4,)), torch.randint(0, 3, (4,))], 1),
        )
        for _ in range(3)
    ]
    handler = JointAccuracy(head_sizes=(5, 3))
    value = run_engine(handler, "joint_accuracy", batches)

    logits = torch.cat([logits for logits, _ in batches])
    target = torch.cat([target for _, target in batches])
    predicted = torch.stack([logits[:, :5].argmax(1), logits[:, 5:].argmax(1)], 1)
    assert value == pytest.approx(joint_accuracy(predicted, target))
    assert handler.per_head == pytest.approx((predicted == target).double().mean(0).tolist())


def test_joint_accuracy_metric_accepts_float_labels_and_decollated_lists():
    metric = JointAccuracyMetric(head_sizes=(2, 2))
    logits = torch.tensor([[3.0, 0.0, 0.0, 3.0], [0.0, 3.0, 0.0, 3.0]])
    metric(y_pred=list(logits), y=[torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])])
    assert metric.aggregate() == pytest.approx(0.5)
    assert metric.per_head == pytest.approx([1.0, 0.5])


def test_average_precision_handler_matches_the_function():
    generator = torch.Generator().manual_seed(4)
    batches = []
    for _ in range(3):
        masks = (torch.rand(2, 4, 16, 16, generator=generator) < 0.1).float()
        masks[:, 3] = 0  # a lesion type absent from the whole test set
        batches.append((torch.rand(2, 4, 16, 16, generator=generator), masks))
    handler = AveragePrecision()
    value = run_engine(handler, "auc_pr", batches)

    mean, per_class = mean_average_precision(
        torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    )
    assert value == pytest.approx(mean)
    assert handler.per_class[:3] == pytest.approx(per_class[:3])
    assert math.isnan(handler.per_class[3])


def test_mean_f1_handler_matches_the_function():
    generator = torch.Generator().manual_seed(5)
    batches = [
        (
            torch.rand(2, 2, 16, 16, generator=generator),
            (torch.rand(2, 2, 16, 16, generator=generator) < 0.3).float(),
        )
        for _ in range(3)
    ]
    handler = MeanF1(threshold=0.6)
    value = run_engine(handler, "f1", batches)

    mean, per_class = mean_f1(
        torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]), threshold=0.6
    )
    assert value == pytest.approx(mean)
    assert handler.per_class == pytest.approx(per_class)


def test_cumulative_metrics_reset_between_epochs():
    metric = MeanF1Metric()
    metric(y_pred=torch.ones(1, 1, 2, 2), y=torch.zeros(1, 1, 2, 2))
    assert metric.aggregate() == 0.0
    metric.reset()
    metric(y_pred=torch.ones(1, 1, 2, 2), y=torch.ones(1, 1, 2, 2))
    assert metric.aggregate() == 1.0

    empty = AveragePrecisionMetric()
    with pytest.raises(ValueError, match="no data"):
        empty.aggregate()


def test_mean_f1_metric_pools_images_and_leaves_a_class_absent_everywhere_out():
    metric = MeanF1Metric(threshold=0.5)
    # class 0: image 1 has TP=1, FN=1; image 2 has FP=1 -> pooled F1 = 2*1 / (2*1 + 1 + 1) = 0.5
    # class 1: never predicted, never present -> NaN, left out of the mean
    first = torch.tensor([[[[0.9, 0.1]], [[0.0, 0.0]]]]), torch.tensor([[[[1, 1]], [[0, 0]]]])
    second = torch.tensor([[[[0.7, 0.2]], [[0.3, 0.4]]]]), torch.tensor([[[[0, 0]], [[0, 0]]]])
    metric(y_pred=first[0], y=first[1])
    metric(y_pred=second[0], y=second[1])
    assert metric.aggregate() == pytest.approx(0.5)
    assert metric.per_class[0] == pytest.approx(0.5) and math.isnan(metric.per_class[1])


def test_class_f1_scores_the_glaucoma_class_by_hand():
    from camcontrast_monai.metrics import ClassF1

    metric = ClassF1().metric_fn
    # predicted classes 1, 0, 1, 1 against 1, 1, 0, 1: TP 2, FP 1, FN 1 -> 2*2 / (2*2 + 1 + 1)
    metric(y_pred=torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 3.0]]), y=torch.tensor([[1], [1], [0], [1]]))
    assert metric.aggregate() == pytest.approx(4 / 6)
    metric.reset()
    metric(y_pred=torch.tensor([[1.0, 0.0]]), y=torch.tensor([0]))
    assert math.isnan(metric.aggregate())  # glaucoma neither present nor predicted
    with pytest.raises(ValueError, match="logits"):
        metric(y_pred=torch.zeros(2, 1), y=torch.zeros(2))
