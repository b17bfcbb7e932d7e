"""The comparison's report: ``README.md`` with its tables, sections and figures."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camcontrast_monai.apps.compare.plan import POWER_FRACTION, POWER_MARGIN, Grid, MethodSpec
from camcontrast_monai.apps.compare.settings import CompareSetting
from camcontrast_monai.apps.compare.summary import paired_differences
from camcontrast_monai.report.figures import save_bar_chart, save_curves
from camcontrast_monai.report.tables import markdown_table, write_json


def _probe_lines(probes: Mapping[str, Any] | None, report: Path, methods: Sequence[MethodSpec]) -> list[str]:
    from camcontrast_monai.apps.probe import write_probe_section

    if probes is None:
        return []
    names = [m.spec for m in methods if m.spec in probes["encoders"]]
    method = "camcontrast" if "camcontrast" in names else next((n for n in names if n != "random"), names[0])
    others = [name for name in names if name != method]
    return write_probe_section(probes, report, method, others)


def write_report(
    out_dir: Path, setting: CompareSetting, rows: Sequence[Mapping[str, Any]], plan: Any, grid: Grid, command: str,
    commands: list[dict[str, str]], seconds: float, embedding_map: Path | None, shared_pretraining: bool,
    probes: Mapping[str, Any] | None = None, power: Sequence[Mapping[str, Any]] = (),
    checks: Sequence[Mapping[str, Any]] = (), crop_rows: Sequence[Mapping[str, Any]] = (),
) -> Path:  # fmt: skip
    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    figures = _save_figures(report, setting, rows, grid)
    paired = paired_differences(rows, grid)
    write_json({
        "plan": dataclasses.asdict(plan), "seeds": list(grid.seeds), "rows": list(rows), "power": list(power),
        "paired": paired, "probe_check": list(checks), "crop_probes": list(crop_rows), "probes": probes,
        "seconds": seconds, "command": command,
    }, report / "results.json")  # fmt: skip
    (report / "commands.md").write_text(
        "# Commands behind every number\n\nEach line runs one step exactly as `camcontrast bench compare` ran it "
        "(configs from the snapshot in `bundle/`).\n\n" + "\n".join(f"- {c['run']}:\n  `{c['command']}`" for c in commands) + "\n"
    )
    expected = len(grid.methods) * len(grid.tasks) * len(grid.fractions)
    detail = _selection_detail(rows)
    lines = [
        f"# Pretraining comparison ({setting.name} bundle)",
        "",
        f"Command: `{command}`",
        "",
        f"{len(rows)} of {expected} method/task/fraction cells finished; {len(grid.seeds)} {setting.seed_name}s "
        f"({', '.join(map(str, grid.seeds))}); "
        f"{seconds / 60:.1f} minutes in the last invocation.",
        "",
        _setup_paragraph(setting, plan, grid, shared_pretraining),
        "",
        *_power_section(power),
        *_probe_lines(probes, report, grid.methods),
        *_stage2_loss_lines(out_dir, setting, grid, plan),
        "## Fine-tuned test scores",
        "",
        markdown_table(_score_table(setting, rows, grid)),
        *[f"![{name}]({name})\n" for name in figures],
        *_per_class_section(setting, rows),
        *_paired_section(paired),
        *_probe_check_section(checks),
        "## Learning-rate selection and per-seed scores",
        "",
        markdown_table(detail) if detail else "(no finished cell yet)\n",
        *_embedding_section(embedding_map),
        *_crop_probe_section(crop_rows, getattr(plan, "map_images", 0)),
        "Every step's command line: [commands.md](commands.md).",
        "",
    ]
    (report / "README.md").write_text("\n".join(lines))
    return report


def _score_table(setting: CompareSetting, rows: Sequence[Mapping[str, Any]], grid: Grid) -> list[dict[str, Any]]:
    """One line per method: the test score (mean, std) of every task and fraction, NaN where unfinished."""
    lookup = {(r["method"], r["task"], r["fraction"]): r for r in rows}
    table = []
    for method in grid.methods:
        line: dict[str, Any] = {"Method": method.spec}
        for task in grid.tasks:
            for fraction in grid.fractions:
                row = lookup.get((method.spec, task, fraction))
                line[f"{task} ({setting.tasks[task].metric}), {fraction:.0%} of labels"] = (row["mean"], row["std"]) if row else math.nan
        table.append(line)
    return table


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if not len(finite):
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else math.nan


def _per_class_section(setting: CompareSetting, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per task scored per class, in the layout of Tables 11 and B.2: each method's best validation score and its
    test score per class and overall, mean ± std over seeds (folds) at the selected learning rate; classes no
    test split of any seed could score (no positive image) are left out. Tasks of one class have no such table."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows if len(r.get("classes", ())) > 1):
        cells = [r for r in rows if r["task"] == task and "classes" in r]
        scored = [k for k, _ in enumerate(cells[0]["classes"]) if any(not math.isnan(s[k]) for r in cells for s in r["per_class"])]
        table = [
            {
                "method": r["method"], "labels": f"{r['fraction']:.0%}", "validation (mean)": _mean_std(r["val_scores"]),
                **{f"test {r['classes'][k]}": _mean_std([s[k] for s in r["per_class"]]) for k in scored},
                "test (mean)": (r["mean"], r["std"]),
            }
            for r in cells
        ]  # fmt: skip
        lines += [
            f"### {task}: {setting.tasks[task].metric} per class",
            "",
            f"Mean ± std over {setting.seed_name}s; validation is the best epoch's, whose model is scored on the test split.",
            "",
            markdown_table(table),
        ]
    return lines


def _selection_detail(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Per finished cell: the selected learning rate, the mean validation score of each, the test score of each seed."""
    return [
        {"method": r["method"], "task": r["task"], "fraction": r["fraction"], "selected lr": f"{r['lr']:g}",
         "mean val by lr": ", ".join(f"{lr}: {v:.3f}" for lr, v in r["val_by_lr"].items()),
         "test per seed": ", ".join(f"{s:.3f}" for s in r["test_scores"])}
        for r in rows
    ]  # fmt: skip


