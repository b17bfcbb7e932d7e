"""Every bundle's torchrun overlays (multi_gpu_stage1/pretrain/finetune.json, shared by all three) run.

Here as rank 0 of a one-process gloo group in this process, on tiny data; the fundus bundle's
overlays also run under a real two-process torchrun in test_distributed.py.
"""

import json

import pytest
import torch

from camcontrast_monai.apps.bundle import bundle_path, run_bundle

SIZES = {
    "cxr": {"width": 2, "image_size": 64, "crop_size": 32},
    "mri3d": {"width": 2, "resnet_depth": 10, "volume_size": [32, 40, 32], "n_folds": 2, "holdout_fraction": 0.34, "check_pixels": False},
}


@pytest.mark.parametrize("modality", sorted(SIZES))
def test_the_torchrun_overlays_run_in_every_bundle(modality, tmp_path, one_process_group, restore_logging, tiny_data):
    bundle = bundle_path(modality)
    common = {
        "bundle_root": str(bundle), "dataset_dir": str(tiny_data(tmp_path / "data", modality)), "output_dir": str(tmp_path / "runs"),
        "encoder_path": str(tmp_path / "model.pt"), "num_workers": 0, **SIZES[modality],
    }  # fmt: skip
    with one_process_group():
        run_bundle(bundle, ["common.json", "stage1.json", "multi_gpu_stage1.json"], "train", **common,
                   stage1_epochs=1, stage1_batch_size=4, stage1_val_fraction=0.25)  # fmt: skip
    run_bundle(bundle, ["common.json", "heatmaps.json"], **common)
    with one_process_group():
        run_bundle(bundle, ["common.json", "pretrain.json", "multi_gpu_pretrain.json"], "train", **common,
                   pretrain_epochs=1, pretrain_batch_size=10)  # fmt: skip
    with one_process_group():
        run_bundle(bundle, ["common.json", "finetune_cls.json", "multi_gpu_finetune.json"], "train", **common,
                   init="camcontrast", finetune_epochs=1, finetune_batch_size=4)  # fmt: skip
    classifier = torch.load(tmp_path / "runs" / "stage1" / "classifier.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in classifier)  # the plain classifier, not DDP's wrapper
    assert not any(key.startswith("module.") for key in torch.load(tmp_path / "model.pt", weights_only=True))
    (result,) = (tmp_path / "runs" / "finetune").rglob("test_metrics.json")
    assert json.loads(result.read_text())["init"] == "camcontrast"
