"""The 3D setting of ``camcontrast demo --bundle mri3d``: the paper's 3D experiment (section 4.7, Table 11) on
synthetic brain MRI.

Writes a synthetic ADNI-like cohort (CN / MCI / AD, NIfTI volumes of 80x96x80 in a Clinica layout); the
driver (:mod:`camcontrast_monai.apps.demo.driver`) runs stage 1 with a 3D ResNet -> 3D CAM heatmaps -> stage 2
on the 10 fixed sub-volumes -> frozen probes -> 3-way fine-tuning in k-fold cross-validation from random and
from CAMContrast initialisation, each fold's best model evaluated on the holdout set. This setting's report
sections: the cross-validation table in Table 11's layout (mean ± std over folds), and heatmap slices against
the ground-truth atrophy maps.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from monai.bundle import ConfigWorkflow
from monai.transforms import Compose

from camcontrast_monai.apps.demo.common import read_history
from camcontrast_monai.apps.demo.driver import BundleRun, DemoPlan, DemoRun, DemoSetting, ReportParts
from camcontrast_monai.report.crossval import summarize_crossval
from camcontrast_monai.report.figures import save_heatmap_overlays
from camcontrast_monai.report.localisation import roc_auc
from camcontrast_monai.report.tables import markdown_table
from camcontrast_monai.synthetic.mri import write_mri_dataset

__all__ = ["MRI_FULL", "MRI_QUICK", "SETTING", "MRI3DDemo", "MRIDemoPlan", "MRISizes"]

INITS = ("random", "camcontrast")


@dataclasses.dataclass(frozen=True)
class MRISizes(DemoPlan):
    """The sizes of a 3D chain (synthetic cohort -> stage 1 -> stage 2 -> fine-tuning in folds) that the demo and
    the comparison (``apps.compare.MRIComparePlan``) both set: the stage sizes every demo plan has, plus these."""

    n_subjects: int
    max_sessions: int
    resnet_depth: int
    n_folds: int
    finetune_epochs: int
    finetune_batch_size: int


@dataclasses.dataclass(frozen=True)
class MRIDemoPlan(MRISizes):
    """Reduced sizes for a 2-core CPU; the paper's settings are the bundle defaults.

    Volumes stay at the paper's 80x96x80. The encoder is a ResNet-10 of width 8 (default: ResNet-18,
    width 64); stage 2 runs a few epochs at lr 0.01 instead of 120 at 1e-3; fine-tuning uses one
    learning rate of the bundle's 5-value grid, 10^-1.5 = 0.0316, and 12 epochs instead of 100. The first
    plan's 5 epochs at lr 0.01 (25 SGD steps) left every classifier at the class priors; at 0.0316 the
    validation AUC of a random-init fold rose from 0.58 to 0.8 within about 12 epochs (measured on fold 1).

    Stage 2 trains 16 epochs (560 steps of 16 sub-volumes). Along one 30-epoch run on this cohort, a
    linear probe of the frozen encoder read CN/MCI/AD below the random encoder after the former 3 epochs
    (105 steps, 0.50 against 0.54), passed the random and the stage-1 encoder (0.58) from about 420 steps
    and read 0.69 at 560 (docs/results/stage2_schedule/mri3d). To pay for those steps within about 15
    minutes, fine-tuning runs 4 patient-level folds instead of the bundle's 5.
    """

    finetune_lr: float


MRI_FULL = MRIDemoPlan(
    n_subjects=48, max_sessions=2, width=8, resnet_depth=10, stage1_epochs=8, stage1_batch_size=8,
    pretrain_epochs=16, pretrain_batch_size=16, pretrain_lr=0.01, n_folds=4, finetune_epochs=12,
    finetune_batch_size=8, finetune_lr=10**-1.5,
)  # fmt: skip
MRI_QUICK = MRIDemoPlan(
    n_subjects=20, max_sessions=2, width=4, resnet_depth=10, stage1_epochs=2, stage1_batch_size=8,
    pretrain_epochs=1, pretrain_batch_size=16, pretrain_lr=0.01, n_folds=2, finetune_epochs=2,
    finetune_batch_size=8, finetune_lr=0.01,
)  # fmt: skip


class MRI3DDemo(DemoSetting):
    """3D brain MRI: CN vs MCI/AD pretraining, CN/MCI/AD fine-tuning in patient-level folds."""

    bundle_name = "camcontrast_mri3d"
    title = "CAMContrast 3D brain MRI demo report"
    full, quick = MRI_FULL, MRI_QUICK
    after_stage1 = {"check_pixels": False}
    stage1_what = "stage 1: 3D ResNet CAM classifier on CN vs MCI/AD"
    heatmaps_what = "heatmaps: abnormal-class 3D CAMs with background and negative suppression"
    pretrain_what = "stage 2: image/heatmap contrastive pretraining on the 10 fixed sub-volumes"

    def describe_data(self, plan: MRIDemoPlan) -> str:
        return f"synthetic brain MRI: {plan.n_subjects} subjects, up to {plan.max_sessions} sessions each"

    def write_data(self, data_dir: Path, plan: MRIDemoPlan, seed: int) -> dict[str, Any]:
        return write_mri_dataset(data_dir, n_subjects=plan.n_subjects, seed=seed, max_sessions=plan.max_sessions)

    def common_overrides(self, plan: MRIDemoPlan, seed: int) -> dict[str, Any]:
        return {"resnet_depth": plan.resnet_depth, "n_folds": plan.n_folds, "split_seed": seed}

    def pretraining_sizes(self, plan: MRIDemoPlan) -> dict[str, Any]:
        return {}  # volumes keep the bundle's 80x96x80

    def downstream_runs(self, plan: MRIDemoPlan) -> list[BundleRun]:
        return [
            BundleRun(
                f"fine-tune CN/MCI/AD, fold {fold + 1}/{plan.n_folds}, {init} initialisation", ("finetune_cls.json",),
                {"init": init, "fold": fold, "finetune_epochs": plan.finetune_epochs,
                 "finetune_batch_size": plan.finetune_batch_size, "finetune_lr": plan.finetune_lr},
            )
            for init in INITS for fold in range(plan.n_folds)
        ]  # fmt: skip

    def report_parts(self, run: DemoRun, report: Path) -> ReportParts:
        plan: MRIDemoPlan = run.plan  # type: ignore[assignment]
        quality, samples = _stage1_evaluation(run.out_dir, run.workflows["stage1"])
        figures = _heatmap_figures(samples, report)
        rows = summarize_crossval(run.runs / "finetune" / "adni_3way", report, n_folds=plan.n_folds)
        split_sizes = json.loads(next((run.runs / "finetune/adni_3way/random").glob("*/fold0/test_metrics.json")).read_text())
        cohort = run.manifest["subjects_per_diagnosis"]
        fold_curves = {
            init: read_history(run.runs / f"finetune/adni_3way/{init}/lr{plan.finetune_lr:g}/fold0/val_history.json").get("val_mean_auc", [])
            for init in INITS
        }  # fmt: skip
        return ReportParts(
            intro=[
                f"Synthetic T1-weighted brain MRI (80x96x80 voxels of 2 mm), seed {run.seed}, {run.seconds / 60:.1f} minutes. "
                f"Cohort: {run.manifest['n_subjects']} subjects ({cohort['CN']} CN, {cohort['MCI']} MCI, {cohort['AD']} AD), "
                f"{run.manifest['n_sessions']} sessions; holdout {split_sizes['n_holdout']} sessions, development set in "
                f"{plan.n_folds} patient-level folds ({split_sizes['n_train']} train / {split_sizes['n_val']} validation sessions in fold 1).",
                "",
                f"Reduced sizes (the paper's settings are the bundle defaults): 3D ResNet-{plan.resnet_depth} of width {plan.width} "
                f"(default ResNet-18, width 64), {plan.stage1_epochs} stage-1 epochs, {plan.pretrain_epochs} stage-2 epochs "
                f"(batch {plan.pretrain_batch_size}, lr {plan.pretrain_lr}; paper: 120 epochs, lr 1e-3), "
                f"{plan.finetune_epochs} fine-tuning epochs (paper: 100) at one learning rate, {plan.finetune_lr:.3g} "
                "(one value of the bundle's 5-value grid over [1e-3, 1e-1]; the search itself is left out), "
                f"{plan.n_folds} folds, one seed. The spread below is over folds only; with so few subjects and epochs "
                "a difference between initialisations is weak evidence either way.",
            ],
            sections=[
                "## Transfer to CN / MCI / AD (Table 11 layout)",
                "",
                (report / "crossval_table.md").read_text(),
                "## Stage 1 and heatmaps (stage-1 held-out development volumes)",
                "",
                markdown_table([{"quantity": key, "value": value} for key, value in quality.items()]),
                "`heatmap_atrophy_voxel_auc`: voxel ROC AUC of the trilinearly upsampled heatmap against the ground-truth "
                "atrophy map inside the head, averaged over the held-out MCI/AD volumes (0.5 = chance).",
                "",
                "Axial slices through the hippocampi (anterior up) and coronal slices through the ventricles (superior "
                "up), subject's right on the right: the heatmap over the image, the ground-truth atrophy outlined.",
                "",
                *(f"![{name}]({name})" for name in figures),
                "",
            ],
            metrics={
                "cohort": {k: run.manifest[k] for k in ("n_subjects", "n_sessions", "subjects_per_diagnosis")},
                "stage1_quality": quality, "crossval": rows,
            },  # fmt: skip
            curves={"fine-tune validation mean AUC (fold 1)": fold_curves},
        )


def _upsample(heatmap: np.ndarray, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(torch.from_numpy(heatmap)[None, None].float(), size=size, mode="trilinear", align_corners=False)[0, 0]


def _stage1_evaluation(out_dir: Path, stage1: ConfigWorkflow) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Held-out stage-1 AUC and voxel-level heatmap/atrophy agreement, plus the volumes the figure needs."""
    held_out = stage1.parser.get_parsed_content("pretrain_split")[1]
    load_image = Compose(stage1.parser.get_parsed_content("load_image"))
    classifier = stage1.parser.get_parsed_content("network").eval()
    paired = {d["id"]: d for d in json.loads((out_dir / "runs/heatmaps/heatmap_datalist.json").read_text())}
    device = next(classifier.parameters()).device
    samples, voxel_aucs = [], []
    for entry in held_out:
        image = torch.as_tensor(load_image({"image": entry["image"]})["image"]).float()
        with torch.no_grad():
            p_abnormal = float(torch.softmax(classifier(image[None].to(device)), dim=1)[0, 1])
        atrophy_file = out_dir / "data" / "atrophy" / f"{entry['id']}_atrophy.nii.gz"
        atrophy = torch.from_numpy(np.asarray(nib.load(atrophy_file).dataobj) > 0)
        heatmap = _upsample(np.load(paired[entry["id"]]["heatmap"]), tuple(image.shape[1:]))
        brain = image[0] > 15 / 255
        if entry["label"] == 1 and atrophy[brain].any():
            voxel_aucs.append(roc_auc(heatmap[brain], atrophy[brain]))
        samples.append({"entry": entry, "image": image[0], "heatmap": heatmap, "atrophy": atrophy, "p": p_abnormal})
    labels = torch.tensor([s["entry"]["label"] for s in samples])
    scores = torch.tensor([s["p"] for s in samples])
    quality = {
        "held_out_volumes": len(samples),
        "held_out_abnormal": int(labels.sum()),
        "stage1_auc": roc_auc(scores, labels),
        "stage1_accuracy": float(((scores >= 0.5).long() == labels).float().mean()),
        "heatmap_atrophy_voxel_auc": float(np.mean(voxel_aucs)) if voxel_aucs else float("nan"),
    }
    return quality, samples


