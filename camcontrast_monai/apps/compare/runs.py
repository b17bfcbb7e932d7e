"""Running a comparison's bundle configs: the resumable runner, the pretraining of every method and the fine-tuning of every task."""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.apps.compare.plan import BASELINES, POWER_FRACTION, POWER_METHOD, Grid, MethodSpec
from camcontrast_monai.apps.compare.settings import CompareSetting
from camcontrast_monai.report.tables import write_json

logger = logging.getLogger(__name__)


# Every pretraining augments in batches in the trainer, whatever the bundles' "auto" would choose on this machine:
# at the presets' width 16 on 2 cores, the two-view baselines took 1.55x as long with per-view augmentation in the
# workers (SimCLR-crop, 64-px crops), and stage 2 ran within noise of it; the committed benchmark ran so, and a
# rerun of its command repeats its augmentation draws.
PRETRAIN_AUGMENTATION = {"batched_augmentation": True}


def _cli_value(value: Any) -> str:
    """A shell word that fire (``monai.bundle run``, ``camcontrast``) parses back to ``value``: Python literals."""
    return shlex.quote(value if isinstance(value, str) else repr(value))


class Runner:
    """Runs bundle configs from the snapshot, records each equivalent ``monai.bundle run`` command."""

    def __init__(self, out_dir: Path, setting: CompareSetting, total: int, report_only: bool = False) -> None:
        self.out_dir = out_dir
        self.setting = setting
        self.report_only = report_only
        self.bundle = out_dir / "bundle"
        self.commands: list[dict[str, str]] = []
        self.started = time.perf_counter()
        self.total, self.done = total, 0

    def snapshot(self) -> None:
        if (self.bundle / "configs").is_dir():
            print(f"resuming with the config snapshot in {self.bundle / 'configs'}", flush=True)
            return
        temporary = self.out_dir / "bundle.partial"
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.copytree(bundle_path(self.setting.bundle_name) / "configs", temporary / "configs")
        temporary.rename(self.bundle)

    def command(self, configs: Sequence[str], workflow_type: str | None, overrides: Mapping[str, Any]) -> str:
        parts = ["python -m monai.bundle run"]
        if workflow_type:
            parts.append(f"--workflow_type {workflow_type}")
        files = [str(self.bundle / "configs" / name) for name in configs]
        parts.append(f"--config_file {_cli_value(json.dumps(files))}")
        parts.append(f"--meta_file {_cli_value(str(self.bundle / 'configs' / 'metadata.json'))}")
        parts.append(f"--logging_file {_cli_value(str(self.bundle / 'configs' / 'logging.conf'))}")
        parts += [f"--{key} {_cli_value(value)}" for key, value in overrides.items()]
        return " ".join(parts)

    def step(self, what: str, done: bool, configs: Sequence[str], workflow_type: str | None, key: str, **overrides: Any) -> None:
        self.done += 1
        overrides = {"bundle_root": str(self.bundle), **overrides}
        self.commands.append({"run": key, "command": self.command(configs, workflow_type, overrides)})
        elapsed = time.perf_counter() - self.started
        if done:
            print(f"[{self.done}/{self.total}] {what}: done earlier, skipped  ({elapsed:.0f} s elapsed)", flush=True)
            return
        if self.report_only:
            print(f"[{self.done}/{self.total}] {what}: not run yet", flush=True)
            return
        print(f"[{self.done}/{self.total}] {what}  ({elapsed:.0f} s elapsed)", flush=True)
        run_bundle(self.bundle, configs, workflow_type, **overrides)


def check_plan(
    out_dir: Path, setting: CompareSetting, preset: str, plan: Any, dataset_dir: str | None, shared_pretraining: bool
) -> None:  # fmt: skip
    """Record the sizes in ``plan.json``; refuse to resume a folder that was started with other sizes."""
    recorded = {
        "preset": preset, "plan": dataclasses.asdict(plan), "dataset_dir": dataset_dir,
        "shared_pretraining": shared_pretraining, **({"bundle": setting.name} if setting.name != "fundus" else {}),
    }  # fmt: skip
    recorded = json.loads(json.dumps(recorded))  # tuples -> lists, as read back
    path = out_dir / "plan.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != recorded:
            raise ValueError(
                f"{out_dir} holds runs made with other sizes or data ({path}); resuming would mix them. "
                "Use a new --out folder, or the preset and dataset it was started with."
            )
        return
    write_json(recorded, path)


def write_data(data_dir: Path, setting: CompareSetting, plan: Any) -> None:
    """The setting's synthetic data, written once (``complete.json`` marks it finished)."""
    marker = data_dir / "complete.json"
    if marker.is_file():
        return
    setting.write_data(data_dir, plan)
    write_json(dataclasses.asdict(plan), marker)


def _pretrain(runner: Runner, method: MethodSpec, seed: int, plan: Any, common: Mapping[str, Any]) -> str | None:
    """Pretrain ``method`` with ``seed`` (unless done) and return its encoder path (None: random init)."""
    if method.kind == "random":
        return None
    run_dir = runner.out_dir / "runs" / "pretrain" / method.slug / f"seed{seed}"
    encoder_path = run_dir / "encoder.pt"
    shared = {
        **common, "output_dir": str(run_dir), "encoder_path": str(encoder_path), "seed": seed,
        **runner.setting.pretrain_overrides(plan), "pretrain_epochs": plan.pretrain_epochs,
        "pretrain_batch_size": plan.pretrain_batch_size, "pretrain_lr": plan.pretrain_lr,
        **PRETRAIN_AUGMENTATION, **method.overrides,
    }  # fmt: skip
    key = f"pretrain {method.spec} seed {seed}"
    if method.kind == "camcontrast":
        runner.step(
            f"{key}: stage 1", (run_dir / "stage1" / "classifier.pt").is_file(), ["common.json", "stage1.json"], "train",
            key, **{**shared, "stage1_epochs": plan.stage1_epochs, "stage1_batch_size": plan.stage1_batch_size,
                    **runner.setting.stage1_overrides(plan)},
        )  # fmt: skip
        runner.step(
            f"{key}: heatmaps", (run_dir / "heatmaps" / "heatmap_datalist.json").is_file(),
            ["common.json", "heatmaps.json"], None, key, **shared,
        )  # fmt: skip
        runner.step(f"{key}: stage 2", encoder_path.is_file(), ["common.json", "pretrain.json"], "train", key, **shared)
    else:
        configs = ["common.json", "pretrain.json", "pretrain_baseline.json", BASELINES[method.kind]]
        runner.step(key, encoder_path.is_file(), configs, "train", key, **shared, fixed_crops=method.fixed_crops)
    return str(encoder_path)


