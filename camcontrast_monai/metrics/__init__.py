from camcontrast_monai.metrics import downstream
from camcontrast_monai.metrics.downstream import *  # noqa: F403  (re-exports exactly downstream.__all__)
from camcontrast_monai.metrics.multilabel import MultilabelAUC, MultilabelAUCMetric, multilabel_auc
from camcontrast_monai.metrics.paired import PairedDifference, paired_difference

__all__ = [
    "MultilabelAUC",
    "MultilabelAUCMetric",
    "multilabel_auc",
    *downstream.__all__,
    "PairedDifference",
    "paired_difference",
]
# camcontrast_monai.metrics.probes (frozen-feature probes) is not imported here: it loads scikit-learn
