"""``camcontrast bench compare``: pretraining methods x downstream tasks x label fractions x seeds, and a report.

Every run goes through one bundle's configs (fundus, cxr or mri3d; a snapshot of them taken at the first start,
so a comparison that is resumed later keeps running the configs it started with); what differs between the
bundles (tasks, presets, data, run sizes) is their :mod:`~camcontrast_monai.apps.compare.settings`. Each method is pretrained
once per seed with the same data, the same stage-2 schedule (epochs, batch size, optimiser, learning
rate) and the same encoder; each downstream run is fine-tuned with every learning rate of the same grid
for every method. For each method, task and label fraction, the learning rate with the best mean
validation score over seeds is selected, and the test scores of that learning rate are reported as
mean +- std over seeds.

The runner resumes where it stopped: a finished pretraining is recognised by its encoder file (and
CAMContrast's stages by the classifier and heatmap datalist), a finished fine-tuning run by its
``test_metrics.json``; an interrupted run restarts from its last checkpoint.

Method specs: ``random``, ``camcontrast``, ``simclr``, ``simclr-crop``, ``supce``, ``supce-crop``,
``supcon``, ``supcon-crop``, each optionally followed by ``:`` separated ablation names (see
:data:`ABLATIONS`) or ``key=value`` config overrides for pretraining, e.g.
``camcontrast:no_attention`` or ``camcontrast:temperature=0.1`` or ``supce-crop:encoder_name=resnet34``.
``encoder_name`` also applies to fine-tuning; every other override applies to pretraining only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from camcontrast_monai.apps.compare.checks import (
    crop_features,
    crop_probes,
    embedding_maps,
    probe_check,
    probe_methods,
    trivial_scores,
)
from camcontrast_monai.apps.compare.plan import (
    ABLATIONS,
    BASELINES,
    PLANS,
    POWER_FRACTION,
    POWER_METHOD,
    ComparePlan,
    MethodSpec,
    parse_grid,
    parse_method,
)
from camcontrast_monai.apps.compare.report import write_report
from camcontrast_monai.apps.compare.runs import (
    Runner,
    check_plan,
    command_line,
    pretrain_and_finetune,
    step_count,
    write_data,
)
from camcontrast_monai.apps.compare.settings import SETTINGS, compare_setting
from camcontrast_monai.apps.compare.summary import paired_differences, power_check, select_and_summarise

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "PLANS",
    "SETTINGS",
    "ComparePlan",
    "MethodSpec",
    "paired_differences",
    "parse_method",
    "power_check",
    "run_compare",
    "select_and_summarise",
]


def run_compare(
    out: str = "compare_output",
    bundle: str = "fundus",
    methods: str | Sequence[str] = "camcontrast,supce-crop,simclr-crop,random",
    tasks: str | Sequence[str] = "grading,lesions",
    fractions: float | str | Sequence[float] = 0.25,
    seeds: int | str | Sequence[int] = "0,1,2",
    preset: str = "default",
    dataset_dir: str | None = None,
    num_workers: int = 2,
    embedding_map: bool = True,
    shared_pretraining: bool = False,
    report_only: bool = False,
) -> Path:
    """Pretraining methods x downstream tasks x label fractions x seeds -> report (resumes where it stopped).

    Writes ``<out>/report`` and returns the report folder.

    Args:
        out: folder for data, runs and the report (report/README.md); rerun the same command to resume.
        bundle: fundus (paper Table 7), cxr (Table 12: 14-label linear evaluation, pneumothorax) or mri3d
            (Table 11: CN/MCI/AD in folds; seeds are folds, and only random and camcontrast pretrain).
        methods: comma-separated specs: random, camcontrast, simclr[-crop], supce[-crop], supcon[-crop],
            each optionally with ":ablation" or ":key=value" overrides, e.g. "camcontrast:no_attention".
        tasks: comma-separated downstream tasks: fundus grading, glaucoma, lesions, disc_cup, vessels;
            cxr chestxray14, pneumothorax; mri3d adni_3way.
        fractions: comma-separated label fractions of the training split.
        seeds: comma-separated seeds (each seed pretrains, splits and fine-tunes anew).
        preset: sizes and learning-rate grid: fundus "default" (about an hour on 2 CPU cores), "benchmark"
            (the evaluation's scale, about 80 minutes for all five tasks) or "tiny" (a smoke run); cxr and
            mri3d "default" (their demos' sizes) or "tiny".
        dataset_dir: a folder with the bundle's data in its layout (fundus: pretrain/ and downstream/);
            default: synthetic data written under out/data.
        num_workers: data-loading worker processes.
        embedding_map: also draw UMAP maps of the first seed's encoders' crop representations (Fig. 8).
        shared_pretraining: pretrain each method once (first seed) and fine-tune every seed from it.
        report_only: run nothing; write the report from the runs finished so far (for the given seeds).

    ``report_only`` runs nothing: it lists what is done and writes the report from the finished runs
    (a cell needs every given seed at a learning rate; pass the finished seeds to see a partial table).

    With ``shared_pretraining`` every method is pretrained once, with the first seed, and every seed's
    fine-tuning starts from that encoder: the spread over seeds then covers splits and fine-tuning but
    not pretraining (cheaper by the number of seeds in pretraining time).
    """
    setting = compare_setting(bundle)
    plan, grid = parse_grid(setting, preset, methods, tasks, fractions, seeds)
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    command = command_line(out_dir, setting, grid, preset, dataset_dir, shared_pretraining)
    runner = Runner(out_dir, setting, step_count(grid, plan, shared_pretraining), report_only)
    check_plan(out_dir, setting, preset, plan, dataset_dir, shared_pretraining)
    runner.snapshot()
    data_dir = Path(dataset_dir).resolve() if dataset_dir else out_dir / "data"
    if not dataset_dir:
        write_data(data_dir, setting, plan)
    common = {"dataset_dir": str(data_dir), "width": plan.width, "num_workers": num_workers, **setting.common_overrides(plan)}
    encoders = pretrain_and_finetune(runner, grid, plan, common, shared_pretraining)
    probes = probe_methods(runner, grid.methods, encoders, plan, common)
    rows = select_and_summarise(out_dir, grid.methods, grid.tasks, grid.fractions, grid.seeds, plan.lr_grid, setting)
    power_rows = select_and_summarise(out_dir, [POWER_METHOD], grid.tasks, [POWER_FRACTION], grid.seeds, plan.lr_grid, setting)
    power = power_check(power_rows, trivial_scores(runner, grid, plan, common), setting)
    checks = probe_check(runner, rows, grid, plan, common, encoders)
    crops = crop_features(out_dir, grid.methods, plan, grid.seeds[0], common) if embedding_map and setting.crop_maps else {}
    picture = embedding_maps(out_dir, crops, grid.seeds[0])
    crop_rows = crop_probes(crops, seed=grid.seeds[0])
    report = write_report(
        out_dir, setting, rows, plan, grid, command, runner.commands, time.perf_counter() - runner.started, picture,
        shared_pretraining, probes, power, checks, crop_rows,
    )  # fmt: skip
    print(f"report written to {report / 'README.md'}", flush=True)
    return report
