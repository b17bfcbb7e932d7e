"""The one demo driver: synthetic data -> stage 1 -> heatmaps -> stage 2 -> frozen probes -> downstream runs
-> report, for whichever setting (fundus, cxr, mri3d) a :class:`DemoSetting` describes.

The driver owns the order of the chain, the progress lines, the probes, the stage-2 loss section, the
training curves and the report's frame (title, probe comparison, stage-2 loss, ``metrics.json``); a
setting says only what is its own: how to write its data, which bundle runs it needs at which sizes, and
the report sections that follow the probes.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# the rest of the package (torch, MONAI) is imported where a demo runs, so ``camcontrast --help``, which reads
# this module's docstrings, stays fast
from camcontrast_monai.apps.bundle import bundle_path, run_bundle

__all__ = [
    "SETTINGS",
    "BundleRun",
    "DemoPlan",
    "DemoRun",
    "DemoSetting",
    "ReportParts",
    "demo_plan",
    "demo_setting",
    "run_demo",
    "run_setting",
    "run_step",
]

# each setting is the module-level ``SETTING`` of ``camcontrast_monai.apps.demo.<name>``, imported on demand,
# so a demo loads only its own modules
SETTINGS = ("fundus", "cxr", "mri3d")


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """The sizes every demo sets, whatever its setting; each setting's plan adds its own (data set sizes,
    downstream schedules) as a subclass. The paper's sizes are the bundle configs' defaults."""

    width: int
    stage1_epochs: int
    stage1_batch_size: int
    pretrain_epochs: int
    pretrain_batch_size: int
    pretrain_lr: float
    # the bundles' precision switches for every run of the plan; None keeps the bundle's own
    autocast_dtype: str | None = dataclasses.field(default=None, kw_only=True)
    channels_last: bool | None = dataclasses.field(default=None, kw_only=True)

    @property
    def precision_overrides(self) -> dict[str, Any]:
        """The bundle overrides of the switches the plan sets."""
        switches = {"autocast_dtype": self.autocast_dtype, "channels_last": self.channels_last}
        return {key: value for key, value in switches.items() if value is not None}


@dataclasses.dataclass(frozen=True)
class BundleRun:
    """One run of bundle configs (after ``common.json``) with the overrides it gets on top of the demo's
    common ones. ``name`` keeps the finished workflow for the report; ``workflow`` is the bundle's
    workflow type (``None`` for the heatmap config, which has no train/infer split); ``output_subdir`` puts
    the run's outputs in that folder of the demo's runs (a second stage 1 that must not replace the first)."""

    what: str
    configs: tuple[str, ...]
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    workflow: str | None = "train"
    name: str = ""
    output_subdir: str = ""


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """A finished demo chain, as the report writer reads it."""

    out_dir: Path
    bundle: Path
    plan: DemoPlan
    seed: int
    seconds: float
    workflows: Mapping[str, Any]
    manifest: Mapping[str, Any]

    @property
    def runs(self) -> Path:
        return self.out_dir / "runs"


@dataclasses.dataclass
class ReportParts:
    """What a setting adds to the report frame: the paragraph under the title, notes under the probe
    section, the sections after the stage-2 loss, entries of ``metrics.json``, and training curves
    (name -> series, or name -> {init: series}) drawn after the stage-1 and stage-2 ones."""

    intro: list[str]
    sections: list[str]
    metrics: dict[str, Any]
    curves: dict[str, Any] = dataclasses.field(default_factory=dict)
    probe_notes: list[str] = dataclasses.field(default_factory=list)


class DemoSetting(abc.ABC):
    """One setting's demo: its bundle, its two plans and what only it knows."""

    bundle_name: str
    title: str
    full: DemoPlan
    quick: DemoPlan
    # a larger plan for a GPU machine (``--preset gpu``), where the setting has one
    gpu: DemoPlan | None = None
    # y-axis label of the stage-1 validation curve
    stage1_validation_label: str = "AUC / accuracy"
    # progress lines of the pretraining runs
    stage1_what: str = "stage 1: CAM classifier on coarse normal/abnormal labels"
    heatmaps_what: str = "heatmaps: abnormal-class CAMs with background and negative suppression"
    pretrain_what: str = "stage 2: image/heatmap contrastive pretraining on fixed crops"

    # overrides of every run after stage 1 (which has read and checked every image once)
    after_stage1: Mapping[str, Any] = {}

    @abc.abstractmethod
    def describe_data(self, plan: DemoPlan) -> str:
        """The progress line of the data step."""

    @abc.abstractmethod
    def write_data(self, data_dir: Path, plan: DemoPlan, seed: int) -> dict[str, Any]:
        """Write the synthetic data sets the bundle reads; returns their manifest (may be empty)."""

    def common_overrides(self, plan: DemoPlan, seed: int) -> dict[str, Any]:
        """Overrides every run of this setting gets besides :func:`demo_overrides`."""
        return {}

    def pretraining_sizes(self, plan: DemoPlan) -> dict[str, Any]:
        """Overrides of all three pretraining runs: a 2D setting's image size."""
        return {"image_size": plan.image_size}  # type: ignore[attr-defined]

    def pretraining_runs(self, plan: DemoPlan) -> list[BundleRun]:
        """Stage 1 (``name="stage1"``), heatmaps and stage 2, in order, at the plan's sizes."""
        sizes = self.pretraining_sizes(plan)
        stage1 = {"stage1_epochs": plan.stage1_epochs, "stage1_batch_size": plan.stage1_batch_size}
        stage2 = {"pretrain_epochs": plan.pretrain_epochs, "pretrain_batch_size": plan.pretrain_batch_size, "pretrain_lr": plan.pretrain_lr}
        return [
            BundleRun(self.stage1_what, ("stage1.json",), {**sizes, **stage1}, name="stage1"),
            BundleRun(self.heatmaps_what, ("heatmaps.json",), sizes, None),
            BundleRun(self.pretrain_what, ("pretrain.json",), {**sizes, **stage2}),
        ]

    def probe_overrides(self, plan: DemoPlan) -> dict[str, Any]:
        """Overrides of the frozen probes (the downstream images' size)."""
        return {}

    @abc.abstractmethod
    def downstream_runs(self, plan: DemoPlan) -> list[BundleRun]:
        """The runs after the probes: fine-tuning from random and from CAMContrast initialisation, and extras."""

    @abc.abstractmethod
    def report_parts(self, run: DemoRun, report: Path) -> ReportParts:
        """The setting's report sections; figures it names go to ``report``."""


