"""Is bf16 + channels_last safe for what CAMContrast learns? float32 against it on the same seeds, data and splits.

For each seed, the fundus demo's data and sizes (``camcontrast demo``'s full plan: 400 pretraining images at
128 px, width 16, 30 stage-2 epochs, where a frozen probe reads the representation) and two chains that
differ only in precision, ``fp32`` (the bundles' default) and ``bf16+channels_last``:

    stage 1 -> heatmaps -> stage 2 -> grading fine-tuned from the stage-2 encoder and from random init

every run being the fundus bundle's own config with ``autocast_dtype`` / ``channels_last`` set (heatmap
generation has no precision switch: it runs float32 from each chain's own stage-1 classifier). Then every
encoder of the seed (both chains' stage-2 and stage-1 encoders and a random one) is probed on the same 20
resampled splits. The summary pairs bf16 with fp32 by seed and split (probes) or by seed (fine-tuning)
and gives mean differences with 95 % bootstrap intervals (``metrics.paired``); the seed-to-seed spread of
fp32 is the noise they are read against.

    python scripts/bf16_check.py --out /tmp/bf16_check --seeds 0,1,2    # about an hour on 2 idle cores

Resumable: a finished run is recognised by its output file and skipped. ``--report_only`` rewrites the
summary (``summary.json``, ``README.md``) from what is there.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import fire
import numpy as np

from camcontrast_monai.apps.bundle import bundle_path
from camcontrast_monai.apps.demo.common import demo_overrides
from camcontrast_monai.apps.demo.driver import BundleRun, run_step
from camcontrast_monai.apps.demo.fundus import FULL, QUICK, SETTING, FundusDemoPlan
from camcontrast_monai.apps.probe import export_encoder, probe_bundle_encoders
from camcontrast_monai.metrics.paired import paired_difference
from camcontrast_monai.report.tables import markdown_table, write_json

PRECISIONS = {
    "fp32": {"autocast_dtype": None, "channels_last": False},
    "bf16+channels_last": {"autocast_dtype": "bfloat16", "channels_last": True},
}
FINETUNE_INITS = ("camcontrast", "random")


def _chain_dir(out: Path, seed: int, precision: str) -> Path:
    return out / f"seed{seed}" / precision.replace("+", "_")


def _finetune_dir(chain: Path, init: str, plan: FundusDemoPlan, seed: int) -> Path:
    return chain / "runs" / "finetune" / "grading" / f"{init}_fraction{plan.label_fraction}_seed{seed}"


def _done_marker(chain: Path, run: BundleRun, plan: FundusDemoPlan, seed: int) -> Path:
    """The file a finished run of the chain leaves, by what it runs."""
    config = run.configs[0]
    if config == "stage1.json":
        return chain / "runs" / "stage1" / "classifier.pt"
    if config == "heatmaps.json":
        return chain / "runs" / "heatmaps" / "heatmap_datalist.json"
    if config == "pretrain.json":
        return chain / "models" / "model.pt"
    return _finetune_dir(chain, run.overrides["init"], plan, seed) / "test_metrics.json"


def _record_seconds(chain: Path, what: str, seconds: float) -> None:
    path = chain / "seconds.json"
    seconds_by_run = json.loads(path.read_text()) if path.exists() else {}
    write_json({**seconds_by_run, what: seconds}, path)


def _runs(plan: FundusDemoPlan) -> list[BundleRun]:
    """Stage 1, heatmaps, stage 2 and grading fine-tuned from each init, at the plan's sizes."""
    grading = [run for run in SETTING.downstream_runs(plan) if run.configs == ("finetune_cls.json",)]
    return [*SETTING.pretraining_runs(plan), *[run for init in FINETUNE_INITS for run in grading if run.overrides["init"] == init]]


