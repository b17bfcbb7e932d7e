"""What the demos share: step announcements, the overrides each bundle run gets, training histories, the
stage-2 loss section, the end of the report, and the held-out stage-1 evaluation of the 2D settings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camcontrast_monai.report.localisation import localisation_summary, roc_auc
from camcontrast_monai.report.stage2 import stage2_loss_position

__all__ = [
    "StepAnnouncer",
    "demo_overrides",
    "finetune_result",
    "held_out_2d",
    "localisation",
    "overlay_picks",
    "read_history",
    "stage1_quality",
    "stage2_loss_section",
    "write_readme",
]

# the foreground threshold of background suppression (15 on 0..255), for the field of view of the scores
_FOREGROUND = 15 / 255


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


def stage2_loss_section(runs: Path, bundle: Path, epochs: int, batch_size: int) -> tuple[dict[str, Any], list[str]]:
    """Where a CAMContrast run's stage-2 loss ended between collapse and the floor its normal images impose,
    and the report section that says so; ``runs`` is the run's ``output_dir`` (``heatmaps/``, ``pretrain/``).

    The floor is for the pretraining set's share of normal images, whose heatmaps are suppressed to zeros
    (identical), at the bundle's temperature; see :func:`stage2_loss_position`.
    """
    pairs = json.loads((runs / "heatmaps/heatmap_datalist.json").read_text())
    normal_fraction = float(np.mean([int(entry["label"]) == 0 for entry in pairs]))
    losses = [value for _, value in read_history(runs / "pretrain/loss_history.json")["loss"]]
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


def finetune_result(run_dir: Path) -> tuple[float, dict[str, Any], list]:
    """A fine-tuning run's first test score, its ``test_metrics.json`` and its training-loss curve."""
    result = json.loads((run_dir / "test_metrics.json").read_text())
    return next(iter(result["metrics"].values())), result, read_history(run_dir / "loss_history.json").get("loss", [])


def overlay_picks(labels: torch.Tensor, per_class: int = 4) -> list[int]:
    """Indices of the first ``per_class`` abnormal and then normal images, as in the paper's Fig. 6."""
    return torch.nonzero(labels == 1).flatten()[:per_class].tolist() + torch.nonzero(labels == 0).flatten()[:per_class].tolist()


def held_out_2d(
    workflow: Any, heatmap_dir: Path, read_mask: Callable[[str], np.ndarray], multilabel: bool = False
) -> dict[str, torch.Tensor]:
    """Images, heatmaps, ground-truth masks (area-resized to the image, so tiny findings survive), labels,
    targets (multilabel) and stage-1 scores of a finished 2D stage-1 ``workflow``'s held-out pretraining images.

    ``read_mask(stem)`` reads an image's ground-truth mask at its file resolution.
    """
    from monai.transforms import Compose

    held_out = workflow.parser.get_parsed_content("pretrain_split")[1]
    load_image = Compose(workflow.parser.get_parsed_content("load_image"))
    classifier = workflow.parser.get_parsed_content("network").eval()
    paired = {Path(d["image"]).stem: d for d in json.loads((heatmap_dir / "heatmap_datalist.json").read_text())}
    images, heatmaps, masks = [], [], []
    for entry in held_out:
        stem = Path(entry["image"]).stem
        images.append(torch.as_tensor(load_image({"image": entry["image"]})["image"]).float())
        heatmaps.append(torch.from_numpy(np.load(paired[stem]["heatmap"]))[None])
        mask = torch.from_numpy(read_mask(stem)).float()[None, None]
        masks.append(torch.nn.functional.interpolate(mask, size=tuple(images[-1].shape[1:]), mode="area")[0, 0] > 0)
    images_t = torch.stack(images)
    with torch.no_grad():
        logits = classifier(images_t.to(next(classifier.parameters()).device)).cpu()
    shown = {
        "images": images_t,
        "heatmaps": torch.stack(heatmaps),
        "masks": torch.stack(masks),
        "labels": torch.tensor([int(entry["label"]) for entry in held_out]),
        "scores": torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)[:, 1],
    }
    if multilabel:
        shown["targets"] = torch.stack([torch.as_tensor(entry["targets"]) for entry in held_out])
    return shown


def localisation(shown: dict[str, torch.Tensor], which: torch.Tensor) -> dict[str, Any]:
    """Heatmap localisation of the images ``which`` against their masks, inside the field of view."""
    fov = shown["images"].mean(dim=1) > _FOREGROUND
    return localisation_summary(shown["heatmaps"][which], shown["masks"][which], fov[which])


def stage1_quality(shown: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Held-out stage-1 AUC and accuracy, and localisation of the abnormal images' heatmaps."""
    abnormal = shown["labels"] == 1
    return {
        "held_out_images": len(shown["labels"]),
        "held_out_abnormal": int(abnormal.sum()),
        "stage1_auc": roc_auc(shown["scores"], shown["labels"]),
        "stage1_accuracy": float(((shown["scores"] >= 0.5).long() == shown["labels"]).float().mean()),
        **localisation(shown, abnormal),
    }
