"""``camcontrast demo --bundle cxr``: CAMContrast on synthetic chest radiographs, through the chest X-ray bundle.

Generates a ChestX-ray14-like set (PNG, ``Data_Entry_2017.csv``, official-style split lists) and a
SIIM-ACR-like set (DICOM, run-length ``train-rle.csv``), runs the bundle's configs in this process
(stage 1 on the coarse labels -> heatmaps -> stage 2 -> 14-label linear evaluation and pneumothorax
segmentation, each from a random and from the CAMContrast encoder at two label fractions), then a
short multilabel stage 1 (section 4.6) for its heatmaps, and writes a report folder: README.md,
metrics.json, heatmap overlays, per-class AUC, downstream scores and training curves.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigWorkflow
from monai.transforms import Compose
from PIL import Image

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.apps.demo.common import (
    StepAnnouncer,
    demo_overrides,
    read_history,
    stage2_loss_section,
    write_readme,
)
from camcontrast_monai.apps.probe import (
    PROBE_BASELINES,
    probe_demo_encoders,
    write_probe_section,
)
from camcontrast_monai.data.cxr_readers import CHESTXRAY14_LABELS
from camcontrast_monai.report.figures import save_bar_chart, save_curves, save_heatmap_overlays
from camcontrast_monai.report.localisation import localisation_summary, roc_auc
from camcontrast_monai.report.tables import markdown_table, write_json
from camcontrast_monai.synthetic.cxr import CXR_FINDINGS, write_chestxray14_dataset, write_siim_dataset

__all__ = ["CXRDemoPlan", "FULL_CXR", "QUICK_CXR", "run_cxr_demo"]

BUNDLE_NAME = "camcontrast_cxr"
INITS = ("random", "camcontrast")


@dataclasses.dataclass(frozen=True)
class CXRDemoPlan:
    """Reduced sizes for a 2-core CPU; the paper's sizes are the bundle configs' defaults.

    Stage 2 uses batch 40 and lr 3e-3 instead of 120 and 1e-3 for the reason given in
    :class:`camcontrast_monai.apps.demo.fundus.DemoPlan` (a few hundred steps instead of 72k). The linear head
    learns at 0.1, the top of the paper's grid (Table A.1), since it gets ~100 steps instead of 60 epochs
    of 69k images. Pneumothorax segmentation learns at 0.03 (Table A.1's SIIM-ACR grid); at the bundle's
    0.01 and the first plan's 10 epochs every run predicted background only (F1 0). ``seg_epochs`` is the
    schedule at 100% of the labels; a fraction f trains ``seg_epochs / f`` epochs, validating every ``1 / f``,
    so every fraction gets the same number of steps and validations (at 25% and 30 epochs it learned nothing).

    Stage 2 trains 30 epochs (1200 steps of 40 crops). Along one 40-epoch run on this data, a linear probe
    of the frozen encoder read the 14 findings at random-encoder level after the former 5 epochs (200 steps,
    0.65), 0.76 after 1000-1200 steps and 0.79 after 1600, against 0.65 for a random and 0.83 for the stage-1
    encoder (docs/results/stage2_schedule/cxr). To pay for those steps within about 15 minutes,
    pneumothorax segmentation runs at 25% of the labels only, the few-label regime pretraining is for.
    """

    n_chestxray14: int
    n_siim: int
    image_size: int
    width: int
    stage1_epochs: int
    multilabel_epochs: int
    pretrain_epochs: int
    pretrain_batch_size: int
    pretrain_lr: float
    downstream_size: int
    linear_epochs: int
    linear_lr: float
    seg_epochs: int
    seg_lr: float
    linear_fractions: tuple[float, ...]
    seg_fractions: tuple[float, ...]


FULL_CXR = CXRDemoPlan(
    n_chestxray14=400, n_siim=100, image_size=128, width=16, stage1_epochs=8, multilabel_epochs=6,
    pretrain_epochs=30, pretrain_batch_size=40, pretrain_lr=0.003, downstream_size=96, linear_epochs=15, linear_lr=0.1,
    seg_epochs=30, seg_lr=0.03, linear_fractions=(0.25, 1.0), seg_fractions=(0.25,),
)  # fmt: skip
QUICK_CXR = CXRDemoPlan(
    n_chestxray14=80, n_siim=30, image_size=64, width=8, stage1_epochs=2, multilabel_epochs=1,
    pretrain_epochs=1, pretrain_batch_size=40, pretrain_lr=0.003, downstream_size=64, linear_epochs=2, linear_lr=0.1,
    seg_epochs=2, seg_lr=0.03, linear_fractions=(1.0,), seg_fractions=(1.0,),
)  # fmt: skip


def run_cxr_demo(out: str = "demo_cxr_output", quick: bool = False, seed: int = 0, num_workers: int = 2) -> Path:
    """Run the chest X-ray chain at demo sizes and return the report folder."""
    plan = QUICK_CXR if quick else FULL_CXR
    out_dir = Path(out).resolve()
    bundle = bundle_path(BUNDLE_NAME)
    data_dir, runs_dir = out_dir / "data", out_dir / "runs"
    announce = StepAnnouncer(steps=7 + 2 * (len(plan.linear_fractions) + len(plan.seg_fractions)))

    announce(f"synthetic data: {plan.n_chestxray14} ChestX-ray14-like PNGs + {plan.n_siim} SIIM-ACR-like DICOMs")
    write_chestxray14_dataset(data_dir / "chestxray14", n=plan.n_chestxray14, seed=seed, image_size=plan.image_size * 2)
    write_siim_dataset(data_dir / "siim", n=plan.n_siim, seed=seed + 1000, image_size=plan.image_size * 2)
    common = demo_overrides(bundle, out_dir, plan.width, seed, num_workers)
    announce("stage 1: CAM classifier on coarse labels (No Finding vs any finding)")
    stage1 = run_bundle(
        bundle, ["common.json", "stage1.json"], "train", **common, image_size=plan.image_size,
        stage1_epochs=plan.stage1_epochs,
    )  # fmt: skip
    announce("heatmaps: abnormal-class CAMs with background and negative suppression")
    run_bundle(bundle, ["common.json", "heatmaps.json"], **common, image_size=plan.image_size)
    announce("stage 2: image/heatmap contrastive pretraining on fixed crops")
    run_bundle(
        bundle, ["common.json", "pretrain.json"], "train", **common, image_size=plan.image_size,
        pretrain_epochs=plan.pretrain_epochs, pretrain_batch_size=plan.pretrain_batch_size, pretrain_lr=plan.pretrain_lr,
    )  # fmt: skip
    announce("frozen-feature probes of the random, stage-1 and CAMContrast encoders")
    probe_demo_encoders(bundle, out_dir, {**common, "image_size": plan.downstream_size}, seed)
    for fraction in plan.linear_fractions:
        for init in INITS:
            announce(f"linear evaluation, 14 labels, {fraction:.0%} of the labels, {init} encoder")
            run_bundle(
                bundle, ["common.json", "finetune_cls.json"], "train", **common, init=init, label_fraction=fraction,
                image_size=plan.downstream_size, crop_size=plan.downstream_size, finetune_epochs=plan.linear_epochs,
                finetune_lr=plan.linear_lr,
            )  # fmt: skip
    for fraction in plan.seg_fractions:
        for init in INITS:
            announce(f"pneumothorax segmentation, {fraction:.0%} of the labels, {init} encoder")
            # no DataLoader workers: starting them every one of ~100 short epochs cost more (170 s vs 108 s
            # per run at 25%) than the flip + rotation of 96-px images they would take over
            run_bundle(
                bundle, ["common.json", "finetune_seg.json"], "train", **{**common, "num_workers": 0}, init=init,
                label_fraction=fraction, image_size=plan.downstream_size, finetune_epochs=round(plan.seg_epochs / fraction),
                val_interval=round(1 / fraction), finetune_lr=plan.seg_lr,
            )  # fmt: skip
    announce("multilabel stage 1 (section 4.6) and its positive-class heatmaps")
    multilabel = {**common, "output_dir": str(runs_dir / "multilabel"), "multilabel": True, "image_size": plan.image_size}
    multilabel_stage1 = run_bundle(bundle, ["common.json", "stage1.json"], "train", **multilabel, stage1_epochs=plan.multilabel_epochs)
    run_bundle(bundle, ["common.json", "heatmaps.json"], **multilabel)
    announce("report")
    report = write_cxr_report(out_dir, stage1, multilabel_stage1, plan, seed, announce.elapsed())
    print(f"report written to {report / 'README.md'}", flush=True)
    return report


def _held_out(out_dir: Path, workflow: ConfigWorkflow, heatmap_dir: Path, size: int, multilabel: bool) -> dict[str, Any]:
    """Images, heatmaps, finding masks, labels and stage-1 scores of the held-out pretraining images."""
    held_out = workflow.parser.get_parsed_content("pretrain_split")[1]
    load_image = Compose(workflow.parser.get_parsed_content("load_image"))
    classifier = workflow.parser.get_parsed_content("network").eval()
    paired = {Path(d["image"]).stem: d for d in json.loads((heatmap_dir / "heatmap_datalist.json").read_text())}
    images, heatmaps, masks = [], [], []
    for entry in held_out:
        stem = Path(entry["image"]).stem
        images.append(torch.as_tensor(load_image({"image": entry["image"]})["image"]).float())
        heatmaps.append(torch.from_numpy(np.load(paired[stem]["heatmap"]))[None])
        mask = np.asarray(Image.open(out_dir / "data/chestxray14/masks" / f"{stem}.png")) > 0
        masks.append(torch.nn.functional.interpolate(torch.from_numpy(mask).float()[None, None], size=(size, size), mode="area")[0, 0] > 0)
    images_t = torch.stack(images)
    with torch.no_grad():
        logits = classifier(images_t.to(next(classifier.parameters()).device)).cpu()
    return {
        "images": images_t,
        "heatmaps": torch.stack(heatmaps),
        "masks": torch.stack(masks),
        "labels": torch.tensor([int(entry["label"]) for entry in held_out]),
        "targets": torch.stack([torch.as_tensor(entry["targets"]) for entry in held_out]),
        "scores": torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)[:, 1],
    }


def _localisation(shown: dict[str, Any], which: torch.Tensor) -> dict[str, Any]:
    fov = shown["images"][:, 0] > 15 / 255
    return localisation_summary(shown["heatmaps"][which], shown["masks"][which], fov[which])


def write_cxr_report(
    out_dir: Path, stage1: ConfigWorkflow, multilabel_stage1: ConfigWorkflow, plan: CXRDemoPlan, seed: int, seconds: float
) -> Path:
    """Write ``report/``: README.md, metrics.json, heatmaps.png, heatmaps_multilabel.png, per_class_auc.png,
    downstream.png, curves.png."""
    report, runs = out_dir / "report", out_dir / "runs"
    binary = _held_out(out_dir, stage1, runs / "heatmaps", plan.image_size, multilabel=False)
    abnormal = binary["labels"] == 1
    quality = {
        "held_out_images": len(binary["labels"]),
        "held_out_abnormal": int(abnormal.sum()),
        "stage1_auc": roc_auc(binary["scores"], binary["labels"]),
        "stage1_accuracy": float(((binary["scores"] >= 0.5).long() == binary["labels"]).float().mean()),
        **_localisation(binary, abnormal),
    }
    multi = _held_out(out_dir, multilabel_stage1, runs / "multilabel" / "heatmaps", plan.image_size, multilabel=True)
    classes = multilabel_stage1.parser.get_parsed_content("stage1_classes")
    positive = multi["targets"].sum(dim=1) > 0
    multilabel_quality = {
        **{f"auc_{name}": roc_auc(multi["scores"][:, k], multi["targets"][:, k].long()) for k, name in enumerate(classes)},
        **_localisation(multi, positive),
    }

    for shown, name, score_text in (
        (binary, "heatmaps.png", lambda i: f"p(abnormal)={binary['scores'][i]:.2f}"),
        (multi, "heatmaps_multilabel.png", lambda i: ",".join(c[:5] for c, t in zip(classes, multi["targets"][i], strict=True) if t) or "none of the 5"),
    ):
        picks = torch.nonzero(shown["labels"] == 1).flatten()[:4].tolist() + torch.nonzero(shown["labels"] == 0).flatten()[:4].tolist()
        save_heatmap_overlays(
            shown["images"][picks], shown["heatmaps"][picks], report / name, ncols=2, lesion_masks=shown["masks"][picks],
            titles=[f"{'abnormal' if shown['labels'][i] else 'normal'}  {score_text(i)}" for i in picks],
        )  # fmt: skip

    rows, bars, per_class, curves = [], {}, {}, {
        "stage 1 loss": read_history(runs / "stage1/loss_history.json"),
        "stage 1 validation AUC": read_history(runs / "stage1/val_history.json"),
        "stage 2 NT-Xent": read_history(runs / "pretrain/loss_history.json"),
    }
    for task, metric, fractions in (
        ("chestxray14", "mean AUC-ROC (14 labels, linear evaluation)", plan.linear_fractions),
        ("pneumothorax", "F1 (Dice over all test pixels)", plan.seg_fractions),
    ):
        for fraction in fractions:
            group = f"{task} {fraction:.0%}"
            bars[group] = {}
            for init in INITS:
                run = runs / "finetune" / task / f"{init}_fraction{fraction}_seed{seed}"
                result = json.loads((run / "test_metrics.json").read_text())
                score = next(iter(result["metrics"].values()))
                rows.append({"task": task, "metric": metric, "labels used": f"{fraction:.0%}", "init": init, "test score": score,
                             "train images": result["n_train"], "test images": result["n_test"]})  # fmt: skip
                bars[group][init] = score
                curves.setdefault(f"{task} {fraction:.0%} loss", {})[init] = read_history(run / "loss_history.json").get("loss", [])
                if task == "chestxray14" and fraction == max(fractions):
                    per_class[init] = dict(zip(result["classes"], result["per_class"], strict=True))
    per_class_rows = [
        {"label": name, **{init: per_class[init][name] for init in INITS}}
        for name in CHESTXRAY14_LABELS if not any(per_class[init][name] is None for init in INITS)
    ]  # fmt: skip
    save_bar_chart(
        {row["label"]: {init: row[init] for init in INITS} for row in per_class_rows}, report / "per_class_auc.png",
        f"linear evaluation: test AUC-ROC per label ({max(plan.linear_fractions):.0%} of the labels)", ylabel="AUC-ROC",
    )  # fmt: skip
    save_bar_chart(bars, report / "downstream.png", f"downstream test scores (seed {seed}, one run each)")
    save_curves(
        {name: series for name, series in curves.items() if series}, report / "curves.png", "training curves",
        xlabel="iteration (validation: epoch)", ylabel={"stage 1 validation AUC": "AUC"},
    )  # fmt: skip
    metrics = {
        "plan": dataclasses.asdict(plan), "seed": seed, "seconds": seconds, "stage1_quality": quality,
        "multilabel_stage1_quality": multilabel_quality, "downstream": rows, "per_class_auc": per_class_rows,
    }  # fmt: skip
    metrics["probes"] = probes = json.loads((runs / "probes" / "probes.json").read_text())
    metrics["stage2_loss"], stage2_lines = stage2_loss_section(
        out_dir, bundle_path(BUNDLE_NAME), plan.pretrain_epochs, plan.pretrain_batch_size
    )
    write_json(metrics, report / "metrics.json")
    absent = [name for name in CHESTXRAY14_LABELS if name not in CXR_FINDINGS]
    return write_readme(
        report,
        [
            "# CAMContrast chest X-ray demo report",
            "",
            f"Synthetic chest radiographs, seed {seed}, {seconds / 60:.1f} minutes. Sizes: {plan.n_chestxray14} "
            f"ChestX-ray14-like images at {plan.image_size} px for pretraining (encoder width {plan.width}; the paper's "
            f"is 64), {plan.stage1_epochs} stage-1 epochs, {plan.pretrain_epochs} stage-2 epochs (batch "
            f"{plan.pretrain_batch_size}, lr {plan.pretrain_lr}); downstream at {plan.downstream_size} px: linear "
            f"evaluation {plan.linear_epochs} epochs on the same set's official-style split, pneumothorax segmentation "
            f"on {plan.n_siim} SIIM-ACR-like DICOMs at lr {plan.seg_lr} with "
            f"{', '.join(f'{f:.0%} of the labels for {round(plan.seg_epochs / f)} epochs' for f in plan.seg_fractions)} "
            f"(the steps of {plan.seg_epochs} epochs at 100%).",
            "Each number comes from one run (one seed): small differences between initialisations are not evidence "
            "for or against the method.",
            "",
            *write_probe_section(probes, report, "camcontrast", PROBE_BASELINES),
            f"The synthetic set draws {len(CXR_FINDINGS)} of the 14 labels ({', '.join(CXR_FINDINGS)}); "
            f"{', '.join(absent)} never occur, so they have no AUC and are left out of the mean.",
            "",
            *stage2_lines,
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
    )
