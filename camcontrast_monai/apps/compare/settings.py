"""What a comparison knows of each bundle (:data:`SETTINGS`): its downstream tasks, its presets, its data and
the overrides its runs get. The runner, the checks and the report are the same for every bundle."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from camcontrast_monai.apps.compare.plan import (
    BASELINES,
    CXR_PLANS,
    MRI_PLANS,
    PLANS,
    ComparePlan,
    CXRComparePlan,
    Grid,
    MRIComparePlan,
)
from camcontrast_monai.apps.demo.cxr import LINEAR_METRIC, SEG_METRIC
from camcontrast_monai.apps.demo.fundus import SMALL_EPOCH_LOADING, STAGE1_CACHE, TASK_METRICS

__all__ = ["SETTINGS", "CompareSetting", "CompareTask", "compare_setting"]


@dataclasses.dataclass(frozen=True)
class CompareTask:
    """One downstream task: the fine-tuning config after ``common.json``, what its test score is (``metric``),
    the validation score that selects the learning rate (``val_key`` of ``val_history.json``) and whether it is
    a classification (probe-checked; its trivial predictor is a constant class or label score)."""

    metric: str
    config: str
    val_key: str
    classification: bool


class CompareSetting:
    """The fundus bundle's comparison (paper Table 7); the other bundles' settings subclass it."""

    name = "fundus"
    bundle_name = "camcontrast_fundus"
    tasks: Mapping[str, CompareTask] = {
        "grading": CompareTask(TASK_METRICS["grading"], "finetune_cls.json", "val_joint_accuracy", True),
        "glaucoma": CompareTask(TASK_METRICS["glaucoma"], "finetune_glaucoma.json", "val_f1", True),
        **{task: CompareTask(TASK_METRICS[task], "finetune_seg.json", "val_score", False) for task in ("lesions", "disc_cup", "vessels")},
    }  # fmt: skip
    plans: Mapping[str, Any] = PLANS
    baselines: tuple[str, ...] = tuple(BASELINES)  # the baselines whose pretraining configs the bundle ships
    spatial_dims = 2
    crop_maps = True  # the crop-level probes and UMAP maps read the synthetic fundus lesion masks
    seed_name = "seed"

    def write_data(self, data_dir: Path, plan: ComparePlan) -> None:
        from camcontrast_monai.synthetic import write_fundus_dataset, write_refuge_dataset

        print(f"synthetic fundus data: {plan.n_pretrain} pretraining + {plan.n_downstream} downstream images", flush=True)
        write_fundus_dataset(data_dir / "pretrain", n=plan.n_pretrain, seed=0, image_size=plan.image_size * 2)
        write_fundus_dataset(data_dir / "downstream", n=plan.n_downstream, seed=1000, image_size=plan.image_size * 2)
        if plan.n_refuge:
            print(f"synthetic REFUGE-like glaucoma data: {plan.n_refuge} images", flush=True)
            write_refuge_dataset(data_dir / "refuge", n=plan.n_refuge, seed=2000, image_size=plan.image_size * 2)

    def common_overrides(self, plan: Any) -> dict[str, Any]:
        """Config values of every run (beside the data folder, the width and the loader workers)."""
        return {}

    def pretrain_overrides(self, plan: Any) -> dict[str, Any]:
        """The pretraining images' size."""
        return {"image_size": plan.image_size}

    def stage1_overrides(self, plan: Any) -> dict[str, Any]:
        # caching the decoded, resized images and loading in the main process save time; without workers the
        # augmentation draws come from the main process's seeded transforms, so runs differ from worker runs, repeatably
        return {**STAGE1_CACHE, **SMALL_EPOCH_LOADING}

    def task_overrides(self, task: str, plan: ComparePlan, seed: int, fraction: float) -> dict[str, Any]:
        """The plan's sizes and schedule of one fine-tuning run of ``task``."""
        if self.tasks[task].classification:
            return {
                "image_size": plan.cls_image_size, "crop_size": plan.cls_crop_size,
                "finetune_batch_size": plan.finetune_batch_size, "finetune_epochs": plan.finetune_epochs, **SMALL_EPOCH_LOADING,
            }  # fmt: skip
        return {
            "seg_task": task, "image_size": plan.seg_image_size, "finetune_batch_size": plan.seg_batch_size,
            "finetune_epochs": plan.seg_epochs, **SMALL_EPOCH_LOADING,
        }  # fmt: skip

    def probe_overrides(self, plan: Any) -> dict[str, Any]:
        """The size the frozen probes embed the downstream images at: the classification fine-tuning's."""
        return {"image_size": plan.cls_image_size}

    def describe(self, plan: ComparePlan) -> str:
        """The data and the fine-tuning schedule, for the report's setup paragraph."""
        return (
            f"{plan.n_pretrain} pretraining images at {plan.image_size} px; fine-tuning: {plan.n_downstream} downstream "
            f"images split 60/20/20 by patient (per seed), {plan.finetune_epochs} epochs (classification) or "
            f"{plan.seg_epochs} (segmentation)"
        )

    def check_grid(self, grid: Grid, plan: Any) -> None:
        """Refuse a grid this bundle cannot run."""
        missing = sorted({m.kind for m in grid.methods} - {"random", "camcontrast", *self.baselines})
        if missing:
            raise ValueError(f"the {self.name} bundle has no pretraining configs for {missing}")
        if any(m.overrides.get("encoder_name", "unet") != "unet" for m in grid.methods) and any(
            not self.tasks[t].classification for t in grid.tasks
        ):
            raise ValueError("non-U-Net encoders have no segmentation decoder: compare them on classification tasks only")