def _save_figures(report: Path, setting: CompareSetting, rows: Sequence[Mapping[str, Any]], grid: Grid) -> list[str]:
    """Bar charts of each task's test scores (and curves over label fractions, if several); their file names."""
    lookup = {(r["method"], r["task"], r["fraction"]): r for r in rows}
    fractions, seeds = grid.fractions, grid.seeds
    figures = []
    for task in grid.tasks:
        metric = setting.tasks[task].metric
        results = {f"{f:.0%} of labels": {r["method"]: r["mean"] for r in rows if r["task"] == task and r["fraction"] == f} for f in fractions}
        errors = {f"{f:.0%} of labels": {r["method"]: r["std"] for r in rows if r["task"] == task and r["fraction"] == f} for f in fractions}
        if any(results.values()):
            name = f"{task}.png"
            save_bar_chart(results, report / name, f"{task}: test {metric}, mean ± std over {len(seeds)} {setting.seed_name}s", errors=errors, ylabel=metric)
            figures.append(name)
        if len(fractions) > 1 and any(results.values()):
            curves = {m.spec: [(f, lookup[(m.spec, task, f)]["mean"]) for f in fractions if (m.spec, task, f) in lookup] for m in grid.methods}
            save_curves({k: v for k, v in curves.items() if v}, report / f"{task}_fractions.png", task, xlabel="label fraction", ylabel=metric)
            figures.append(f"{task}_fractions.png")
    return figures


def _setup_paragraph(setting: CompareSetting, plan: Any, grid: Grid, shared_pretraining: bool) -> str:
    """The sizes, schedules and learning-rate selection behind the numbers, as one paragraph."""
    seeds = grid.seeds
    return (
        f"Sizes: {setting.describe(plan)}. Encoder width {plan.width}; CAMContrast stage 1: {plan.stage1_epochs} "
        f"epochs; stage 2 and every baseline: {plan.pretrain_epochs} epochs over the fixed crops (non-crop baselines: "
        f"the same number of steps), batch {plan.pretrain_batch_size}, lr {plan.pretrain_lr}. Learning rates tried "
        "for every method: " + "; ".join(f"{task} {', '.join(f'{lr:g}' for lr in plan.lr_grid[task])}" for task in grid.tasks)
        + f". The learning rate with the best mean validation score over {setting.seed_name}s is selected per method, "
        f"task and fraction; the table gives its test score, mean ± sample std over {setting.seed_name}s. "
        + (
            f"Pretraining was shared: each method was pretrained once (seed {seeds[0]}) and every {setting.seed_name} "
            f"fine-tunes that encoder on its own split, so the spread covers splits and fine-tuning, not pretraining."
            if shared_pretraining
            else f"Each {setting.seed_name} pretrains every method anew (seeded by it) and fine-tunes on its own split."
        )
    )