def run_seed(out: Path, seed: int, plan: FundusDemoPlan, num_workers: int) -> None:
    """Both chains of one seed, then the probes of all their encoders on the same splits."""
    bundle = bundle_path(SETTING.bundle_name)
    data_dir = out / f"seed{seed}" / "data"
    if not (data_dir / "downstream").exists():
        print(f"seed {seed}: {SETTING.describe_data(plan)}", flush=True)
        SETTING.write_data(data_dir, plan, seed)
    encoders, overrides = {}, {}
    for precision, switches in PRECISIONS.items():
        chain = _chain_dir(out, seed, precision)
        common = {
            **demo_overrides(bundle, chain, plan.width, seed, num_workers), "dataset_dir": str(data_dir),
            **SETTING.common_overrides(plan, seed), **switches,
        }  # fmt: skip
        for run in _runs(plan):
            if _done_marker(chain, run, plan, seed).exists():
                continue
            print(f"seed {seed}, {precision}: {run.what}", flush=True)
            started = time.perf_counter()
            run_step(bundle, run, common)
            _record_seconds(chain, run.what, time.perf_counter() - started)
        overrides = {**common, **SETTING.probe_overrides(plan), **PRECISIONS["fp32"]}  # features in float32 for all
        encoders[f"camcontrast {precision}"] = chain / "models" / "model.pt"
        encoders[f"stage 1 {precision}"] = export_encoder(
            bundle, chain / "probe_encoders" / "stage1.pt", chain / "runs" / "stage1" / "classifier.pt", overrides=overrides
        )
    probe_dir = out / f"seed{seed}" / "probes"
    if not (probe_dir / "probes.json").exists():
        encoders["random"] = export_encoder(bundle, probe_dir / "encoders" / "random.pt", None, seed, overrides)
        print(f"seed {seed}: probes of {len(encoders)} encoders", flush=True)
        probe_bundle_encoders(bundle, encoders, probe_dir, seed=seed, overrides=overrides)


def _finetune_scores(out: Path, seeds: list[int], plan: FundusDemoPlan) -> dict[str, dict[str, list[float]]]:
    """init -> precision -> the test joint accuracy of each seed (NaN where the run is missing)."""
    scores: dict[str, dict[str, list[float]]] = {}
    for init in FINETUNE_INITS:
        for precision in PRECISIONS:
            values = []
            for seed in seeds:
                path = _finetune_dir(_chain_dir(out, seed, precision), init, plan, seed) / "test_metrics.json"
                values.append(next(iter(json.loads(path.read_text())["metrics"].values())) if path.exists() else float("nan"))
            scores.setdefault(init, {})[precision] = values
    return scores


def _probe_rows(out: Path, seeds: list[int]) -> list[dict[str, Any]]:
    """One row per task, probe and encoder kind: fp32 and bf16 means and the paired difference over seeds x splits."""
    results = [json.loads((out / f"seed{seed}" / "probes" / "probes.json").read_text())["results"] for seed in seeds]
    rows = []
    for task in results[0]:
        for probe in ("linear", "knn"):
            for kind in ("camcontrast", "stage 1"):
                fp32, bf16 = ([np.asarray(r[task][probe][f"{kind} {p}"]) for r in results] for p in PRECISIONS)
                per_seed_fp32 = [float(np.mean(v)) for v in fp32]
                rows.append({
                    "task": task, "probe": probe, "encoder": kind, "fp32": float(np.mean(per_seed_fp32)),
                    "bf16+channels_last": float(np.mean([np.mean(v) for v in bf16])),
                    "bf16 - fp32 [95 % CI], seeds x splits": str(paired_difference(np.concatenate(bf16), np.concatenate(fp32))),
                    "bf16 - fp32 per seed": ", ".join(f"{np.mean(b) - np.mean(f):+.3f}" for b, f in zip(bf16, fp32, strict=True)),
                    "fp32 std over seeds": float(np.std(per_seed_fp32, ddof=1)) if len(seeds) > 1 else float("nan"),
                    "random": float(np.mean([np.mean(r[task][probe]["random"]) for r in results])),
                    "trivial": float(np.mean([np.mean(r[task]["trivial"]["trivial"]) for r in results])),
                })  # fmt: skip
    return rows


