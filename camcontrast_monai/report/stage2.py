"""Where a stage-2 loss stands between collapse and the floor that identical all-zero normal heatmaps impose."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from camcontrast_monai.losses.ntxent import collapsed_ntxent, ntxent_floor

__all__ = ["stage2_loss_position"]


def stage2_loss_position(
    losses: Sequence[float], epochs: int, batch_size: int, normal_fraction: float, temperature: float = 0.05
) -> dict[str, Any]:
    """The last epoch's mean NT-Xent against ``log(2B - 1)`` (collapse) and the floor for the batch's expected mix.

    ``losses`` are the per-step values of the whole run (``loss_history.json``), ``epochs`` the epochs
    they span; ``normal_fraction`` is the share of pretraining images whose heatmaps are suppressed to
    zeros (the normals), so a batch holds about ``round(B * normal_fraction)`` identical heatmaps.
    ``progress`` is 0 at collapse and 1 at the floor.
    """
    values = np.asarray(losses, dtype=float)
    if epochs < 1 or len(values) < epochs:
        raise ValueError(f"{len(values)} loss values cannot span {epochs} epochs")
    last_epoch = values[-(len(values) // epochs) :]
    identical = int(round(batch_size * normal_fraction))
    collapsed = collapsed_ntxent(batch_size)
    floor = ntxent_floor(batch_size, identical, temperature)
    final = float(last_epoch.mean())
    return {
        "final_epoch_loss": final, "collapsed": collapsed, "floor": floor, "identical_heatmaps_per_batch": identical,
        "batch_size": batch_size, "progress": (collapsed - final) / (collapsed - floor) if collapsed > floor else float("nan"),
    }  # fmt: skip
