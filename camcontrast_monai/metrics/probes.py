"""Frozen-feature evaluation: a linear probe and a kNN classifier on pooled encoder features.

This is how self-supervised learning libraries judge a representation without fine-tuning it: the
encoder is frozen, each image becomes one pooled feature vector, and a simple classifier is fitted
on a training part of the vectors and scored on the rest. It costs seconds, so it is repeated over
many resampled splits; every encoder sees the same splits, so the scores pair up by split.

- linear probe: standardised features -> L2-regularised logistic regression (one-vs-rest per label
  for multilabel tasks), the inverse regularisation ``C`` chosen by cross-validation on the training
  part only;
- kNN: L2-normalised features -> distance-weighted cosine nearest neighbours, ``k`` chosen the same way;
- trivial: the training part's most frequent class (multilabel: each label's training rate), the
  score a representation must beat to carry any information.

Scores are accuracy for single-label tasks and mean ROC AUC over the labels for multilabel tasks
(labels with one class only in a test part are left out of that part's mean).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import make_scorer
from sklearn.model_selection import (
    GridSearchCV,
    GroupShuffleSplit,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from threadpoolctl import threadpool_limits

from camcontrast_monai.metrics.multilabel import multilabel_auc

__all__ = [
    "C_GRID",
    "K_GRID",
    "PROBES",
    "ProbeTask",
    "knn_probe",
    "linear_probe",
    "mean_auc",
    "probe_encoders",
    "probe_score",
    "resampled_splits",
    "trivial_probe",
]

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # inverse L2 strength of the logistic regression
K_GRID = (1, 3, 5, 10, 20)  # neighbours of the kNN classifier
PROBES = ("linear", "knn")
INNER_FOLDS = 3


@dataclasses.dataclass(frozen=True)
class ProbeTask:
    """A classification task over the probed images: ``labels`` ``(N,)`` class indices or ``(N, K)`` 0/1 multilabel."""

    name: str
    labels: np.ndarray

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim not in (1, 2) or len(labels) == 0:
            raise ValueError(
                f"task {self.name!r}: labels must be (N,) classes or (N, K) multilabel, got shape {labels.shape}"
            )
        object.__setattr__(self, "labels", labels.astype(int))

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    @property
    def metric(self) -> str:
        return "mean AUC" if self.multilabel else "accuracy"


def _positive_scores(probabilities: np.ndarray | Sequence[np.ndarray], n_labels: int) -> np.ndarray:
    """``(N, K)`` probability of each label being present, from either sklearn multilabel output form."""
    if isinstance(probabilities, list):  # KNeighborsClassifier: one (N, classes seen) array per label
        columns = [p[:, -1] if p.shape[1] > 1 else np.zeros(len(p)) for p in probabilities]
        return np.stack(columns, axis=1)
    return np.asarray(probabilities).reshape(-1, n_labels)


def mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean ROC AUC over the labels that have both classes in ``labels``; NaN when none has."""
    return multilabel_auc(scores, labels)[0]


def probe_score(task: ProbeTask, true: np.ndarray, predicted: np.ndarray) -> float:
    """Accuracy of predicted classes, or mean AUC of predicted ``(N, K)`` label probabilities."""
    if task.multilabel:
        return mean_auc(true, predicted)
    return float(np.mean(true == predicted))


def _scorer(task: ProbeTask):
    if not task.multilabel:
        return "accuracy"
    n_labels = task.labels.shape[1]
    return make_scorer(
        lambda true, proba: np.nan_to_num(mean_auc(true, _positive_scores(proba, n_labels)), nan=0.5),
        response_method="predict_proba",
    )


def _inner_folds(task: ProbeTask, train_labels: np.ndarray, seed: int):
    if task.multilabel or np.bincount(train_labels).max(initial=0) < INNER_FOLDS:
        return KFold(INNER_FOLDS, shuffle=True, random_state=seed)
    return StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed)


def _fit_and_predict(
    task: ProbeTask, model: Pipeline, grid: Mapping[str, Sequence], train_x: np.ndarray, train_y: np.ndarray,
    test_x: np.ndarray, seed: int,
) -> np.ndarray:  # fmt: skip
    if not task.multilabel and len(np.unique(train_y)) < 2:
        # a small set's training part can hold one class only: nothing to fit, that class is the prediction
        return np.full(len(test_x), train_y[0])
    search = GridSearchCV(
        model, grid, scoring=_scorer(task), cv=_inner_folds(task, train_y, seed), error_score=np.nan
    )
    with warnings.catch_warnings():
        # small inner folds: classes missing from a fold, lbfgs stopping at max_iter on separable data
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        search.fit(train_x, train_y)
        if task.multilabel:
            return _positive_scores(search.predict_proba(test_x), train_y.shape[1])
        return search.predict(test_x)


def linear_probe(
    task: ProbeTask, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0,
    c_grid: Sequence[float] = C_GRID,
) -> np.ndarray:  # fmt: skip
    """Fit the L2 logistic regression on the training part (``C`` from ``c_grid`` by inner cross-validation) and
    predict the test part: classes, or ``(N, K)`` label probabilities for a multilabel task."""
    logistic = LogisticRegression(max_iter=2000, tol=1e-3)  # a probe needs no tighter optimum; twice as fast
    classifier = OneVsRestClassifier(logistic) if task.multilabel else logistic
    key = "classifier__estimator__C" if task.multilabel else "classifier__C"
    model = Pipeline([("scale", StandardScaler()), ("classifier", classifier)])
    return _fit_and_predict(task, model, {key: list(c_grid)}, train_x, train_y, test_x, seed)


