"""bench compare beyond fundus: the chest X-ray and 3D MRI settings, their refusals, their splits and a tiny run."""

import json

import numpy as np
import pytest
import torch

from camcontrast_monai.apps.compare import run_compare
from camcontrast_monai.apps.compare.plan import parse_grid
from camcontrast_monai.apps.compare.settings import compare_setting


def test_each_bundle_refuses_a_grid_it_cannot_run():
    mri, cxr = compare_setting("mri3d"), compare_setting("camcontrast_cxr")
    for setting, args, message in [
        (mri, ("tiny", "random,supce-crop", "adni_3way", "1.0", "0,1"), "no pretraining configs for \\['supce'\\]"),
        (mri, ("tiny", "random,camcontrast", "adni_3way", "0.5", "0,1"), "every label of a fold"),
        (mri, ("tiny", "random,camcontrast", "adni_3way", "1.0", "0,2"), "folds 0..1 of the preset; got \\[2\\]"),
        (cxr, ("tiny", "random", "grading", "1.0", "0"), "unknown tasks \\['grading'\\] for the cxr bundle"),
        (cxr, ("benchmark", "random", "chestxray14", "1.0", "0"), "unknown preset 'benchmark' for the cxr bundle"),
        (cxr, ("tiny", "supce-crop:encoder_name=resnet34", "pneumothorax", "1.0", "0"), "no segmentation decoder"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_grid(setting, *args)
    with pytest.raises(ValueError, match="bench compare runs fundus, cxr, mri3d"):
        compare_setting("ct")


def test_cxr_segmentation_gets_the_same_steps_at_every_fraction():
    setting = compare_setting("cxr")
    plan = setting.plans["default"]
    full, quarter = (setting.task_overrides("pneumothorax", plan, 0, f) for f in (1.0, 0.25))
    assert (full["finetune_epochs"], full["val_interval"]) == (plan.seg_epochs, 1)
    assert (quarter["finetune_epochs"], quarter["val_interval"]) == (4 * plan.seg_epochs, 4)
    linear = setting.task_overrides("chestxray14", plan, 3, 0.25)
    assert linear == {
        "image_size": 96, "crop_size": 96, "finetune_epochs": plan.linear_epochs, "finetune_weight_decay": 0.01,
    }  # fmt: skip


def test_mri_seeds_are_folds_over_one_holdout_and_its_trivial_auc_is_one_half(tmp_path):
    from camcontrast_monai.apps.bundle import bundle_path
    from camcontrast_monai.apps.compare.checks import _label_matrix, _task_parser, trivial_score
    from camcontrast_monai.synthetic.mri import write_mri_dataset

    setting = compare_setting("mri3d")
    plan = setting.plans["tiny"]
    write_mri_dataset(tmp_path, n_subjects=plan.n_subjects, seed=0, max_sessions=plan.max_sessions)
    bundle = bundle_path("mri3d")
    common = {"dataset_dir": str(tmp_path), "width": plan.width, **setting.common_overrides(plan)}
    splits = [_task_parser(bundle, setting, "adni_3way", seed, 1.0, plan, common).get_parsed_content("splits") for seed in (0, 1)]
    ids = [{part: {entry["id"] for entry in split[part]} for part in split} for split in splits]
    assert ids[0]["test"] == ids[1]["test"] and ids[0]["val"].isdisjoint(ids[1]["val"])  # one holdout, two folds
    assert ids[0]["val"] <= ids[1]["train"] and ids[0]["test"].isdisjoint(ids[0]["train"] | ids[0]["val"])
    assert trivial_score(bundle, setting, "adni_3way", 1, plan, common) == 0.5
    parser = _task_parser(bundle, setting, "adni_3way", 0, 1.0, plan, common)
    assert torch.equal(_label_matrix([2, 0], parser), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))


def test_a_tiny_cxr_comparison_probes_and_checks_the_linear_evaluation_per_label(tmp_path):
    report = run_compare(
        out=str(tmp_path), bundle="cxr", methods="random,camcontrast", tasks="chestxray14", fractions="1.0",
        seeds="0,1", preset="tiny", num_workers=0, shared_pretraining=True,
    )  # fmt: skip
    results = json.loads((report / "results.json").read_text())
    assert [(r["method"], len(r["test_scores"]), len(r["per_class"])) for r in results["rows"]] == [("random", 2, 2), ("camcontrast", 2, 2)]
    # the test list is the same for every seed (ChestX-ray14's official split), and every constant scores AUC 0.5
    (power,) = results["power"]
    assert power["trivial predictor"] == 0.5 and power["metric"] == "mean AUC-ROC (14 labels, linear evaluation)"
    tests = {json.dumps(json.loads(p.read_text())["n_test"]) for p in (tmp_path / "runs" / "finetune").rglob("test_metrics.json")}
    assert len(tests) == 1
    # the mean over labels is the mean of the per-label AUCs that a test split could score
    for row in results["rows"]:
        per_class = np.asarray(row["per_class"], dtype=float)
        assert np.allclose(np.nanmean(per_class, axis=1), row["test_scores"])
    (check,) = results["probe_check"]
    assert check["task"] == "chestxray14" and check["method"] == "camcontrast" and check["check"] in ("holds", "FAILS")
    assert 0 <= check["linear probe, same split"][0] <= 1
    text = (report / "README.md").read_text()
    assert text.startswith("# Pretraining comparison (cxr bundle)") and "--bundle cxr" in text
    assert "### chestxray14: mean AUC-ROC (14 labels, linear evaluation) per class" in text and "| test Cardiomegaly |" in text
    assert set(results["probes"]["encoders"]) == {"random", "camcontrast"} and "embeddings.png" not in text