def run_demo(
    out: str = "demo_output", quick: bool = False, seed: int = 0, num_workers: int = 2, bundle: str = "fundus",
    preset: str = "full",
) -> Path:  # fmt: skip
    """Synthetic data -> stage 1 -> heatmaps -> stage 2 -> probes -> fine-tuning (random vs CAMContrast) -> report.

    Returns the report folder (``<out>/report``, with README.md).

    Args:
        out: folder for data, runs and the report (report/README.md).
        quick: a ~1-minute smoke run at tiny sizes instead of the ~15-minute default.
        seed: seed of the data, splits and training.
        num_workers: data-loading worker processes.
        bundle: which setting to demonstrate: "fundus" (2D colour photographs), "cxr" (2D chest
            X-rays, multilabel) or "mri3d" (3D brain MRI).
        preset: "full" (the default), "quick" (as ``quick``) or "gpu": the fundus setting at a larger scale
            (the paper's width 64 and 224-px crops, bf16) for about 8 minutes of one GPU.
    """
    return run_setting(demo_setting(bundle), out, quick, seed, num_workers, preset)


def demo_setting(name: str) -> DemoSetting:
    """The setting ``name`` (fundus, cxr or mri3d), imported now."""
    if name not in SETTINGS:
        raise SystemExit(f"unknown demo bundle {name!r}; choose one of {sorted(SETTINGS)}")
    return importlib.import_module(f"camcontrast_monai.apps.demo.{name}").SETTING


def demo_plan(setting: DemoSetting, preset: str) -> DemoPlan:
    """The setting's plan of ``preset`` (full, quick or gpu); refuses a preset the setting lacks."""
    plan = {"full": setting.full, "quick": setting.quick, "gpu": setting.gpu}.get(preset)
    if plan is None:
        has = ["full", "quick"] + (["gpu"] if setting.gpu else [])
        raise SystemExit(f"the {setting.bundle_name} demo has no preset {preset!r}; choose one of {has}")
    return plan


