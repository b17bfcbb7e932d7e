"""``camcontrast bench schedule``: how a frozen probe of the stage-2 encoder grows with stage-2 steps.

Run stage 2 with ``--encoder_snapshot_epochs [..]`` (the pretrain configs then keep
``<pretrain_run_dir>/encoder_snapshots/epoch{N}.pt``), then probe every snapshot, a random encoder and,
when given, the stage-1 classifier's encoder on the bundle's probe images with the same splits. The
snapshots come from one run and its one learning-rate schedule, so the curve shows where the
representation levels off along that schedule, not what a shorter run would give.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from camcontrast_monai.apps.bundle import bundle_path
from camcontrast_monai.apps.probe import (
    PROBE_SPLITS,
    export_encoder,
    probe_bundle_encoders,
    write_probe_section,
)
from camcontrast_monai.utils.io import write_json

__all__ = ["probe_schedule"]

_SNAPSHOT = re.compile(r"epoch(\d+)\.pt$")


def probe_schedule(
    snapshot_dir: str, dataset_dir: str, steps_per_epoch: int, bundle: str = "fundus", classifier: str = "",
    out: str = "schedule_output", n_splits: int = PROBE_SPLITS, seed: int = 0, **overrides: Any,
) -> Path:  # fmt: skip
    """Frozen probes of stage-2 encoder snapshots against their steps: where the representation levels off.

    Probes every ``epoch{N}.pt`` in ``snapshot_dir`` and writes ``<out>/report/README.md`` with the curves.

    Args:
        snapshot_dir: the epoch<N>.pt files of a stage-2 run started with --encoder_snapshot_epochs [..].
        dataset_dir: the bundle's data folder.
        steps_per_epoch: optimiser steps per stage-2 epoch (the length of its progress bar).
        bundle: fundus, cxr or mri3d.
        classifier: the run's stage-1 classifier.pt, probed as a reference line.
        out: folder for probes.json, schedule_linear.png, schedule_knn.png and report/README.md.
        n_splits: resampled splits shared by every snapshot.
        seed: seed of the splits and of the random encoder.
        **overrides: bundle config values as in the stage-2 run, e.g. --width 16 --image_size 128.
    """
    from camcontrast_monai.report.probes import save_probe_curves

    root = bundle_path(bundle)
    out_dir = Path(out).resolve()
    snapshots = {int(m.group(1)): path for path in Path(snapshot_dir).glob("epoch*.pt") if (m := _SNAPSHOT.search(path.name))}
    if not snapshots:
        raise ValueError(f"no epoch<N>.pt snapshots in {snapshot_dir}; run stage 2 with --encoder_snapshot_epochs")
    overrides = {"bundle_root": str(root), "dataset_dir": str(Path(dataset_dir).resolve()), **overrides}
    encoders = {"random": export_encoder(root, out_dir / "encoders" / "random.pt", None, seed, overrides)}
    if classifier:
        encoders["stage 1"] = export_encoder(root, out_dir / "encoders" / "stage1.pt", classifier, overrides=overrides)
    steps = {"random": 0}
    for epoch in sorted(snapshots):
        name = f"{epoch * steps_per_epoch} steps"
        encoders[name] = export_encoder(root, out_dir / "encoders" / f"epoch{epoch}.pt", snapshots[epoch], overrides=overrides)
        steps[name] = epoch * steps_per_epoch
    summary = probe_bundle_encoders(root, encoders, out_dir, n_splits, seed, overrides)
    report = out_dir / "report"
    references = [name for name in ("random", "stage 1") if name in encoders]
    for probe in ("linear", "knn"):
        save_probe_curves(
            summary["results"], steps, report / f"schedule_{probe}.png",
            f"{probe} probe of stage-2 snapshots ({n_splits} splits, mean ± std)", summary["metrics"], probe=probe,
            references=references,
        )  # fmt: skip
    write_json({"steps": steps, "snapshot_dir": str(snapshot_dir)}, out_dir / "schedule.json")
    last = max(snapshots) * steps_per_epoch
    lines = [
        "# Frozen probes along one stage-2 run",
        "",
        f"Bundle {root.name}; snapshots of one stage-2 run at {', '.join(str(s) for s in sorted(steps.values()) if s)} "
        f"steps ({steps_per_epoch} per epoch), probed on {summary['images']} downstream images.",
        "",
        "![linear probe](schedule_linear.png)",
        "",
        "![kNN](schedule_knn.png)",
        "",
    ]
    lines += write_probe_section(summary, report, f"{last} steps", references)
    (report / "README.md").write_text("\n".join(lines))
    print(f"report written to {report / 'README.md'}", flush=True)
    return report
