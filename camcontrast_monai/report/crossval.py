"""Cross-validation summary in the layout of the paper's Table 11: per-class and mean AUC-ROC, mean ± std over folds.

The 3D bundle's ``finetune_cls.json`` writes, per initialisation, learning rate and fold,
``<root>/<init>/lr<lr>/fold<k>/val_metrics.json`` (the fold's best model on its validation fold) and
``test_metrics.json`` (the same model on the holdout set), each with ``metrics.mean_auc`` and
``per_class``. For every initialisation the learning rate with the best validation mean AUC averaged
over folds is selected (the paper's learning-rate search), and its folds are summarised.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camcontrast_monai.report.tables import markdown_table, write_json

__all__ = ["collect_crossval_results", "crossval_table", "summarize_crossval"]

logger = logging.getLogger(__name__)


def collect_crossval_results(finetune_root: str | os.PathLike) -> dict[str, dict[float, dict[int, dict[str, Any]]]]:
    """``{init: {lr: {fold: {"val": metrics json, "test": metrics json}}}}`` of every finished fold run."""
    results: dict[str, dict[float, dict[int, dict[str, Any]]]] = {}
    for test_file in sorted(Path(finetune_root).glob("*/lr*/fold*/test_metrics.json")):
        run = test_file.parent
        val_file = run / "val_metrics.json"
        if not val_file.is_file():
            logger.warning("%s has test but no validation metrics; skipped", run)
            continue
        test, val = json.loads(test_file.read_text()), json.loads(val_file.read_text())
        results.setdefault(test["init"], {}).setdefault(float(test["lr"]), {})[int(test["fold"])] = {"val": val, "test": test}
    return results


def _mean_std(values: Sequence[float | None], scale: float) -> tuple[float, float]:
    """Mean and population std over folds, leaving out folds without a value (``None`` / NaN in the JSON:
    a class absent from that fold's validation set)."""
    array = np.asarray([math.nan if v is None else v for v in values], dtype=float) * scale
    array = array[~np.isnan(array)]
    return (float(np.mean(array)), float(np.std(array))) if len(array) else (math.nan, math.nan)


def _mean_validation_auc(folds: dict[int, dict[str, Any]]) -> float:
    mean = _mean_std([fold["val"]["metrics"]["mean_auc"] for fold in folds.values()], 1.0)[0]
    return -math.inf if math.isnan(mean) else mean


def crossval_table(
    results: dict[str, dict[float, dict[int, dict[str, Any]]]],
    class_names: Sequence[str] = ("CN", "MCI", "AD"),
    n_folds: int | None = None,
    percent: bool = True,
) -> list[dict[str, Any]]:
    """One row per initialisation: selected lr, folds, then validation and test AUC per class and mean,
    each a ``(mean, std)`` over folds (population std; a fold without a value is left out), in percent by
    default as in Table 11.

    Learning rates missing some of the ``n_folds`` folds are not eligible (default: the most folds any
    learning rate of that initialisation has).
    """
    scale = 100.0 if percent else 1.0
    rows = []
    for init, by_lr in results.items():
        most = n_folds or max(len(folds) for folds in by_lr.values())
        complete = {lr: folds for lr, folds in by_lr.items() if len(folds) >= most}
        if not complete:
            logger.warning("%s: no learning rate has all %d folds", init, most)
            continue
        lr = max(complete, key=lambda rate: _mean_validation_auc(complete[rate]))
        folds = [complete[lr][k] for k in sorted(complete[lr])]
        row: dict[str, Any] = {"method": init, "lr": format(lr, "g"), "folds": len(folds)}
        for split, label in (("val", "validation"), ("test", "test")):
            for index, name in enumerate(class_names):
                row[f"{label} {name}"] = _mean_std([f[split]["per_class"][index] for f in folds], scale)
            row[f"{label} mean"] = _mean_std([f[split]["metrics"]["mean_auc"] for f in folds], scale)
        rows.append(row)
    return rows


def summarize_crossval(
    finetune_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    class_names: Sequence[str] = ("CN", "MCI", "AD"),
    n_folds: int | None = None,
) -> list[dict[str, Any]]:
    """Write ``crossval_table.md`` and ``crossval_summary.json`` (rows plus every fold's numbers) to ``output_dir``."""
    results = collect_crossval_results(finetune_root)
    if not results:
        raise FileNotFoundError(f"no finished cross-validation runs (*/lr*/fold*/test_metrics.json) under {finetune_root}")
    rows = crossval_table(results, class_names, n_folds)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "crossval_table.md").write_text(
        "AUC-ROC (%), mean ± std over folds; validation = each fold's best model on its validation fold, "
        "test = the same model on the holdout set.\n\n" + markdown_table(rows, float_format="{:.2f}")
    )
    write_json({"rows": rows, "runs": results}, out / "crossval_summary.json")
    logger.info("cross-validation summary written to %s", out)
    return rows