def finetune_dir(out_dir: Path, task: str, method: MethodSpec, fraction: float, lr: float, seed: int) -> Path:
    return out_dir / "runs" / "finetune" / task / method.slug / f"fraction{fraction:g}" / f"lr{lr:g}" / f"seed{seed}"


def task_run(setting: CompareSetting, task: str, plan: Any, seed: int, fraction: float) -> tuple[list[str], dict[str, Any]]:
    """The configs and the plan's overrides of one downstream task's fine-tuning."""
    return ["common.json", setting.tasks[task].config], setting.task_overrides(task, plan, seed, fraction)


def _finetune(
    runner: Runner, method: MethodSpec, encoder: str | None, task: str, fraction: float, lr: float, seed: int,
    plan: Any, common: Mapping[str, Any],
) -> None:  # fmt: skip
    run_dir = finetune_dir(runner.out_dir, task, method, fraction, lr, seed)
    configs, task_overrides = task_run(runner.setting, task, plan, seed, fraction)
    overrides = {
        **common, "output_dir": str(runner.out_dir / "runs"), "finetune_dir": str(run_dir), "seed": seed,
        "init": method.spec, "init_weights": encoder, "label_fraction": fraction, "finetune_lr": lr,
        **method.finetune_overrides, **task_overrides,
    }  # fmt: skip
    what = f"fine-tune {task} from {method.spec}, fraction {fraction:g}, lr {lr:g}, seed {seed}"
    done = (run_dir / "test_metrics.json").is_file()
    runner.step(what, done, configs, "train", what, **overrides)


def command_line(
    out_dir: Path, setting: CompareSetting, grid: Grid, preset: str, dataset_dir: str | None, shared_pretraining: bool
) -> str:  # fmt: skip
    """The ``camcontrast bench compare`` command that reruns (resumes) this comparison, for the report."""
    return "camcontrast bench compare " + " ".join(
        f"--{k} {_cli_value(v)}" for k, v in {
            **({"bundle": setting.name} if setting.name != "fundus" else {}), "out": str(out_dir), "methods": ",".join(m.spec for m in grid.methods), "tasks": ",".join(grid.tasks),
            "fractions": ",".join(f"{f:g}" for f in grid.fractions), "seeds": ",".join(map(str, grid.seeds)),
            "preset": preset, **({"dataset_dir": dataset_dir} if dataset_dir else {}),
            **({"shared_pretraining": True} if shared_pretraining else {}),
        }.items()
    )  # fmt: skip


def step_count(grid: Grid, plan: Any, shared_pretraining: bool) -> int:
    """How many bundle runs the grid needs (CAMContrast pretrains in 3: stage 1, heatmaps, stage 2)."""
    pretrain_steps = sum(3 if m.kind == "camcontrast" else 0 if m.kind == "random" else 1 for m in grid.methods)
    finetune_steps = len(grid.methods) * sum(len(plan.lr_grid[t]) for t in grid.tasks) * len(grid.fractions)
    power_steps = sum(len(plan.lr_grid[t]) for t in grid.tasks) if _needs_power_runs(grid) else 0
    pretrainings = 1 if shared_pretraining else len(grid.seeds)
    return pretrainings * pretrain_steps + len(grid.seeds) * (finetune_steps + power_steps)


def pretrain_and_finetune(
    runner: Runner, grid: Grid, plan: Any, common: Mapping[str, Any], shared_pretraining: bool
) -> dict[tuple[str, int], str | None]:
    """Every pretraining and fine-tuning run of the grid (each skipped if done); the encoder path of each
    ``(method spec, pretraining seed)``."""
    encoders: dict[tuple[str, int], str | None] = {}
    power_runs = _needs_power_runs(grid)
    for seed in grid.seeds:
        pretrain_seed = grid.seeds[0] if shared_pretraining else seed
        for method in grid.methods:
            if (method.spec, pretrain_seed) not in encoders:
                encoders[method.spec, pretrain_seed] = _pretrain(runner, method, pretrain_seed, plan, common)
            encoder = encoders[method.spec, pretrain_seed]
            for task in grid.tasks:
                for fraction in grid.fractions:
                    for lr in plan.lr_grid[task]:
                        _finetune(runner, method, encoder, task, fraction, lr, seed, plan, common)
        for task in grid.tasks if power_runs else ():
            for lr in plan.lr_grid[task]:
                _finetune(runner, POWER_METHOD, None, task, POWER_FRACTION, lr, seed, plan, common)
    return encoders


def _needs_power_runs(grid: Grid) -> bool:
    """Whether the power check needs runs of its own: random init at ``POWER_FRACTION`` is not in the grid."""
    return not (any(m.spec == POWER_METHOD.spec for m in grid.methods) and POWER_FRACTION in grid.fractions)
