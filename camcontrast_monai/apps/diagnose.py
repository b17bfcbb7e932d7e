"""``camcontrast diagnose``: what to look at when stage 2 does not learn on your data.

    camcontrast diagnose --bundle fundus --output_dir RUNS [--pretrain_epochs N --pretrain_batch_size B]

1. **Crop alignment**, always: the bundle's own stage-2 fixed crops and batched augmentation (its geometry;
   colour and intensity operations are left out, since they would rewrite the code), on position-coded
   images at the bundle's image and heatmap sizes (:mod:`camcontrast_monai.report.alignment`), 2D or 3D.
2. **The heatmaps** of a finished run (``RUNS/heatmaps/heatmap_datalist.json``): per class, how many are all
   zero (negative suppression empties every normal one; an abnormal one that is all zero is a CAM that found
   nothing) and their mean value.
3. **The stage-2 loss** of a finished run (``RUNS/pretrain/loss_history.json``) against the collapsed value
   log(2B - 1) and the floor that the identical all-zero normal heatmaps impose
   (:func:`~camcontrast_monai.report.stage2.stage2_loss_position`). Pass the run's own epochs and batch size
   where they differ from the bundle's defaults.

Crop-level probes of lesion presence need ground-truth lesion masks: ``camcontrast bench compare`` runs them
on the synthetic fundus data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from camcontrast_monai.apps.bundle import bundle_item, bundle_path

__all__ = ["format_diagnosis", "run_diagnose"]

PRETRAIN = ("common.json", "pretrain.json")


def _shapes(bundle: Path, overrides: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The bundle's stage-2 image and heatmap shapes: a 3D bundle's volume and heatmap sizes, else a 2D image
    of ``image_size`` and its feature map."""
    try:
        return [bundle_item(key, PRETRAIN, bundle, compose=False, **overrides) for key in ("volume_size", "heatmap_size")]
    except KeyError:
        from camcontrast_monai.transforms import HEATMAP_STRIDE_2D

        size = int(bundle_item("image_size", PRETRAIN, bundle, **overrides))
        return [size, size], [size // HEATMAP_STRIDE_2D] * 2


def alignment_section(bundle: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Crop alignment through the bundle's fixed crops and batched augmentation (geometry only)."""
    from camcontrast_monai.report.alignment import check_crop_alignment

    image_shape, heatmap_shape = _shapes(bundle, overrides)
    augmentation = bundle_item("train#batch_augmentation", PRETRAIN, bundle, **{**overrides, "batched_augmentation": True})
    result = check_crop_alignment(augmentation.geometry_only(), image_shape, heatmap_shape)
    return {"image_shape": image_shape, "heatmap_shape": heatmap_shape, "augmentation": type(augmentation).__name__, **result}


def heatmap_section(datalist: Path) -> dict[str, Any]:
    """Per class of a heatmap datalist: how many heatmaps, how many all zero, and their mean value."""
    entries = json.loads(datalist.read_text())
    by_class: dict[str, list[np.ndarray]] = {}
    for entry in entries:
        abnormal = bool(np.any(np.asarray(entry["label"]) > 0))
        by_class.setdefault("abnormal" if abnormal else "normal", []).append(np.load(entry["heatmap"]))
    return {
        name: {
            "heatmaps": len(maps), "all_zero": int(sum(not np.any(m) for m in maps)),
            "mean_value": float(np.mean([m.mean() for m in maps])),
        }  # fmt: skip
        for name, maps in sorted(by_class.items())
    }


def loss_section(output_dir: Path, bundle: Path, overrides: dict[str, Any], normal_fraction: float) -> dict[str, Any]:
    """The run's last-epoch stage-2 loss between collapse and the floor of its normal share."""
    from camcontrast_monai.apps.demo.common import read_history
    from camcontrast_monai.report.stage2 import stage2_loss_position

    losses = [value for _, value in read_history(output_dir / "pretrain" / "loss_history.json")["loss"]]
    epochs, batch_size, temperature = (
        bundle_item(key, PRETRAIN, bundle, **overrides) for key in ("pretrain_epochs", "pretrain_batch_size", "temperature")
    )
    return stage2_loss_position(losses, int(epochs), int(batch_size), normal_fraction, float(temperature))


def run_diagnose(bundle: str = "fundus", output_dir: str | None = None, verbose: bool = True, **overrides: Any) -> dict[str, Any]:
    """Crop alignment of the bundle's stage 2, and the heatmaps and stage-2 loss of a finished run.

    Args:
        bundle: fundus, cxr or mri3d (a shipped bundle's name) or a bundle folder.
        output_dir: a finished run's ``output_dir`` (with ``heatmaps/`` and ``pretrain/``); without it only the
            alignment check runs.
        verbose: print the diagnosis.
        overrides: bundle config values the run used (``pretrain_epochs``, ``pretrain_batch_size``,
            ``image_size``, ...).
    """
    root = Path(bundle) if Path(bundle).is_dir() else bundle_path(bundle if bundle.startswith("camcontrast_") else f"camcontrast_{bundle}")
    diagnosis: dict[str, Any] = {"bundle": str(root), "alignment": alignment_section(root, overrides)}
    if output_dir is not None:
        runs = Path(output_dir)
        datalist = runs / "heatmaps" / "heatmap_datalist.json"
        if datalist.is_file():
            diagnosis["heatmaps"] = heatmap_section(datalist)
        if (runs / "pretrain" / "loss_history.json").is_file() and "heatmaps" in diagnosis:
            counts = {name: row["heatmaps"] for name, row in diagnosis["heatmaps"].items()}
            normal_fraction = counts.get("normal", 0) / sum(counts.values())
            diagnosis["stage2_loss"] = loss_section(runs, root, overrides, normal_fraction)
    if verbose:
        print(format_diagnosis(diagnosis))
    return diagnosis


def format_diagnosis(diagnosis: dict[str, Any]) -> str:
    """The diagnosis as plain text, one verdict per check."""
    a = diagnosis["alignment"]
    verdict = "every crop lines up" if not a["problems"] else f"{len(a['problems'])} PROBLEMS"
    lines = [
        f"crop alignment ({a['augmentation']}, geometry only; image {a['image_shape']}, heatmap {a['heatmap_shape']}): "
        f"{verdict} in {a['crops']} crops; {a['image_pixel_fraction']:.0%} of augmented pixels from the image",
        *[f"  {problem}" for problem in a["problems"][:10]],
    ]
    for name, row in diagnosis.get("heatmaps", {}).items():
        lines.append(f"heatmaps, {name}: {row['heatmaps']}, all zero {row['all_zero']}, mean value {row['mean_value']:.3f}")
    heatmaps = diagnosis.get("heatmaps", {})
    if heatmaps.get("abnormal", {}).get("all_zero"):
        lines.append("  some abnormal images have all-zero heatmaps: their CAM found nothing (check stage 1's validation AUC)")
    if heatmaps.get("normal") and heatmaps["normal"]["all_zero"] < heatmaps["normal"]["heatmaps"]:
        lines.append("  some normal images have non-zero heatmaps: negative suppression is off")
    if "stage2_loss" in diagnosis:
        s = diagnosis["stage2_loss"]
        lines.append(
            f"stage-2 loss: last epoch {s['final_epoch_loss']:.2f}; collapsed {s['collapsed']:.2f}, floor {s['floor']:.2f} "
            f"(batch {s['batch_size']}, {s['identical_heatmaps_per_batch']} identical normal heatmaps): "
            + (f"{s['progress']:.0%} of the way from collapse to the floor" if s["progress"] > 0 else
               "NOT below the collapsed value: stage 2 needs more steps or a higher learning rate")
        )  # fmt: skip
    return "\n".join(lines)
