"""Frozen-probe results as tables and a picture: per-split scores of each encoder, the trivial level, paired differences.

``results`` everywhere here is ``{task name: {probe: {encoder: (n_splits,) scores}}}``, each inner dict as
:func:`camcontrast_monai.metrics.probes.probe_encoders` returns it (``"trivial"`` included). A score may be
NaN (``None`` once read back from JSON): a multilabel split where no label had both classes; it is left out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from camcontrast_monai.metrics.paired import paired_difference
from camcontrast_monai.report.figures import save_figure

__all__ = ["paired_rows", "probe_summary_rows", "results_as_lists", "save_probe_curves", "save_probe_figure"]

Results = Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]


def _scores(values) -> np.ndarray:
    """Per-split scores as floats without the NaN (or JSON ``None``) splits."""
    array = np.asarray(values, dtype=float)
    return array[~np.isnan(array)]


def probe_summary_rows(results: Results, metrics: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per task and encoder: the trivial score and each probe's mean ± std over the splits."""
    rows = []
    for task, by_probe in results.items():
        trivial = _scores(by_probe["trivial"]["trivial"])
        probes = [probe for probe in by_probe if probe != "trivial"]
        for encoder in next(iter(by_probe[p] for p in probes)):
            row: dict[str, Any] = {
                "task": task,
                "metric": metrics[task],
                "trivial": float(trivial.mean()),
                "encoder": encoder,
            }
            for probe in probes:
                scores = _scores(by_probe[probe][encoder])
                row[probe] = (
                    float(scores.mean()),
                    float(scores.std(ddof=1)) if len(scores) > 1 else float("nan"),
                )
            rows.append(row)
    return rows


def paired_rows(
    results: Results, method: str, baselines: Sequence[str], seed: int = 0
) -> list[dict[str, Any]]:
    """``method`` minus each baseline, per task and probe: mean difference, paired 95 % bootstrap interval, wins."""
    rows = []
    for task, by_probe in results.items():
        for probe, by_encoder in by_probe.items():
            if probe == "trivial" or method not in by_encoder:
                continue
            for baseline in baselines:
                if baseline not in by_encoder:
                    continue
                a, b = np.asarray(by_encoder[method], dtype=float), np.asarray(by_encoder[baseline], dtype=float)
                difference = paired_difference(a, b, seed=seed)
                rows.append({
                    "task": task, "probe": probe, "comparison": f"{method} - {baseline}", "mean difference": f"{difference.mean:+.3f}",
                    "95% interval": f"[{difference.low:+.3f}, {difference.high:+.3f}]",
                    "splits won": f"{int((a > b).sum())}/{difference.n}",
                })  # fmt: skip
    return rows


def results_as_lists(results: Results) -> dict[str, dict[str, dict[str, list[float]]]]:
    """The same nesting with plain lists, for JSON."""
    return {
        task: {
            probe: {name: [float(v) for v in scores] for name, scores in by_name.items()}
            for probe, by_name in by_probe.items()
        }
        for task, by_probe in results.items()
    }


def save_probe_figure(
    results: Results, path: str | os.PathLike, title: str, metrics: Mapping[str, str]
) -> Path:
    """One panel per task: a box of per-split scores for each encoder and probe, the trivial score as a dashed line."""
    tasks = list(results)
    figure = Figure(figsize=(3.6 * len(tasks) + 0.6, 3.8), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(tasks), squeeze=False)[0])
    for ax, task in zip(axes, tasks, strict=True):
        by_probe = results[task]
        probes = [probe for probe in by_probe if probe != "trivial"]
        encoders = list(by_probe[probes[0]])
        width = 0.8 / len(probes)
        for index, probe in enumerate(probes):
            positions = np.arange(len(encoders)) + (index - (len(probes) - 1) / 2) * width
            boxes = ax.boxplot(
                [_scores(by_probe[probe][e]) for e in encoders], positions=positions, widths=width * 0.85,
                patch_artist=True, showfliers=True, flierprops={"markersize": 3},
            )  # fmt: skip
            for box in boxes["boxes"]:
                box.set(facecolor=f"C{index}", alpha=0.55)
            ax.plot([], [], color=f"C{index}", linewidth=6, alpha=0.55, label=probe)
        trivial = float(np.mean(_scores(by_probe["trivial"]["trivial"])))
        ax.axhline(trivial, color="black", linestyle="--", linewidth=1, label=f"trivial {trivial:.2f}")
        ax.set_xticks(np.arange(len(encoders)), encoders, rotation=20)
        ax.set_title(task)
        ax.set_ylabel(metrics[task])
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    figure.suptitle(title)
    return save_figure(figure, path)


def save_probe_curves(
    results: Results, steps: Mapping[str, int], path: str | os.PathLike, title: str, metrics: Mapping[str, str],
    probe: str = "linear", references: Sequence[str] = (),
) -> Path:  # fmt: skip
    """One panel per task: ``probe``'s mean ± std over splits of each encoder in ``steps`` against its training
    steps, with each encoder in ``references`` (e.g. random, stage 1) and the trivial score as horizontal lines."""
    tasks = list(results)
    figure = Figure(figsize=(3.8 * len(tasks) + 0.6, 3.6), layout="constrained")
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        by_encoder = results[task][probe]
        names = sorted((name for name in steps if name in by_encoder), key=lambda name: steps[name])
        x = np.array([steps[name] for name in names])
        mean = np.array([np.mean(_scores(by_encoder[name])) for name in names])
        spread = np.array([np.std(_scores(by_encoder[name]), ddof=1) for name in names])
        ax.plot(x, mean, marker="o", color="C0", label=f"{probe} probe")
        ax.fill_between(x, mean - spread, mean + spread, color="C0", alpha=0.2)
        for index, reference in enumerate(references):
            if reference in by_encoder:
                ax.axhline(np.mean(_scores(by_encoder[reference])), color=f"C{index + 1}", linewidth=1.2, label=reference)
        trivial = float(np.mean(_scores(results[task]["trivial"]["trivial"])))
        ax.axhline(trivial, color="black", linestyle="--", linewidth=1, label="trivial")
        ax.set_xlabel("stage-2 steps")
        ax.set_ylabel(metrics[task])
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.suptitle(title)
    return save_figure(figure, path)
