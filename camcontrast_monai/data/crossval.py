"""Development/holdout split and k-fold cross-validation at the patient level (paper section 4.7).

ADNI-1 in the paper: 628 development and 156 holdout scans; 5-fold cross-validation on the development
set, the best model of each fold evaluated on the holdout. Every split here keeps all sessions of a
participant together (no subject is ever on both sides) and is stratified by diagnosis: patients are
grouped by their baseline (first listed) class, shuffled with the seed, and dealt out class by class.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["crossval_splits", "patient_folds"]


def _patients_by_class(datalist: Sequence[dict], patient_key: str, class_key: str) -> dict[object, list[str]]:
    """Patient ids grouped by the class of each patient's first entry, in first-appearance order."""
    first_class: dict[str, object] = {}
    for entry in datalist:
        if patient_key not in entry:
            raise ValueError(f"patient-level splits need {patient_key!r} in every entry; missing in {entry}")
        first_class.setdefault(str(entry[patient_key]), entry.get(class_key))
    groups: dict[object, list[str]] = {}
    for patient, label in first_class.items():
        groups.setdefault(label, []).append(patient)
    return groups


def patient_folds(
    datalist: Sequence[dict], n_folds: int = 5, seed: int = 0, patient_key: str = "patient_id", class_key: str = "class_index"
) -> list[list[dict]]:
    """``n_folds`` disjoint groups of entries, whole patients at a time, stratified by ``class_key``.

    Within each class the patients are shuffled with ``seed`` and dealt round-robin, continuing the
    deal across classes so the fold sizes differ by at most one patient. Entries keep datalist order.
    """
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    groups = _patients_by_class(datalist, patient_key, class_key)
    n_patients = sum(len(patients) for patients in groups.values())
    if n_patients < n_folds:
        raise ValueError(f"{n_patients} patients cannot fill {n_folds} folds")
    rng = random.Random(seed)
    fold_of: dict[str, int] = {}
    dealt = 0
    for label in sorted(groups, key=str):
        patients = list(groups[label])
        rng.shuffle(patients)
        for patient in patients:
            fold_of[patient] = dealt % n_folds
            dealt += 1
    return [[entry for entry in datalist if fold_of[str(entry[patient_key])] == fold] for fold in range(n_folds)]


def crossval_splits(
    datalist: Sequence[dict],
    n_folds: int = 5,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    patient_key: str = "patient_id",
    class_key: str = "class_index",
) -> dict:
    """``{"development": [...], "holdout": [...], "folds": [{"train": [...], "val": [...]}, ...]}``.

    The holdout takes ``holdout_fraction`` of the patients of every class (at least one per class
    that has two or more patients); the rest is the development set, cut into ``n_folds`` folds by
    :func:`patient_folds`. Fold ``k`` validates on fold ``k`` and trains on the others. The holdout
    depends only on ``seed`` and ``holdout_fraction``, never on ``n_folds``.
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    groups = _patients_by_class(datalist, patient_key, class_key)
    rng = random.Random(seed)
    holdout_patients: set[str] = set()
    for label in sorted(groups, key=str):
        patients = list(groups[label])
        rng.shuffle(patients)
        n_holdout = round(holdout_fraction * len(patients))
        if len(patients) >= 2:
            n_holdout = min(max(n_holdout, 1), len(patients) - 1)
        holdout_patients.update(patients[:n_holdout])
    development = [entry for entry in datalist if str(entry[patient_key]) not in holdout_patients]
    holdout = [entry for entry in datalist if str(entry[patient_key]) in holdout_patients]
    folds = patient_folds(development, n_folds, seed + 1, patient_key, class_key)
    return {
        "development": development,
        "holdout": holdout,
        "folds": [
            {"train": [entry for k, fold in enumerate(folds) if k != index for entry in fold], "val": folds[index]}
            for index in range(n_folds)
        ],
    }
