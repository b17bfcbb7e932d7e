"""``camcontrast bench stages``: images/s of the fundus bundle's training stages as shipped, against the same
step's pure compute.

For each stage (stage 1, SimCLR-crop pretraining, grading and lesion fine-tuning), round after round in one
process:

* ``shipped``: a training run of the bundle's own config as ``camcontrast demo`` runs it (``python -m monai.bundle
  run`` with the demo's overrides: its sizes, and its loading, which for stage 1 and fine-tuning is cached images
  and no worker processes): its per-epoch validation, checkpoints, progress bar and histories (building the
  workflow is not timed). ``--overrides '{"train#dataloader#num_workers": 2, "train#dataset#cache_rate": 0.0}'``
  measures stage 1 as the bundle loads it (fine-tuning: the workers alone);
* ``compute``: the same trainer's step alone (its forward and loss under its autocast, backward, optimiser
  step) over one epoch of the same loader's batches held in memory as plain tensors, as often as the
  shipped run saw batches: no data loading, no handlers, no MONAI metadata.

The ratio shipped/compute per round is the share of a stage's time that is compute; the time the shipped
run spent validating is reported beside it. Stage 2 has its own end-to-end bench (``bench pipeline``),
and heatmap generation too (``bench heatmaps``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from camcontrast_monai.apps.bench.step import parse_variant, spread
from camcontrast_monai.apps.bundle import bundle_path, bundle_workflow
from camcontrast_monai.utils.runtime import tune_malloc
from camcontrast_monai.utils.tensors import plain_tensor

__all__ = ["STAGES", "StageSpec", "bench_stages", "format_stages_report"]


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """A training stage of the fundus bundle: its configs after ``common.json`` and the key of its epochs."""

    configs: tuple[str, ...]
    epochs_key: str


STAGES = {
    "stage1": StageSpec(("stage1.json",), "stage1_epochs"),
    "simclr-crop": StageSpec(("pretrain.json", "pretrain_baseline.json", "pretrain_simclr.json"), "pretrain_epochs"),
    "finetune_cls": StageSpec(("finetune_cls.json",), "finetune_epochs"),
    "finetune_seg": StageSpec(("finetune_seg.json",), "finetune_epochs"),
}


def _demo_sizes(stage: str, plan: Any) -> dict[str, Any]:
    """The overrides ``camcontrast demo`` (fundus) gives this stage at ``plan``; SimCLR-crop gets stage 2's."""
    from camcontrast_monai.apps.demo.fundus import SETTING

    stage1, _, stage2 = SETTING.pretraining_runs(plan)
    downstream = {run.configs[0]: run for run in SETTING.downstream_runs(plan) if run.overrides["init"] == "random"}
    return {
        "stage1": stage1.overrides,
        "simclr-crop": {**stage2.overrides, "fixed_crops": True},
        "finetune_cls": downstream["finetune_cls.json"].overrides,
        "finetune_seg": downstream["finetune_seg.json"].overrides,
    }[stage]


class _ImageCounter:
    """Images of the batches a trainer iterates over (read at ITERATION_STARTED, before MONAI decollates them)."""

    def __init__(self, trainer: Any) -> None:
        from ignite.engine import Events

        self.images = 0
        trainer.add_event_handler(Events.ITERATION_STARTED, self._count)

    def _count(self, engine: Any) -> None:
        self.images += _batch_size(engine.state.batch)


class _ValidationClock:
    """Seconds an evaluator spends in its runs (Ignite's STARTED to COMPLETED)."""

    def __init__(self, evaluator: Any) -> None:
        from ignite.engine import Events

        self.seconds, self._start = 0.0, 0.0
        evaluator.add_event_handler(Events.STARTED, self._started)
        evaluator.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, _: Any) -> None:
        self._start = time.perf_counter()

    def _completed(self, _: Any) -> None:
        self.seconds += time.perf_counter() - self._start


def _run_shipped(workflow: Any) -> dict[str, float]:
    """Time the workflow's training run: its images/s and the fraction of its time spent validating."""
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator") if "validate#evaluator" in workflow.parser else None
    clock = _ValidationClock(evaluator) if evaluator is not None else None
    counter = _ImageCounter(trainer)
    started = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - started
    validation = clock.seconds if clock else 0.0
    return {"images_per_s": counter.images / seconds, "validation_fraction": validation / seconds, "images": counter.images}