def _stage2_loss_lines(out_dir: Path, setting: CompareSetting, grid: Grid, plan: Any) -> list[str]:
    """For each CAMContrast method's first pretraining, where its stage-2 loss ended between collapse and the
    floor that identical all-zero normal heatmaps impose (the demo report's section, per method)."""
    from camcontrast_monai.apps.demo.common import stage2_loss_section
    from camcontrast_monai.transforms import fixed_crop_names

    lines = []
    for method in grid.methods:
        runs = out_dir / "runs" / "pretrain" / method.slug / f"seed{grid.seeds[0]}"
        if method.kind != "camcontrast" or not (runs / "pretrain" / "loss_history.json").is_file():
            continue
        # without fixed crops stage 2 runs one epoch per crop position, the same number of steps (pretrain.json)
        fixed = method.overrides.get("crop_strategy", "five") in ("four", "five")
        epochs = plan.pretrain_epochs * (1 if fixed else len(fixed_crop_names(setting.spatial_dims)))
        _, section = stage2_loss_section(runs, out_dir / "bundle", epochs, plan.pretrain_batch_size)
        lines += [section[0] + f" ({method.spec}, seed {grid.seeds[0]})", *section[1:]]
    return lines


def _power_section(power: Sequence[Mapping[str, Any]]) -> list[str]:
    if not power:
        return []
    failing = [row["task"] for row in power if row["learnable"] != "yes"]
    return [
        "## Power check: is each task learnable in this budget?",
        "",
        f"Random initialisation fine-tuned with {POWER_FRACTION:.0%} of the training labels against the predictor that "
        "sees no image (the constant prediction that scores best on the training split: a label combination for "
        "classification by accuracy or F1, any constant under an AUC, which scores 0.5, all background or all "
        "foreground for segmentation), on the same test splits. A task counts "
        f"as learnable when random init beats it by {POWER_MARGIN} or more on "
        "average over seeds and the paired 95 % bootstrap interval of the difference excludes zero.",
        "",
        markdown_table(list(power)),
        f"**Not learnable in this budget: {', '.join(failing)}.** The method comparison below cannot separate methods "
        "on " + ("this task" if len(failing) == 1 else "these tasks") + " and is no evidence either way."
        if failing else "Every task passes.",
        "",
    ]


def _probe_check_section(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    if not checks:
        return []
    failing = [f"{c['method']} on {c['task']}" for c in checks if c["check"] != "holds"]
    return [
        "## Does fine-tuning use what the encoder knows?",
        "",
        "A fine-tuned classifier should score no lower than a linear probe (L2 logistic regression, its strength "
        "chosen by inner cross-validation) of the same frozen encoder, fitted on the same training split and scored "
        "on the same test split by the same metric. The check fails where the paired 95 % interval of the "
        "difference lies below zero.",
        "",
        markdown_table(list(checks)),
        f"**The check fails for {', '.join(failing)}:** fine-tuning loses what the frozen encoder already has."
        if failing else "The check holds for every pretrained encoder.",
        "",
    ]


def _paired_section(paired: Sequence[Mapping[str, Any]]) -> list[str]:
    if not paired:
        return []
    return [
        "## Paired differences of the fine-tuned test scores",
        "",
        "Each method sees the same split and label subset for a given seed, so the differences pair up by seed; "
        "the interval is a percentile bootstrap of the mean difference over seeds (95 %).",
        "",
        markdown_table(list(paired)),
    ]


def _crop_probe_section(crop_rows: Sequence[Mapping[str, Any]], n_images: int) -> list[str]:
    if not crop_rows:
        return []
    return [
        "## Crop-level probes",
        "",
        f"The five fixed crops of {n_images} pretraining images, each a pooled feature of the frozen encoder: can a "
        "linear probe or a kNN tell which position a crop comes from, and whether it holds a lesion (from the "
        "ground-truth masks)? An image's crops stay on one side of each of the 20 resampled splits. "
        "`trivial` is the training part's majority. Table: mean ± std over splits.",
        "",
        markdown_table(list(crop_rows)),
    ]


def _embedding_section(embedding_map: Path | None) -> list[str]:
    if embedding_map is None:
        return []
    return [
        "## Crop representations (paper Fig. 8)",
        "",
        "UMAP of the pooled encoder features of the five fixed crops of pretraining images; left column coloured "
        "by crop position, right column by the image's coarse label.",
        "",
        f"![embeddings]({embedding_map.name})",
        "",
    ]
