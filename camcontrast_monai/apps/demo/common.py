"""What every demo shares: step announcements, the overrides each bundle run gets, training histories, the
stage-2 loss section and the end of the report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from camcontrast_monai.report.stage2 import stage2_loss_position

__all__ = ["StepAnnouncer", "demo_overrides", "read_history", "stage2_loss_section", "write_readme"]


class StepAnnouncer:
    """Prints ``[i/n] what  (t s elapsed)`` for each step of a demo, so a long run shows where it is."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.step = 0
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, what: str) -> None:
        self.step += 1
        print(f"[{self.step}/{self.steps}] {what}  ({self.elapsed():.0f} s elapsed)", flush=True)


def demo_overrides(bundle: Path, out_dir: Path, width: int, seed: int, num_workers: int) -> dict[str, Any]:
    """The bundle overrides every demo passes to every config: where data, runs and the encoder go, and the run's sizes."""
    return {
        "bundle_root": str(bundle),
        "dataset_dir": str(out_dir / "data"),
        "output_dir": str(out_dir / "runs"),
        "encoder_path": str(out_dir / "models" / "model.pt"),
        "width": width,
        "seed": seed,
        "num_workers": num_workers,
    }


def read_history(path: Path) -> dict[str, list]:
    """A run's ``*_history.json`` (series name -> values); empty when the run wrote none."""
    return json.loads(path.read_text()) if path.exists() else {}


def stage2_loss_section(out_dir: Path, bundle: Path, epochs: int, batch_size: int) -> tuple[dict[str, Any], list[str]]:
    """Where the demo's stage-2 loss ended between collapse and the floor its normal images impose, and the
    report section that says so.

    The floor is for the pretraining set's share of normal images, whose heatmaps are suppressed to zeros
    (identical), at the bundle's temperature; see :func:`stage2_loss_position`.
    """
    pairs = json.loads((out_dir / "runs/heatmaps/heatmap_datalist.json").read_text())
    normal_fraction = float(np.mean([int(entry["label"]) == 0 for entry in pairs]))
    losses = [value for _, value in read_history(out_dir / "runs/pretrain/loss_history.json")["loss"]]
    temperature = json.loads((bundle / "configs" / "pretrain.json").read_text())["temperature"]
    position = stage2_loss_position(losses, epochs, batch_size, normal_fraction, temperature)
    verdict = (
        f"Stage 2 covered {position['progress']:.0%} of the way from collapse to that floor."
        if position["progress"] > 0
        else "The loss has not yet come below the collapsed value: stage 2 needs more steps."
    )
    lines = [
        "## Stage 2: how far the loss got",
        "",
        f"The last stage-2 epoch's mean NT-Xent is {position['final_epoch_loss']:.2f}. A collapsed encoder gives "
        f"log(2B - 1) = {position['collapsed']:.2f} for batch {position['batch_size']}; with about "
        f"{position['identical_heatmaps_per_batch']} normal (all-zero, so identical) heatmaps per batch no encoder "
        f"can go below {position['floor']:.2f}. {verdict}",
        "",
    ]
    return position, lines


def write_readme(report: Path, lines: list[str]) -> Path:
    """Write a demo's ``report/README.md``: its own sections, then the training curves every demo ends with."""
    (report / "README.md").write_text("\n".join([*lines, "## Training curves", "", "![curves](curves.png)", ""]))
    return report