def _run_compute(trainer: Any, batches: Sequence[Mapping[str, Any]], epochs: int) -> float:
    """Images/s of ``trainer``'s step alone (its ``forward_loss`` under its autocast, backward, optimiser step)
    over ``batches`` (one epoch, in memory, plain tensors), ``epochs`` times, after one untimed warm-up step.

    No Ignite events fire, so no handler runs (MONAI's decollation among them), and no MONAI metadata rides
    on the tensors: what the shipped run spends beyond this is overhead.
    """
    from camcontrast_monai.engines import autocast_context

    batches = [{key: _plain(value) for key, value in batch.items()} for batch in batches]

    def step(index: int, batch: Mapping[str, Any]) -> None:
        trainer.state.iteration = index + 1  # the batch augmentation's draw
        trainer.optimizer.zero_grad(set_to_none=True)
        with autocast_context(trainer.state.device, trainer.autocast_dtype):
            loss = trainer.forward_loss(batch)["loss"]
        loss.backward()
        trainer.optimizer.step()

    trainer.network.train()
    step(0, batches[0])
    images = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        for index, batch in enumerate(batches):
            step(epoch * len(batches) + index, batch)
            images += _batch_size(batch)
    return images / (time.perf_counter() - started)


def _plain(value: Any) -> Any:
    """A tensor (a MONAI MetaTensor among them) as a plain tensor; anything else as it is."""
    return plain_tensor(value) if torch.is_tensor(value) else value


def _batch_size(batch: Mapping[str, Any]) -> int:
    return int(next(value for value in batch.values() if torch.is_tensor(value)).shape[0])


def _cache_note(dataset: Any) -> str:
    """The data set's class, and for a MONAI ``CacheDataset`` how many of its items it holds decoded."""
    cached = getattr(dataset, "cache_num", None)
    return type(dataset).__name__ + (f" ({cached}/{len(dataset)} cached)" if cached is not None else "")


