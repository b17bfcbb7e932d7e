from camcontrast_monai.metrics.downstream import (
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
    segmentation_metric,
)
from camcontrast_monai.metrics.multilabel import MultilabelAUC, MultilabelAUCMetric, multilabel_auc
from camcontrast_monai.metrics.paired import PairedDifference, paired_difference

__all__ = [
    "MultilabelAUC",
    "MultilabelAUCMetric",
    "multilabel_auc",
    "AveragePrecision",
    "AveragePrecisionMetric",
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
    "PairedDifference",
    "paired_difference",
]
# camcontrast_monai.metrics.probes (frozen-feature probes) is not imported here: it loads scikit-learn