def write_summary(out: Path, seeds: list[int], plan: FundusDemoPlan) -> dict[str, Any]:
    """``summary.json`` and ``README.md`` of the seeds whose probes are done."""
    seeds = [seed for seed in seeds if (out / f"seed{seed}" / "probes" / "probes.json").exists()]
    finetune = _finetune_scores(out, seeds, plan)
    finetune_rows = [
        {
            "init": init, **{p: f"{np.nanmean(v):.3f} ± {np.nanstd(v, ddof=1) if len(v) > 1 else float('nan'):.3f}" for p, v in by_p.items()},
            "bf16 - fp32 [95 % CI], seeds": str(paired_difference(by_p["bf16+channels_last"], by_p["fp32"])),
            "per seed (fp32 / bf16)": ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(by_p["fp32"], by_p["bf16+channels_last"], strict=True)),
        }
        for init, by_p in finetune.items()
    ]  # fmt: skip
    probe_rows = _probe_rows(out, seeds)
    seconds = {
        p: {what: [json.loads((_chain_dir(out, s, p) / "seconds.json").read_text()).get(what, float("nan")) for s in seeds] for what in (r.what for r in _runs(plan))}
        for p in PRECISIONS
    }  # fmt: skip
    time_rows = [
        {"run": what, **{p: float(np.nanmean(seconds[p][what])) for p in PRECISIONS},
         "fp32 / bf16 time, per seed": ", ".join(f"{a / b:.2f}" for a, b in zip(seconds["fp32"][what], seconds["bf16+channels_last"][what], strict=True))}
        for what in seconds["fp32"]
    ]  # fmt: skip
    summary = {"seeds": seeds, "seconds": seconds, "plan": dataclasses.asdict(plan), "probes": probe_rows, "finetune": finetune, "finetune_rows": finetune_rows}
    write_json(summary, out / "summary.json")
    lines = [
        "# bf16 + channels_last against float32, paired by seed and split", "",
        f"Seeds {seeds}; the fundus demo's data and sizes; command `python scripts/bf16_check.py --out DIR --seeds "
        f"{','.join(map(str, seeds))}`. Probes: {len(seeds)} seeds x 20 resampled splits (pairs share seed and split; "
        "splits of one data set overlap, so the interval says how stable the difference is on these data).", "",
        "## Frozen-feature probes", "", markdown_table(probe_rows),
        "## Grading fine-tuned (test joint accuracy on each seed's test split)", "", markdown_table(finetune_rows),
        "## Wall time of each run (seconds, mean over seeds; the ratio per seed, as the runs of a seed follow each other)", "",
        "These are wall times of single runs, distorted by whatever else the machine did meanwhile (heatmap generation "
        "runs float32 in both chains, so its ratio shows that noise); `camcontrast bench stages` and `bench pipeline` "
        "measure speed, alternating in one process.", "",
        markdown_table(time_rows, float_format="{:.0f}"),
    ]  # fmt: skip
    (out / "README.md").write_text("\n".join(lines))
    return summary


def main(out: str, seeds: str | int = "0,1,2", num_workers: int = 2, report_only: bool = False, quick: bool = False) -> None:
    """Run the chains of ``seeds`` (resuming) and write the summary; ``quick``: the demo's smoke sizes."""
    plan = QUICK if quick is True else FULL
    out_dir = Path(out).resolve()
    seed_list = [int(s) for s in str(seeds).split(",")] if not isinstance(seeds, tuple) else list(seeds)
    if not report_only:
        for seed in seed_list:
            run_seed(out_dir, seed, plan, num_workers)
    print((out_dir / "README.md").read_text() if write_summary(out_dir, seed_list, plan)["seeds"] else "no seed finished")


if __name__ == "__main__":
    fire.Fire(main)
