"""The chest X-ray setting of ``camcontrast demo --bundle cxr``: CAMContrast on synthetic chest radiographs,
through the chest X-ray bundle.

Generates a ChestX-ray14-like set (PNG, ``Data_Entry_2017.csv``, official-style split lists) and a
SIIM-ACR-like set (DICOM, run-length ``train-rle.csv``); the driver (:mod:`camcontrast_monai.apps.demo.driver`)
runs stage 1 on the coarse labels -> heatmaps -> stage 2 -> frozen probes -> 14-label linear evaluation and
pneumothorax segmentation, each from a random and from the CAMContrast encoder, then a short multilabel
stage 1 (section 4.6) for its heatmaps. This setting's report sections: stage-1 and heatmap quality for both
stage 1s, heatmap overlays, downstream scores and per-class AUC.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from camcontrast_monai.apps.demo.common import (
    finetune_result,
    held_out_2d,
    localisation,
    overlay_picks,
    stage1_quality,
)
from camcontrast_monai.apps.demo.driver import BundleRun, DemoPlan, DemoRun, DemoSetting, ReportParts
from camcontrast_monai.data.cxr_readers import CHESTXRAY14_LABELS
from camcontrast_monai.report.figures import save_bar_chart, save_heatmap_overlays
from camcontrast_monai.report.localisation import roc_auc
from camcontrast_monai.report.tables import markdown_table
from camcontrast_monai.synthetic.cxr import CXR_FINDINGS, write_chestxray14_dataset, write_siim_dataset

__all__ = ["FULL_CXR", "QUICK_CXR", "SETTING", "CXRDemo", "CXRDemoPlan", "CXRSizes"]

INITS = ("random", "camcontrast")
LINEAR_METRIC = "mean AUC-ROC (14 labels, linear evaluation)"
SEG_METRIC = "F1 (Dice over all test pixels)"


@dataclasses.dataclass(frozen=True)
class CXRSizes(DemoPlan):
    """The sizes of a chest X-ray chain that the demo and the comparison (``apps.compare.CXRComparePlan``) both
    set: the stage sizes every demo plan has, plus these (``seg_epochs``: pneumothorax's at 100 % of the labels).

    The linear head (frozen encoder, standardised pooled features) trains ``linear_epochs`` with weight decay
    ``linear_weight_decay``. Measured offline on the comparison's data (random width-16 encoders, 96 px, 256
    augmented training images, 3 seeds, best epoch on validation; test mean AUC against 0.729 ± 0.021 for a
    logistic-regression probe of the same clean features): the former lr 0.1, 15 epochs, no decay 0.527 ± 0.038,
    below the trivial 0.5 on some seeds; weight decay 0.01 was the best of 0.01-0.1 at every lr of 0.3-10
    and 30-120 epochs, and lr 1.0 for 30 epochs reached 0.712 ± 0.017 (lr 0.3 for 60: 0.706 ± 0.029).
    """

    n_chestxray14: int
    n_siim: int
    image_size: int
    downstream_size: int
    linear_epochs: int
    linear_weight_decay: float
    seg_epochs: int


@dataclasses.dataclass(frozen=True)
class CXRDemoPlan(CXRSizes):
    """Reduced sizes for a 2-core CPU; the paper's sizes are the bundle configs' defaults.

    Stage 2 uses batch 40 and lr 3e-3 instead of 120 and 1e-3 for the reason given in
    :class:`camcontrast_monai.apps.demo.fundus.FundusDemoPlan` (a few hundred steps instead of 72k). The linear head
    learns at 1.0 with weight decay 0.01 for 30 epochs (see :class:`CXRSizes`), above the paper's grid (Table A.1),
    since it gets ~200 steps instead of 60 epochs of 69k images. Pneumothorax segmentation learns at 0.03 (Table A.1's SIIM-ACR grid); at the bundle's
    0.01 and the first plan's 10 epochs every run predicted background only (F1 0). ``seg_epochs`` is the
    schedule at 100% of the labels; a fraction f trains ``seg_epochs / f`` epochs, validating every ``1 / f``,
    so every fraction gets the same number of steps and validations (at 25% and 30 epochs it learned nothing).

    Stage 2 trains 30 epochs (1200 steps of 40 crops). Along one 40-epoch run on this data, a linear probe
    of the frozen encoder read the 14 findings at random-encoder level after the former 5 epochs (200 steps,
    0.65), 0.76 after 1000-1200 steps and 0.79 after 1600, against 0.65 for a random and 0.83 for the stage-1
    encoder (docs/results/stage2_schedule/cxr). To pay for those steps within about 15 minutes,
    pneumothorax segmentation runs at 25% of the labels only, the few-label regime pretraining is for.
    """

    multilabel_epochs: int
    linear_lr: float
    seg_lr: float
    linear_fractions: tuple[float, ...]
    seg_fractions: tuple[float, ...]


FULL_CXR = CXRDemoPlan(
    n_chestxray14=400, n_siim=100, image_size=128, width=16, stage1_epochs=8, stage1_batch_size=32, multilabel_epochs=6,
    pretrain_epochs=30, pretrain_batch_size=40, pretrain_lr=0.003, downstream_size=96, linear_epochs=30, linear_lr=1.0,
    linear_weight_decay=0.01, seg_epochs=30, seg_lr=0.03, linear_fractions=(0.25, 1.0), seg_fractions=(0.25,),
)  # fmt: skip
QUICK_CXR = CXRDemoPlan(
    n_chestxray14=80, n_siim=30, image_size=64, width=8, stage1_epochs=2, stage1_batch_size=32, multilabel_epochs=1,
    pretrain_epochs=1, pretrain_batch_size=40, pretrain_lr=0.003, downstream_size=64, linear_epochs=2, linear_lr=1.0,
    linear_weight_decay=0.01, seg_epochs=2, seg_lr=0.03, linear_fractions=(1.0,), seg_fractions=(1.0,),
)  # fmt: skip


class CXRDemo(DemoSetting):
    """Chest radiographs: ChestX-ray14-like pretraining and linear evaluation, SIIM-ACR-like pneumothorax."""

    bundle_name = "camcontrast_cxr"
    title = "CAMContrast chest X-ray demo report"
    full, quick = FULL_CXR, QUICK_CXR
    stage1_validation_label = "AUC"
    stage1_what = "stage 1: CAM classifier on coarse labels (No Finding vs any finding)"

    def describe_data(self, plan: CXRDemoPlan) -> str:
        return f"synthetic data: {plan.n_chestxray14} ChestX-ray14-like PNGs + {plan.n_siim} SIIM-ACR-like DICOMs"

    def write_data(self, data_dir: Path, plan: CXRDemoPlan, seed: int) -> dict[str, Any]:
        write_chestxray14_dataset(data_dir / "chestxray14", n=plan.n_chestxray14, seed=seed, image_size=plan.image_size * 2)
        write_siim_dataset(data_dir / "siim", n=plan.n_siim, seed=seed + 1000, image_size=plan.image_size * 2)
        return {}

    def probe_overrides(self, plan: CXRDemoPlan) -> dict[str, Any]:
        return {"image_size": plan.downstream_size}

    def downstream_runs(self, plan: CXRDemoPlan) -> list[BundleRun]:
        linear = [
            BundleRun(
                f"linear evaluation, 14 labels, {fraction:.0%} of the labels, {init} encoder", ("finetune_cls.json",),
                {"init": init, "label_fraction": fraction, "image_size": plan.downstream_size, "crop_size": plan.downstream_size,
                 "finetune_epochs": plan.linear_epochs, "finetune_lr": plan.linear_lr,
                 "finetune_weight_decay": plan.linear_weight_decay},
            )
            for fraction in plan.linear_fractions for init in INITS
        ]  # fmt: skip
        # no DataLoader workers for segmentation: starting them every one of ~100 short epochs cost more (170 s vs
        # 108 s per run at 25%) than the flip + rotation of 96-px images they would take over
        segmentation = [
            BundleRun(
                f"pneumothorax segmentation, {fraction:.0%} of the labels, {init} encoder", ("finetune_seg.json",),
                {"num_workers": 0, "init": init, "label_fraction": fraction, "image_size": plan.downstream_size,
                 "finetune_epochs": round(plan.seg_epochs / fraction), "val_interval": round(1 / fraction),
                 "finetune_lr": plan.seg_lr},
            )
            for fraction in plan.seg_fractions for init in INITS
        ]  # fmt: skip
        multilabel = {"multilabel": True, "image_size": plan.image_size}
        return [
            *linear,
            *segmentation,
            BundleRun(
                "multilabel stage 1 (section 4.6)", ("stage1.json",), {**multilabel, "stage1_epochs": plan.multilabel_epochs},
                name="multilabel_stage1", output_subdir="multilabel",
            ),
            BundleRun(
                "multilabel heatmaps: the average of the positive classes' CAMs", ("heatmaps.json",), multilabel, None,
                output_subdir="multilabel",
            ),
        ]

    def report_parts(self, run: DemoRun, report: Path) -> ReportParts:
        plan: CXRDemoPlan = run.plan  # type: ignore[assignment]
        masks = run.out_dir / "data" / "chestxray14" / "masks"

        def read_mask(stem: str) -> np.ndarray:
            return np.asarray(Image.open(masks / f"{stem}.png")) > 0

        binary = held_out_2d(run.workflows["stage1"], run.runs / "heatmaps", read_mask)
        quality = stage1_quality(binary)
        multi = held_out_2d(run.workflows["multilabel_stage1"], run.runs / "multilabel" / "heatmaps", read_mask, multilabel=True)
        classes = run.workflows["multilabel_stage1"].parser.get_parsed_content("stage1_classes")
        multilabel_quality = {
            **{f"auc_{name}": roc_auc(multi["scores"][:, k], multi["targets"][:, k].long()) for k, name in enumerate(classes)},
            **localisation(multi, multi["targets"].sum(dim=1) > 0),
        }
        _overlays(binary, report / "heatmaps.png", lambda i: f"p(abnormal)={binary['scores'][i]:.2f}")
        _overlays(
            multi, report / "heatmaps_multilabel.png",
            lambda i: ",".join(c[:5] for c, t in zip(classes, multi["targets"][i], strict=True) if t) or "none of the 5",
        )  # fmt: skip
        rows, bars, per_class, curves = _downstream(run, plan)
        per_class_rows = [
            {"label": name, **{init: per_class[init][name] for init in INITS}}
            for name in CHESTXRAY14_LABELS if not any(per_class[init][name] is None for init in INITS)
        ]  # fmt: skip
        save_bar_chart(
            {row["label"]: {init: row[init] for init in INITS} for row in per_class_rows}, report / "per_class_auc.png",
            f"linear evaluation: test AUC-ROC per label ({max(plan.linear_fractions):.0%} of the labels)", ylabel="AUC-ROC",
        )  # fmt: skip
        save_bar_chart(bars, report / "downstream.png", f"downstream test scores (seed {run.seed}, one run each)")
        absent = [name for name in CHESTXRAY14_LABELS if name not in CXR_FINDINGS]
        return ReportParts(
            intro=_intro(run, plan),
            probe_notes=[
                f"The synthetic set draws {len(CXR_FINDINGS)} of the 14 labels ({', '.join(CXR_FINDINGS)}); "
                f"{', '.join(absent)} never occur, so they have no AUC and are left out of the mean.",
                "",
            ],
            sections=[
                "## Stage 1 (coarse labels) and heatmap quality, held-out pretraining images",
                "",
                markdown_table([{"quantity": k, "value": v} for k, v in quality.items()]),
                "`pointing_game`: fraction of abnormal images whose heatmap maximum lies on a finding mask; "
                "`heatmap_mask_auc`: pixel ROC AUC of the upsampled heatmap against the finding masks inside the body.",
                "",
                "![heatmaps](heatmaps.png)",
                "",
                f"## Multilabel stage 1 (section 4.6: {', '.join(classes)})",
                "",
                "The heatmap of an image is the average of the min-max normalised CAMs of its positive classes; "
                "localisation below is over the held-out images with at least one of the five.",
                "",
                markdown_table([{"quantity": k, "value": v} for k, v in multilabel_quality.items()]),
                "![multilabel heatmaps](heatmaps_multilabel.png)",
                "",
                "## Downstream (test split)",
                "",
                markdown_table(rows),
                "![downstream](downstream.png)",
                "",
                f"### Per-label test AUC-ROC, linear evaluation at {max(plan.linear_fractions):.0%} of the labels (cf. Table B.2)",
                "",
                markdown_table(per_class_rows),
                "![per-class AUC](per_class_auc.png)",
                "",
            ],
            metrics={
                "stage1_quality": quality, "multilabel_stage1_quality": multilabel_quality, "downstream": rows,
                "per_class_auc": per_class_rows,
            },  # fmt: skip
            curves=curves,
        )


def _intro(run: DemoRun, plan: CXRDemoPlan) -> list[str]:
    """The report's opening paragraph: the sizes of this run."""
    return [
        f"Synthetic chest radiographs, seed {run.seed}, {run.seconds / 60:.1f} minutes. Sizes: {plan.n_chestxray14} "
        f"ChestX-ray14-like images at {plan.image_size} px for pretraining (encoder width {plan.width}; the paper's "
        f"is 64), {plan.stage1_epochs} stage-1 epochs, {plan.pretrain_epochs} stage-2 epochs (batch "
        f"{plan.pretrain_batch_size}, lr {plan.pretrain_lr}); downstream at {plan.downstream_size} px: linear "
        f"evaluation {plan.linear_epochs} epochs on the same set's official-style split, pneumothorax segmentation "
        f"on {plan.n_siim} SIIM-ACR-like DICOMs at lr {plan.seg_lr} with "
        f"{', '.join(f'{f:.0%} of the labels for {round(plan.seg_epochs / f)} epochs' for f in plan.seg_fractions)} "
        f"(the steps of {plan.seg_epochs} epochs at 100%).",
        "Each number comes from one run (one seed): small differences between initialisations are not evidence "
        "for or against the method.",
    ]


def _overlays(shown: dict[str, torch.Tensor], path: Path, score_text) -> None:
    """Four abnormal and four normal held-out images with their heatmaps and finding masks."""
    picks = overlay_picks(shown["labels"])
    save_heatmap_overlays(
        shown["images"][picks], shown["heatmaps"][picks], path, ncols=2, lesion_masks=shown["masks"][picks],
        titles=[f"{'abnormal' if shown['labels'][i] else 'normal'}  {score_text(i)}" for i in picks],
    )  # fmt: skip


def _downstream(run: DemoRun, plan: CXRDemoPlan) -> tuple[list, dict, dict, dict]:
    """Rows, bar groups, per-class AUC (linear evaluation at the largest fraction) and loss curves of the
    downstream runs."""
    rows, bars, per_class, curves = [], {}, {}, {}
    for task, metric, fractions in (
        ("chestxray14", LINEAR_METRIC, plan.linear_fractions),
        ("pneumothorax", SEG_METRIC, plan.seg_fractions),
    ):
        for fraction in fractions:
            group = bars.setdefault(f"{task} {fraction:.0%}", {})
            for init in INITS:
                score, result, loss = finetune_result(run.runs / "finetune" / task / f"{init}_fraction{fraction}_seed{run.seed}")
                rows.append({"task": task, "metric": metric, "labels used": f"{fraction:.0%}", "init": init, "test score": score,
                             "train images": result["n_train"], "test images": result["n_test"]})  # fmt: skip
                group[init] = score
                curves.setdefault(f"{task} {fraction:.0%} loss", {})[init] = loss
                if task == "chestxray14" and fraction == max(fractions):
                    per_class[init] = dict(zip(result["classes"], result["per_class"], strict=True))
    return rows, bars, per_class, curves


SETTING = CXRDemo()