def _slice(volume: torch.Tensor, view: str) -> torch.Tensor:
    """Axial slice through the hippocampi or coronal slice through the ventricles of a RAS volume,
    transposed and flipped so that anterior (axial) or superior (coronal) is up."""
    if view == "axial":
        cut = volume[:, :, int(0.36 * volume.shape[2])]
    else:
        cut = volume[:, volume.shape[1] // 2 + 1, :]
    return cut.T.flip(0)


def _heatmap_figures(samples: list[dict[str, Any]], report: Path) -> list[str]:
    """``heatmaps_axial.png`` and ``heatmaps_coronal.png`` of up to 3 MCI/AD volumes (AD first) and 1 CN volume."""
    abnormal = sorted((s for s in samples if s["entry"]["label"] == 1), key=lambda s: -s["entry"]["class_index"])[:3]
    shown = abnormal + [s for s in samples if s["entry"]["label"] == 0][:1]
    names = []
    for view in ("axial", "coronal"):
        save_heatmap_overlays(
            torch.stack([_slice(s["image"], view)[None] for s in shown]),
            torch.stack([_slice(s["heatmap"], view)[None] for s in shown]),
            report / f"heatmaps_{view}.png",
            titles=[f"{s['entry']['diagnosis']} {view}  p(abn)={s['p']:.2f}" for s in shown],
            lesion_masks=torch.stack([_slice(s["atrophy"], view) for s in shown]),
            ncols=2,
        )
        names.append(f"heatmaps_{view}.png")
    return names


SETTING = MRI3DDemo()