def knn_probe(
    task: ProbeTask, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0,
    k_grid: Sequence[int] = K_GRID,
) -> np.ndarray:  # fmt: skip
    """Distance-weighted cosine kNN (``k`` from ``k_grid`` by inner cross-validation, capped by the inner training size)."""
    largest = len(train_x) - len(train_x) // INNER_FOLDS - 1
    ks = [k for k in k_grid if k <= largest] or [1]
    model = Pipeline(
        [
            ("normalise", Normalizer()),
            ("classifier", KNeighborsClassifier(metric="cosine", weights="distance")),
        ]
    )
    return _fit_and_predict(task, model, {"classifier__n_neighbors": ks}, train_x, train_y, test_x, seed)


def trivial_probe(task: ProbeTask, train_y: np.ndarray, n_test: int) -> np.ndarray:
    """The prediction that uses no image: the training part's majority class, or each label's training rate."""
    if task.multilabel:
        return np.tile(train_y.mean(axis=0), (n_test, 1))
    return np.full(n_test, np.bincount(train_y).argmax())


def resampled_splits(
    task: ProbeTask,
    n_splits: int = 20,
    test_fraction: float = 0.3,
    seed: int = 0,
    groups: Sequence | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` random train/test index splits.

    With ``groups`` (e.g. patient ids) no group is split between train and test, and ``test_fraction``
    is a fraction of the groups; otherwise splits are stratified by class when every class has two or
    more images.
    """
    labels = task.labels
    placeholder = np.zeros(len(labels))
    if groups is not None:
        if len(groups) != len(labels):
            raise ValueError(f"{len(groups)} groups for {len(labels)} images")
        splitter = GroupShuffleSplit(n_splits, test_size=test_fraction, random_state=seed)
        return list(splitter.split(placeholder, groups=np.asarray([str(g) for g in groups])))
    if not task.multilabel and np.bincount(labels)[np.bincount(labels) > 0].min() >= 2:
        splitter = StratifiedShuffleSplit(n_splits, test_size=test_fraction, random_state=seed)
        return list(splitter.split(placeholder, labels))
    return list(ShuffleSplit(n_splits, test_size=test_fraction, random_state=seed).split(placeholder))


def _score_split(
    task: ProbeTask, features: Mapping[str, np.ndarray], train: np.ndarray, test: np.ndarray, probes: Sequence[str],
    seed: int,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """One split's scores: ``{probe: {encoder: score}}`` plus the trivial predictor's."""
    fitters = {"linear": linear_probe, "knn": knn_probe}
    train_y, test_y = task.labels[train], task.labels[test]
    scores = {"trivial": {"trivial": probe_score(task, test_y, trivial_probe(task, train_y, len(test)))}}
    # the fits are tiny: BLAS and OpenMP threads only add overhead, and their spin-waiting slows a
    # training run that shares the cores many times over (seen beside stage 2 on 2 cores)
    with threadpool_limits(limits=1):
        for probe in probes:
            scores[probe] = {
                name: probe_score(task, test_y, fitters[probe](task, array[train], train_y, array[test], seed=seed))
                for name, array in features.items()
            }
    return scores


def probe_encoders(
    features: Mapping[str, np.ndarray], task: ProbeTask, n_splits: int = 20, test_fraction: float = 0.3, seed: int = 0,
    probes: Sequence[str] = PROBES, groups: Sequence | None = None, n_jobs: int = 1,
) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Score every encoder's features with every probe on the same ``n_splits`` resampled splits.

    Args:
        features: encoder name -> ``(N, D)`` features of the task's N images, in the order of ``task.labels``.
        task: the labels to predict.
        n_splits, test_fraction, seed, groups: the resampled splits (see :func:`resampled_splits`), shared
            by every encoder and probe.
        probes: any of ``"linear"``, ``"knn"``.
        n_jobs: processes that score the splits (joblib); the scores do not depend on it.

    Returns:
        ``{probe: {encoder: (n_splits,) scores}}`` plus ``{"trivial": {"trivial": (n_splits,) scores}}``:
        score ``i`` of every entry comes from split ``i``, so differences between encoders pair up.
    """
    unknown = sorted(set(probes) - set(PROBES))
    if unknown:
        raise ValueError(f"unknown probes {unknown}; choose from {list(PROBES)}")
    for name, array in features.items():
        if np.asarray(array).shape[0] != len(task.labels):
            raise ValueError(
                f"encoder {name!r}: {np.asarray(array).shape[0]} feature rows for {len(task.labels)} labels"
            )
    features = {name: np.asarray(array, dtype=np.float64) for name, array in features.items()}
    jobs = (
        delayed(_score_split)(task, features, train, test, probes, seed + split)
        for split, (train, test) in enumerate(resampled_splits(task, n_splits, test_fraction, seed, groups))
    )
    by_split = Parallel(n_jobs=n_jobs)(jobs)  # n_jobs=1: in this process, one split after another
    scores: dict[str, dict[str, list[float]]] = {probe: {name: [] for name in features} for probe in probes}
    scores["trivial"] = {"trivial": []}
    for split_scores in by_split:
        for probe, by_name in split_scores.items():
            for name, value in by_name.items():
                scores[probe][name].append(value)
    return {
        probe: {name: np.asarray(values) for name, values in by_name.items()}
        for probe, by_name in scores.items()
    }
