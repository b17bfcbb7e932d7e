"""What every demo shares: step announcements, the overrides each bundle run gets, and training histories."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["StepAnnouncer", "demo_overrides", "read_history"]


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