class CXRCompareSetting(CompareSetting):
    """Chest radiographs (paper Table 12): ChestX-ray14-like pretraining, 14-label linear evaluation on the same
    set's official-style split (test list fixed, validation and label subset drawn per seed) and SIIM-ACR-like
    pneumothorax segmentation (split per seed)."""

    name = "cxr"
    bundle_name = "camcontrast_cxr"
    tasks = {
        "chestxray14": CompareTask(LINEAR_METRIC, "finetune_cls.json", "val_mean_auc", True),
        "pneumothorax": CompareTask(SEG_METRIC, "finetune_seg.json", "val_score", False),
    }
    plans = CXR_PLANS
    crop_maps = False

    def write_data(self, data_dir: Path, plan: CXRComparePlan) -> None:
        from camcontrast_monai.synthetic.cxr import write_chestxray14_dataset, write_siim_dataset

        print(f"synthetic chest X-rays: {plan.n_chestxray14} ChestX-ray14-like + {plan.n_siim} SIIM-ACR-like", flush=True)
        write_chestxray14_dataset(data_dir / "chestxray14", n=plan.n_chestxray14, seed=0, image_size=plan.image_size * 2)
        write_siim_dataset(data_dir / "siim", n=plan.n_siim, seed=1000, image_size=plan.image_size * 2)

    def stage1_overrides(self, plan: Any) -> dict[str, Any]:
        return {}

    def task_overrides(self, task: str, plan: CXRComparePlan, seed: int, fraction: float) -> dict[str, Any]:
        size = plan.downstream_size
        if task == "chestxray14":
            return {
                "image_size": size, "crop_size": size, "finetune_epochs": plan.linear_epochs,
                "finetune_weight_decay": plan.linear_weight_decay,
            }  # fmt: skip
        # a fraction f trains seg_epochs / f epochs, validating every 1 / f, so every fraction gets the same steps and
        # validations (the demo's rule); no loader workers: starting them every short epoch cost more than they saved
        return {
            "image_size": size, "finetune_epochs": round(plan.seg_epochs / fraction), "val_interval": round(1 / fraction),
            "num_workers": 0,
        }  # fmt: skip

    def probe_overrides(self, plan: CXRComparePlan) -> dict[str, Any]:
        return {"image_size": plan.downstream_size}

    def describe(self, plan: CXRComparePlan) -> str:
        return (
            f"{plan.n_chestxray14} ChestX-ray14-like pretraining images at {plan.image_size} px; downstream at "
            f"{plan.downstream_size} px: linear evaluation (frozen encoder, linear head) {plan.linear_epochs} epochs, weight decay "
            f"{plan.linear_weight_decay:g}, on "
            f"the same images' official-style split, pneumothorax segmentation on {plan.n_siim} SIIM-ACR-like DICOMs "
            f"for the steps of {plan.seg_epochs} epochs at 100 % of the labels"
        )


