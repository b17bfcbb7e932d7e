"""``camcontrast demo``: the whole CAMContrast pipeline on synthetic fundus photographs, through the bundle.

Generates a pretraining set (ODIR-like) and a downstream set (IDRiD-like), runs the fundus bundle's
configs in this process with MONAI's ``ConfigWorkflow`` (stage 1 -> heatmaps -> stage 2 -> frozen-feature
probes of the random, stage-1 and CAMContrast encoders -> fine-tuning from random initialisation and from the
CAMContrast encoder), then writes a report folder that leads with the probe comparison: probe tables with
paired intervals, the stage-2 loss against collapse and its floor, stage-1 AUC and heatmap localisation,
heatmap overlays, fine-tuned scores (markdown + JSON) and loss curves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
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
from camcontrast_monai.networks.cam_classifier import CAMClassifier
from camcontrast_monai.report.figures import save_bar_chart, save_curves, save_heatmap_overlays
from camcontrast_monai.report.localisation import localisation_summary, roc_auc
from camcontrast_monai.report.tables import markdown_table, write_json
from camcontrast_monai.synthetic.fundus import LESION_TYPES, write_fundus_dataset

__all__ = ["DemoPlan", "FULL", "FundusSizes", "QUICK", "run_demo"]

logger = logging.getLogger(__name__)

TASK_METRICS = {"grading": "joint accuracy", "lesions": "mean AUC-PR", "disc_cup": "mean F1", "vessels": "F1"}


@dataclasses.dataclass(frozen=True)
class FundusSizes:
    """The sizes of a fundus chain (synthetic data -> stage 1 -> stage 2 -> fine-tuning) that the demo and
    the comparison (``apps.compare.ComparePlan``) both set."""

    n_pretrain: int
    n_downstream: int
    image_size: int
    width: int
    stage1_epochs: int
    stage1_batch_size: int
    pretrain_epochs: int
    pretrain_batch_size: int
    pretrain_lr: float
    cls_image_size: int
    cls_crop_size: int
    seg_image_size: int
    finetune_epochs: int
    finetune_batch_size: int


@dataclasses.dataclass(frozen=True)
class DemoPlan(FundusSizes):
    """Reduced sizes that let the whole chain run on a 2-core CPU (the paper's are in the bundle configs).

    Stage 2 gets a smaller batch and a higher learning rate than the paper's 120 / 1e-3: the paper
    trains 25k steps, the demo a few hundred, and with batch 120 and lr 1e-3 the NT-Xent loss of a
    demo run stayed at the collapsed value log(2B - 1) (measured: 5.35-5.5 after 64 steps), while
    batch 40 and lr 3e-3 brought it below its collapsed value (3.95-4.05 vs 4.37 after 200 steps).

    Stage 2 runs 30 epochs (1500 steps). Every run measured on the demo's data sits on a loss plateau near
    3.9 from epoch 4 and leaves it only after enough steps at a high learning rate; until then a frozen
    probe of the encoder reads no more than a random encoder's. Along one 40-epoch run the probe passed the
    stage-1 encoder near 750-1000 steps and levelled off from 1250 (any DR/DME 0.95-0.96). Full runs on the
    same heatmaps: 25 epochs left the plateau only at epoch 16, ended at loss 3.54 and probed 0.83 (the
    stage-1 encoder's level); 30 epochs left it at epoch 11, ended at 3.07 and probed 0.95
    (docs/results/stage2_schedule). The former 6 epochs gave an encoder no better than a random one. To
    stay near 15 minutes on 2 cores, the demo fine-tunes grading and lesions only; disc/cup and vessels
    stay in the bundle and in ``camcontrast bench compare``.
    """

    seg_tasks: tuple[str, ...]
    label_fraction: float


FULL = DemoPlan(
    n_pretrain=400, n_downstream=120, image_size=128, width=16,
    stage1_epochs=10, stage1_batch_size=32, pretrain_epochs=30, pretrain_batch_size=40, pretrain_lr=0.003,
    cls_image_size=128, cls_crop_size=112, seg_image_size=128, finetune_epochs=12, finetune_batch_size=16,
    seg_tasks=("lesions",), label_fraction=1.0,
)  # fmt: skip
QUICK = DemoPlan(
    n_pretrain=80, n_downstream=40, image_size=64, width=8,
    stage1_epochs=3, stage1_batch_size=16, pretrain_epochs=2, pretrain_batch_size=40, pretrain_lr=0.003,
    cls_image_size=64, cls_crop_size=48, seg_image_size=64, finetune_epochs=2, finetune_batch_size=8,
    seg_tasks=("lesions",), label_fraction=1.0,
)  # fmt: skip


def run_demo(out: str = "demo_output", quick: bool = False, seed: int = 0, num_workers: int = 2) -> Path:
    """Run the full chain at demo sizes and return the report folder."""
    plan = QUICK if quick else FULL
    out_dir = Path(out).resolve()
    bundle = bundle_path()
    data_dir = out_dir / "data"
    announce = StepAnnouncer(steps=6 + 2 * (1 + len(plan.seg_tasks)))

    announce(f"synthetic fundus data: {plan.n_pretrain} pretraining + {plan.n_downstream} downstream images")
    write_fundus_dataset(data_dir / "pretrain", n=plan.n_pretrain, seed=seed, image_size=plan.image_size * 2)
    write_fundus_dataset(data_dir / "downstream", n=plan.n_downstream, seed=seed + 1000, image_size=plan.image_size * 2)

    common = demo_overrides(bundle, out_dir, plan.width, seed, num_workers)
    announce("stage 1: CAM classifier on coarse normal/abnormal labels")
    stage1 = run_bundle(
        bundle, ["common.json", "stage1.json"], "train", **common, image_size=plan.image_size,
        stage1_epochs=plan.stage1_epochs, stage1_batch_size=plan.stage1_batch_size,
    )  # fmt: skip
    announce("heatmaps: abnormal-class CAMs with background and negative suppression")
    run_bundle(bundle, ["common.json", "heatmaps.json"], **common, image_size=plan.image_size)
    announce("stage 2: image/heatmap contrastive pretraining on fixed crops")
    run_bundle(
        bundle, ["common.json", "pretrain.json"], "train", **common, image_size=plan.image_size,
        pretrain_epochs=plan.pretrain_epochs, pretrain_batch_size=plan.pretrain_batch_size,
        pretrain_lr=plan.pretrain_lr,
    )  # fmt: skip
    announce("frozen-feature probes of the random, stage-1 and CAMContrast encoders on the downstream images")
    probe_demo_encoders(bundle, out_dir, {**common, "image_size": plan.cls_image_size}, seed)
    for task in ("grading", *plan.seg_tasks):
        for init in ("random", "camcontrast"):
            announce(f"fine-tune {task} from {init} initialisation")
            finetune = {"init": init, "label_fraction": plan.label_fraction, "finetune_epochs": plan.finetune_epochs}
            if task == "grading":
                run_bundle(
                    bundle, ["common.json", "finetune_cls.json"], "train", **common, **finetune,
                    image_size=plan.cls_image_size, crop_size=plan.cls_crop_size,
                    finetune_batch_size=plan.finetune_batch_size,
                )  # fmt: skip
            else:
                run_bundle(
                    bundle, ["common.json", "finetune_seg.json"], "train", **common, **finetune,
                    seg_task=task, image_size=plan.seg_image_size,
                )  # fmt: skip
    announce("report")
    report = write_report(out_dir, stage1, plan, seed, announce.elapsed())
    print(f"report written to {report / 'README.md'}", flush=True)
    return report


def _lesion_mask(pretrain_dir: Path, stem: str, size: int) -> torch.Tensor:
    """Union of the lesion masks of one synthetic image at ``size`` (area resize, so tiny lesions survive)."""
    union = None
    for lesion in LESION_TYPES:
        mask = np.asarray(Image.open(pretrain_dir / "masks" / lesion / f"{stem}.png")) > 0
        union = mask if union is None else union | mask
    resized = torch.nn.functional.interpolate(torch.from_numpy(union).float()[None, None], size=(size, size), mode="area")
    return resized[0, 0] > 0


def _stage1_evaluation(out_dir: Path, stage1: ConfigWorkflow, plan: DemoPlan) -> tuple[dict[str, Any], dict[str, Any]]:
    """Held-out stage-1 AUC and heatmap localisation, plus the tensors the overlay figure needs."""
    held_out = stage1.parser.get_parsed_content("pretrain_split")[1]
    load_image = Compose(stage1.parser.get_parsed_content("load_image"))
    classifier: CAMClassifier = stage1.parser.get_parsed_content("network").eval()
    paired = {Path(d["image"]).stem: d for d in json.loads((out_dir / "runs/heatmaps/heatmap_datalist.json").read_text())}
    device = next(classifier.parameters()).device

    images, heatmaps, lesions, labels = [], [], [], []
    for entry in held_out:
        stem = Path(entry["image"]).stem
        images.append(torch.as_tensor(load_image({"image": entry["image"]})["image"]).float())
        heatmaps.append(torch.from_numpy(np.load(paired[stem]["heatmap"]))[None])
        lesions.append(_lesion_mask(out_dir / "data/pretrain", stem, plan.image_size))
        labels.append(int(entry["label"]))
    images_t, heatmaps_t = torch.stack(images), torch.stack(heatmaps)
    lesions_t, labels_t = torch.stack(lesions), torch.tensor(labels)
    with torch.no_grad():
        p_abnormal = torch.softmax(classifier(images_t.to(device)), dim=1)[:, 1].cpu()
    fov = images_t.mean(dim=1) > 15 / 255
    abnormal = labels_t == 1
    quality = {
        "held_out_images": len(held_out),
        "held_out_abnormal": int(abnormal.sum()),
        "stage1_auc": roc_auc(p_abnormal, labels_t),
        "stage1_accuracy": float(((p_abnormal >= 0.5).long() == labels_t).float().mean()),
        **localisation_summary(heatmaps_t[abnormal], lesions_t[abnormal], fov[abnormal]),
    }
    figure_inputs = {"images": images_t, "heatmaps": heatmaps_t, "lesions": lesions_t, "labels": labels_t, "p": p_abnormal}
    return quality, figure_inputs


def write_report(out_dir: Path, stage1: ConfigWorkflow, plan: DemoPlan, seed: int, seconds: float) -> Path:
    """Write ``report/``: README.md, metrics.json, heatmaps.png, curves.png, downstream.png."""
    report = out_dir / "report"
    runs = out_dir / "runs"
    quality, shown = _stage1_evaluation(out_dir, stage1, plan)

    # four abnormal and four normal held-out images, as in the paper's Fig. 6
    abnormal = torch.nonzero(shown["labels"] == 1).flatten()[:4].tolist()
    normal = torch.nonzero(shown["labels"] == 0).flatten()[:4].tolist()
    picks = abnormal + normal
    save_heatmap_overlays(
        shown["images"][picks], shown["heatmaps"][picks], report / "heatmaps.png",
        titles=[f"{'abnormal' if shown['labels'][i] else 'normal'}  p(abnormal)={shown['p'][i]:.2f}" for i in picks],
        lesion_masks=shown["lesions"][picks], ncols=2,
    )  # fmt: skip

    rows, bars = [], {}
    curves: dict[str, dict[str, list]] = {
        "stage 1 loss": read_history(runs / "stage1/loss_history.json"),
        "stage 1 validation": read_history(runs / "stage1/val_history.json"),
        "stage 2 NT-Xent": read_history(runs / "pretrain/loss_history.json"),
    }
    for task in ("grading", *plan.seg_tasks):
        bars[f"{task} ({TASK_METRICS[task]})"] = {}
        for init in ("random", "camcontrast"):
            run = runs / "finetune" / task / f"{init}_fraction{plan.label_fraction}_seed{seed}"
            result = json.loads((run / "test_metrics.json").read_text())
            score = next(iter(result["metrics"].values()))
            rows.append({"task": task, "metric": TASK_METRICS[task], "init": init, "test score": score, "train images": result["n_train"], "test images": result["n_test"]})
            bars[f"{task} ({TASK_METRICS[task]})"][init] = score
            curves.setdefault(f"fine-tune {task}", {})[init] = read_history(run / "loss_history.json").get("loss", [])
    save_curves(
        {name: series for name, series in curves.items() if series}, report / "curves.png", "training curves",
        xlabel="iteration (validation: epoch)", ylabel={"stage 1 validation": "AUC / accuracy"},
    )  # fmt: skip
    save_bar_chart(bars, report / "downstream.png", f"downstream test scores (seed {seed}, one run each)")

    probes = json.loads((runs / "probes" / "probes.json").read_text())
    stage2, stage2_lines = stage2_loss_section(out_dir, bundle_path(), plan.pretrain_epochs, plan.pretrain_batch_size)
    probe_lines = write_probe_section(probes, report, "camcontrast", PROBE_BASELINES)
    metrics = {
        "plan": dataclasses.asdict(plan), "seed": seed, "seconds": seconds, "stage1_quality": quality,
        "probes": probes, "stage2_loss": stage2, "downstream": rows,
    }  # fmt: skip
    write_json(metrics, report / "metrics.json")
    quality_rows = [{"quantity": key, "value": value} for key, value in quality.items()]
    return write_readme(
        report,
        [
            "# CAMContrast demo report",
            "",
            f"Synthetic fundus photographs, seed {seed}, {seconds / 60:.1f} minutes. Sizes: "
            f"{plan.n_pretrain} pretraining images at {plan.image_size} px, encoder width {plan.width} "
            f"(the paper's is 64), {plan.stage1_epochs} stage-1 epochs, {plan.pretrain_epochs} stage-2 epochs "
            f"(batch {plan.pretrain_batch_size}, lr {plan.pretrain_lr}), "
            f"{plan.finetune_epochs} fine-tuning epochs on {plan.n_downstream} downstream images.",
            "",
            *probe_lines,
            *stage2_lines,
            "## Stage 1 and heatmap quality (held-out pretraining images)",
            "",
            markdown_table(quality_rows),
            "`pointing_game`: fraction of abnormal images whose heatmap maximum falls on a lesion; "
            "`heatmap_mask_auc`: pixel ROC AUC of the upsampled heatmap against the lesion masks inside the field of view.",
            "",
            "![heatmaps](heatmaps.png)",
            "",
            "## Fine-tuning (test split)",
            "",
            "Each fine-tuning number comes from a single run (one seed), so no spread is measured: a small "
            "difference between initialisations here is not evidence for or against the method; the probes above, "
            "over resampled splits, are the measurement to trust at this size.",
            "",
            markdown_table(rows),
            "![downstream](downstream.png)",
            "",
        ],
    )