def _bench_stage(
    bundle: Path, stage: str, root: Path, common: Mapping[str, Any], plan: Any, epochs: int, rounds: int,
    overrides: Mapping[str, Any], baseline_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Alternate shipped runs and compute loops of one stage (``overrides`` last, over the demo's sizes), and
    with ``baseline_overrides`` a run of the baseline they set before each shipped one; each round builds every
    workflow afresh (untimed)."""
    spec = STAGES[stage]
    shipped: list[dict[str, float]] = []
    baseline: list[dict[str, float]] = []
    compute: list[float] = []
    for round_index in range(rounds):
        run_dir = root / "runs" / stage / f"round{round_index}"
        sized = {**common, **_demo_sizes(stage, plan), spec.epochs_key: epochs, **overrides}

        def workflow_of(name: str, extra: Mapping[str, Any], run_dir: Path = run_dir, sized: dict = sized) -> Any:
            paths = {"output_dir": str(run_dir / name), "encoder_path": str(run_dir / name / "encoder.pt")}
            return bundle_workflow(bundle, ["common.json", *spec.configs], "train", **{**sized, **paths, **extra})

        if baseline_overrides:
            before = workflow_of("baseline", baseline_overrides)
            baseline.append(_run_shipped(before))
            before.finalize()
        workflow = workflow_of("shipped", {})
        shipped.append(_run_shipped(workflow))
        trainer = workflow.parser.get_parsed_content("train#trainer")
        batches = list(itertools.islice(trainer.data_loader, trainer.state.epoch_length))
        compute.append(_run_compute(trainer, batches, epochs))
        workflow.finalize()
    loader = trainer.data_loader
    return {
        "precision": f"{trainer.autocast_dtype or 'float32'}" + ("+channels_last" if trainer.channels_last else ""),
        "shipped_images_per_s": spread([r["images_per_s"] for r in shipped]),
        "compute_images_per_s": spread(compute),
        "shipped_over_compute": spread([r["images_per_s"] / c for r, c in zip(shipped, compute, strict=True)]),
        **({
            "baseline_images_per_s": spread([r["images_per_s"] for r in baseline]),
            "shipped_over_baseline": spread([r["images_per_s"] / b["images_per_s"] for r, b in zip(shipped, baseline, strict=True)]),
        } if baseline else {}),
        "validation_fraction": spread([r["validation_fraction"] for r in shipped]),
        "images_per_epoch": shipped[0]["images"] // epochs, "batch_size": loader.batch_size,
        "num_workers": loader.num_workers, "cached": _cache_note(loader.dataset),
    }  # fmt: skip


def bench_stages(
    stages: str | Sequence[str] = tuple(STAGES),
    epochs: int = 2,
    rounds: int = 3,
    precision: str = "shipped",
    num_workers: int = 2,
    seed: int = 0,
    workdir: str | None = None,
    quick: bool = False,
    overrides: Mapping[str, Any] | None = None,
    baseline_overrides: Mapping[str, Any] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Images/s of each training stage as the fundus bundle ships it, against its own pure-compute loop.

    Args:
        stages: comma-separated subset of stage1, simclr-crop, finetune_cls, finetune_seg (or a sequence).
        epochs: epochs of each shipped run (at least 2, so per-epoch costs such as worker start-up show).
        rounds: shipped runs and compute loops alternate this many times; min/median/max are over rounds.
        precision: ``shipped`` (the bundle's own ``autocast_dtype`` and ``channels_last``: bf16 + channels-last
            where the hardware has native bf16) or a ``bench step`` variant (fp32, bf16, fp32+channels_last,
            bf16+channels_last) set as those two switches.
        num_workers: the bundle's data-loading workers.
        seed: seed of the synthetic data and the runs.
        workdir: where data and runs are written (default: a temporary folder, deleted afterwards).
        quick: the quick demo's tiny sizes instead of the full demo's (a smoke run, not a measurement).
        overrides: bundle overrides of every stage's run on top of the demo's, to measure a change before
            shipping it, e.g. ``{"train#dataset#cache_rate": 1.0}``.
        baseline_overrides: bundle overrides of a baseline run before every shipped run, in the same round, for
            the ratio shipped / baseline of a change already shipped, e.g. ``{"fused_optimizer": false}``.
        verbose: print the table.
    """
    from camcontrast_monai.apps.demo.common import demo_overrides
    from camcontrast_monai.apps.demo.fundus import FULL, QUICK, SETTING

    stages = [s for s in (stages.split(",") if isinstance(stages, str) else stages) if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        raise ValueError(f"unknown stages {unknown}; choose from {list(STAGES)}")
    if epochs < 2 or rounds < 1:
        raise ValueError(f"epochs must be >= 2 and rounds >= 1, got {epochs} and {rounds}")
    switches = {} if precision == "shipped" else dict(zip(("autocast_dtype", "channels_last"), parse_variant(precision), strict=True))
    malloc_tuned = tune_malloc()
    bundle = bundle_path(SETTING.bundle_name)
    plan = QUICK if quick else FULL
    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_stages_")))
        SETTING.write_data(root / "data", plan, seed)
        common = {**demo_overrides(bundle, root, plan.width, seed, num_workers), **switches}
        rows = {
            stage: _bench_stage(bundle, stage, root, common, plan, epochs, rounds, overrides or {}, baseline_overrides)
            for stage in stages
        }  # fmt: skip
    report = {
        "config": {"epochs": epochs, "rounds": rounds, "precision": precision, "num_workers": num_workers, "seed": seed,
                   "plan": dataclasses.asdict(plan), "overrides": dict(overrides or {}),
                   "baseline_overrides": dict(baseline_overrides or {})},
        "stages": rows, "threads": torch.get_num_threads(), "malloc_tuned": malloc_tuned,
    }  # fmt: skip
    if verbose:
        print(format_stages_report(report))
    return report


def format_stages_report(report: Mapping[str, Any]) -> str:
    """A plain-text table of :func:`bench_stages`' result."""
    c = report["config"]
    lines = [
        f"training stages of the fundus bundle at the demo's sizes (width {c['plan']['width']}): {c['epochs']} epochs x {c['rounds']} rounds, "
        f"precision {c['precision']}, {c['num_workers']} workers, {report['threads']} threads",
        f"{'stage':<13} {'images/epoch':>12} {'batch':>5} {'shipped img/s':>13} {'compute img/s':>13} "
        f"{'shipped/compute med':>19} {'min':>5} {'max':>5} {'validating':>10}  dataset, precision",
    ]
    for stage, row in report["stages"].items():
        ratio = row["shipped_over_compute"]
        lines.append(
            f"{stage:<13} {row['images_per_epoch']:>12} {row['batch_size']:>5} {row['shipped_images_per_s']['median']:>13.1f} "
            f"{row['compute_images_per_s']['median']:>13.1f} {ratio['median']:>19.2f} {ratio['min']:>5.2f} {ratio['max']:>5.2f} "
            f"{100 * row['validation_fraction']['median']:>9.0f}%  {row['cached']}, {row['precision']}"
        )
    if c.get("baseline_overrides"):
        lines.append(f"against a baseline run before each shipped run in every round, with {c['baseline_overrides']}:")
        for stage, row in report["stages"].items():
            ratio = row["shipped_over_baseline"]
            lines.append(
                f"{stage:<13} baseline {row['baseline_images_per_s']['median']:.1f} img/s; shipped / baseline "
                f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"
            )
    return "\n".join(lines)