class MRICompareSetting(CompareSetting):
    """3D brain MRI (paper Table 11): CN vs MCI/AD pretraining on the development subjects and CN/MCI/AD
    fine-tuning in patient-level folds, each fold's best-validation model scored on the fixed holdout subjects.
    Here a "seed" is a fold: seed k fine-tunes on fold k (and seeds the initialisation with k), so every method
    sees the same folds and the spread over seeds is Table 11's spread over folds."""

    name = "mri3d"
    bundle_name = "camcontrast_mri3d"
    tasks = {"adni_3way": CompareTask("mean AUC-ROC (CN, MCI, AD; holdout)", "finetune_cls.json", "val_mean_auc", True)}
    plans = MRI_PLANS
    baselines = ()
    spatial_dims = 3
    crop_maps = False
    seed_name = "fold"

    def write_data(self, data_dir: Path, plan: MRIComparePlan) -> None:
        from camcontrast_monai.synthetic.mri import write_mri_dataset

        print(f"synthetic brain MRI: {plan.n_subjects} subjects, up to {plan.max_sessions} sessions each", flush=True)
        write_mri_dataset(data_dir, n_subjects=plan.n_subjects, seed=0, max_sessions=plan.max_sessions)

    def common_overrides(self, plan: MRIComparePlan) -> dict[str, Any]:
        # the folds and the holdout are drawn once (split seed 0); stage 1 reads and checks every volume, the
        # runs after it skip the check
        return {"resnet_depth": plan.resnet_depth, "n_folds": plan.n_folds, "split_seed": 0, "check_pixels": False}

    def pretrain_overrides(self, plan: Any) -> dict[str, Any]:
        return {}  # the volumes keep the bundle's 80x96x80

    def stage1_overrides(self, plan: Any) -> dict[str, Any]:
        return {"check_pixels": True}

    def task_overrides(self, task: str, plan: MRIComparePlan, seed: int, fraction: float) -> dict[str, Any]:
        return {"fold": seed, "finetune_epochs": plan.finetune_epochs, "finetune_batch_size": plan.finetune_batch_size}

    def probe_overrides(self, plan: Any) -> dict[str, Any]:
        return {}

    def describe(self, plan: MRIComparePlan) -> str:
        return (
            f"{plan.n_subjects} synthetic subjects (up to {plan.max_sessions} sessions each, 80x96x80 volumes), a 3D "
            f"ResNet-{plan.resnet_depth}; fine-tuning: {plan.finetune_epochs} epochs on each of {plan.n_folds} "
            "patient-level folds of the development subjects, the best-validation model of each fold scored on the "
            "holdout subjects (seed k = fold k)"
        )

    def check_grid(self, grid: Grid, plan: MRIComparePlan) -> None:
        super().check_grid(grid, plan)
        if grid.fractions != [1.0]:
            raise ValueError("the mri3d bundle fine-tunes with every label of a fold: use --fractions 1.0")
        outside = [seed for seed in grid.seeds if not 0 <= seed < plan.n_folds]
        if outside:
            raise ValueError(f"mri3d seeds are folds 0..{plan.n_folds - 1} of the preset; got {outside}")


SETTINGS: dict[str, CompareSetting] = {s.name: s for s in (CompareSetting(), CXRCompareSetting(), MRICompareSetting())}


def compare_setting(bundle: str) -> CompareSetting:
    """The setting of ``bundle`` (fundus, cxr or mri3d; the ``camcontrast_`` prefix is optional)."""
    name = bundle.removeprefix("camcontrast_")
    if name not in SETTINGS:
        raise ValueError(f"unknown bundle {bundle!r}; bench compare runs {', '.join(SETTINGS)}")
    return SETTINGS[name]
