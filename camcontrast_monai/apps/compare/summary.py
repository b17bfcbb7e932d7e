"""From fine-tuning runs to results: selection of the learning rate on validation, the power check and paired differences between methods."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camcontrast_monai.apps.compare.plan import POWER_FRACTION, POWER_MARGIN, Grid, MethodSpec
from camcontrast_monai.apps.compare.runs import finetune_dir
from camcontrast_monai.apps.compare.settings import SETTINGS, CompareSetting

FUNDUS = SETTINGS["fundus"]


def _best_validation(run_dir: Path, val_key: str) -> float:
    history = json.loads((run_dir / "val_history.json").read_text())
    values = [value for _, value in history[val_key] if value is not None]
    return max(values) if values else math.nan


def _test_score(run_dir: Path) -> float:
    return float(next(iter(json.loads((run_dir / "test_metrics.json").read_text())["metrics"].values())))


def _per_class(run_dirs: Sequence[Path]) -> dict[str, Any]:
    """The test score of each class (seed x class; NaN where a class had no positive test image) of runs that
    report one per class (an AUC per label or per diagnosis), with the class names; empty for the others."""
    results = [json.loads((run / "test_metrics.json").read_text()) for run in run_dirs]
    if not all("classes" in result and "per_class" in result for result in results):
        return {}
    scores = [[math.nan if value is None else float(value) for value in result["per_class"]] for result in results]
    return {"classes": results[0]["classes"], "per_class": scores}


def select_and_summarise(
    out_dir: Path, methods: Sequence[MethodSpec], tasks: Sequence[str], fractions: Sequence[float],
    seeds: Sequence[int], lr_grid: Mapping[str, Sequence[float]], setting: CompareSetting = FUNDUS,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per method, task and fraction: the learning rate with the best mean validation score over
    seeds, and the test scores of that learning rate (per seed, mean and sample std). Missing runs are skipped."""
    rows = []
    for task in tasks:
        for fraction in fractions:
            for method in methods:
                by_lr = {}
                for lr in lr_grid[task]:
                    runs = [finetune_dir(out_dir, task, method, fraction, lr, seed) for seed in seeds]
                    finished = [run for run in runs if (run / "test_metrics.json").is_file()]
                    if len(finished) == len(seeds):
                        val = [_best_validation(run, setting.tasks[task].val_key) for run in finished]
                        by_lr[lr] = (float(np.nanmean(val)), [_test_score(run) for run in finished], val, finished)
                if not by_lr:
                    continue
                best_lr = max(by_lr, key=lambda lr: by_lr[lr][0])
                _, scores, val, finished = by_lr[best_lr]
                scores = np.asarray(scores, dtype=float)
                rows.append({
                    "method": method.spec, "task": task, "fraction": fraction, "lr": best_lr,
                    "val_by_lr": {f"{lr:g}": by_lr[lr][0] for lr in by_lr}, "val_scores": val,
                    "test_scores": scores.tolist(), "mean": float(scores.mean()),
                    "std": float(scores.std(ddof=1)) if len(scores) > 1 else math.nan, **_per_class(finished),
                })  # fmt: skip
    return rows


def power_check(
    power_rows: Sequence[Mapping[str, Any]], trivial: Mapping[str, Sequence[float]], setting: CompareSetting = FUNDUS
) -> list[dict[str, Any]]:  # fmt: skip
    """Per task: the trivial predictor's test score, random init's with every label, and their paired
    difference over seeds; ``learnable`` where the mean difference reaches ``POWER_MARGIN`` and its
    interval excludes zero."""
    from camcontrast_monai.metrics import paired_difference

    table = []
    for row in power_rows:
        baseline = np.asarray(trivial[row["task"]], dtype=float)
        difference = paired_difference(np.asarray(row["test_scores"], dtype=float), baseline)
        table.append({
            "task": row["task"], "metric": setting.tasks[row["task"]].metric, "trivial predictor": float(np.nanmean(baseline)),
            f"random init, {POWER_FRACTION:.0%} labels": (row["mean"], row["std"]),
            "random - trivial [95% interval]": str(difference),
            "learnable": "yes" if difference.mean >= POWER_MARGIN and difference.low > 0 else "NO",
        })  # fmt: skip
    return table


def paired_differences(rows: Sequence[Mapping[str, Any]], grid: Grid) -> list[dict[str, Any]]:
    """CAMContrast (the first CAMContrast spec of the grid) minus every other method, per task and fraction:
    the mean difference of the test scores over the shared seeds with its paired 95 % bootstrap interval."""
    from camcontrast_monai.metrics import paired_difference

    reference = next((m.spec for m in grid.methods if m.kind == "camcontrast"), None)
    lookup = {(r["method"], r["task"], r["fraction"]): r for r in rows}
    table = []
    for task in grid.tasks:
        for fraction in grid.fractions:
            ours = lookup.get((reference, task, fraction))
            for method in grid.methods:
                theirs = lookup.get((method.spec, task, fraction))
                if ours is None or theirs is None or method.spec == reference:
                    continue
                difference = paired_difference(np.asarray(ours["test_scores"]), np.asarray(theirs["test_scores"]))
                table.append({
                    "task": task, "fraction": fraction, f"{reference} minus": method.spec,
                    "difference [95% interval]": str(difference), "seeds": difference.n,
                    "verdict": _verdict(difference),
                })  # fmt: skip
    return table


def _verdict(difference: Any) -> str:
    if math.isnan(difference.low):
        return "too few seeds"
    if not difference.excludes_zero:
        return "no difference shown"
    return "better" if difference.mean > 0 else "worse"