def run_setting(
    setting: DemoSetting, out: str, quick: bool = False, seed: int = 0, num_workers: int = 2, preset: str = "full"
) -> Path:
    """Run ``setting``'s chain at its demo sizes (``quick`` or ``preset``) and return the report folder."""
    from camcontrast_monai.apps.demo.common import StepAnnouncer, demo_overrides
    from camcontrast_monai.apps.probe import probe_demo_encoders

    plan = demo_plan(setting, "quick" if quick else preset)
    out_dir = Path(out).resolve()
    bundle = bundle_path(setting.bundle_name)
    common = {
        **demo_overrides(bundle, out_dir, plan.width, seed, num_workers), **setting.common_overrides(plan, seed),
        **plan.precision_overrides,
    }  # fmt: skip
    pretraining, downstream = setting.pretraining_runs(plan), setting.downstream_runs(plan)
    announce = StepAnnouncer(steps=3 + len(pretraining) + len(downstream))

    announce(setting.describe_data(plan))
    manifest = setting.write_data(out_dir / "data", plan, seed)
    workflows: dict[str, Any] = {}
    for run in pretraining:
        announce(run.what)
        workflows[run.name] = run_step(bundle, run, common)
        if run.name == "stage1":
            common.update(setting.after_stage1)
    announce("frozen-feature probes of the random, stage-1 and CAMContrast encoders")
    # the probe fits are independent per split: the loader workers' share of the cores scores them
    probe_demo_encoders(bundle, out_dir, {**common, **setting.probe_overrides(plan)}, seed, n_jobs=max(1, num_workers))
    for run in downstream:
        announce(run.what)
        workflows[run.name] = run_step(bundle, run, common)
    announce("report")
    report = write_demo_report(setting, DemoRun(out_dir, bundle, plan, seed, announce.elapsed(), workflows, manifest))
    print(f"report written to {report / 'README.md'}", flush=True)
    return report


def run_step(bundle: Path, run: BundleRun, common: Mapping[str, Any], **extra: Any) -> Any:
    """Run one ``BundleRun`` of ``bundle`` with the demo's ``common`` overrides, its own and ``extra``
    (which win); returns the finished workflow."""
    overrides = {**common, **run.overrides, **extra}
    if run.output_subdir:
        overrides["output_dir"] = str(Path(common["output_dir"]) / run.output_subdir)
    return run_bundle(bundle, ["common.json", *run.configs], run.workflow, **overrides)


def write_demo_report(setting: DemoSetting, run: DemoRun) -> Path:
    """Write ``report/``: README.md (the setting's intro, the probe comparison, the stage-2 loss, the
    setting's sections, the training curves), metrics.json, probes.png, curves.png and the setting's figures."""
    from camcontrast_monai.apps.demo.common import read_history, stage2_loss_section, write_readme
    from camcontrast_monai.apps.probe import PROBE_BASELINES, write_probe_section
    from camcontrast_monai.report.figures import save_curves
    from camcontrast_monai.report.tables import write_json

    report = run.out_dir / "report"
    plan = run.plan
    parts = setting.report_parts(run, report)
    probes = json.loads((run.runs / "probes" / "probes.json").read_text())
    stage2, stage2_lines = stage2_loss_section(run.runs, run.bundle, plan.pretrain_epochs, plan.pretrain_batch_size)
    metrics = {
        "plan": dataclasses.asdict(plan), "seed": run.seed, "seconds": run.seconds, **parts.metrics,
        "probes": probes, "stage2_loss": stage2,
    }  # fmt: skip
    write_json(metrics, report / "metrics.json")
    curves = {
        "stage 1 loss": read_history(run.runs / "stage1/loss_history.json"),
        "stage 1 validation": read_history(run.runs / "stage1/val_history.json"),
        "stage 2 NT-Xent": read_history(run.runs / "pretrain/loss_history.json"),
        **parts.curves,
    }
    save_curves(
        {name: series for name, series in curves.items() if series}, report / "curves.png", "training curves",
        xlabel="iteration (validation: epoch)", ylabel={"stage 1 validation": setting.stage1_validation_label},
    )  # fmt: skip
    return write_readme(
        report,
        [
            f"# {setting.title}",
            "",
            *parts.intro,
            "",
            *write_probe_section(probes, report, "camcontrast", PROBE_BASELINES),
            *parts.probe_notes,
            *stage2_lines,
            *parts.sections,
        ],
    )

