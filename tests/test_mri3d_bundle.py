"""Every config of the 3D brain MRI bundle, run through MONAI's bundle machinery on a tiny synthetic cohort.

The cohort is written at the real 80x96x80 and the bundle runs at ``volume_size`` 32x40x32 (so the
resampling path with its warning runs too); encoder: ResNet-10 of width 4, one epoch per stage.
"""

import json
from pathlib import Path

import monai.bundle
import nibabel as nib
import numpy as np
import pytest
import torch

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.networks import ResNetEncoder, load_encoder_weights
from camcontrast_monai.synthetic import write_mri_dataset
from camcontrast_monai.transforms import BatchAffineIntensityAugmentation

BUNDLE = bundle_path("camcontrast_mri3d")
WIDTH = 4
# 32x40x32 through conv1 (stride 2) and layer2-4 (stride 2 each), no max-pool: 16x -> 2x3x2
HEATMAP_SHAPE = (2, 3, 2)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("mri3d_bundle")
    manifest = write_mri_dataset(root / "data", n_subjects=6, seed=0, max_sessions=2)
    common = {
        "bundle_root": str(BUNDLE),
        "dataset_dir": str(root / "data"),
        "output_dir": str(root / "runs"),
        "encoder_path": str(root / "models" / "model.pt"),
        "width": WIDTH,
        "resnet_depth": 10,
        "volume_size": [32, 40, 32],
        "n_folds": 2,
        "holdout_fraction": 0.34,
        "num_workers": 0,
    }
    stage1 = run_bundle(BUNDLE, ["common.json", "stage1.json"], "train", **common, stage1_epochs=1, stage1_batch_size=2, stage1_val_fraction=0.25)
    common["check_pixels"] = False
    run_bundle(BUNDLE, ["common.json", "heatmaps.json"], **common)
    pretrain = run_bundle(BUNDLE, ["common.json", "pretrain.json"], "train", **common, pretrain_epochs=1, pretrain_batch_size=10)
    return {"root": root, "common": common, "manifest": manifest, "stage1": stage1, "pretrain": pretrain}


def test_development_set_only_is_pretrained_on(pipeline):
    cv = pipeline["stage1"].parser.get_parsed_content("cv_splits")
    holdout = {d["patient_id"] for d in cv["holdout"]}
    pretrain = pipeline["stage1"].parser.get_parsed_content("pretrain_datalist")
    assert holdout and not holdout & {d["patient_id"] for d in pretrain}
    assert len(pretrain) + len(cv["holdout"]) == pipeline["manifest"]["n_sessions"]
    # coarse label: CN -> 0, MCI or AD -> 1
    assert all(d["label"] == int(d["diagnosis"] != "CN") for d in pretrain)


def test_3d_heatmaps_are_suppressed_float32_volumes(pipeline):
    datalist = json.loads((pipeline["root"] / "runs/heatmaps/heatmap_datalist.json").read_text())
    assert len(datalist) == len(pipeline["stage1"].parser.get_parsed_content("pretrain_datalist"))
    for entry in datalist:
        heatmap = np.load(entry["heatmap"])
        assert heatmap.dtype == np.float32 and heatmap.shape == HEATMAP_SHAPE
        assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
        assert Path(entry["heatmap"]).name == f"{entry['participant_id']}_{entry['session_id']}.npy"
        if entry["diagnosis"] == "CN":
            assert not heatmap.any(), "negative suppression must zero every CN heatmap"


def test_stage2_serves_ten_sub_volumes_per_volume(pipeline):
    dataset = pipeline["pretrain"].parser.get_parsed_content("train#dataset")
    assert len(dataset) == 10 * len(pipeline["pretrain"].parser.get_parsed_content("pretrain_data"))
    sample = dataset[4]  # h0-C, the centre sub-volume of the first half
    # heatmap resized to volume_size / 8 = 4x5x4; the crops are cut on its grid, so the image crop is the region of
    # its 2x2x2-cell heatmap crop (5 // 2 = 2 cells on the odd axis): 16x16x16 voxels, not half of the 40-voxel axis
    assert tuple(sample["image"].shape) == (1, 16, 16, 16)
    assert tuple(sample["heatmap"].shape) == (1, 2, 2, 2) and sample["crop_index"] == 4
    assert sample["image"].dtype == torch.float32


def test_pretrained_encoder_is_a_resnet_state_dict_that_changes_an_encoder(pipeline):
    encoder_path = Path(pipeline["common"]["encoder_path"])
    state = torch.load(encoder_path, weights_only=True)
    torch.manual_seed(0)
    encoder = ResNetEncoder(spatial_dims=3, in_channels=1, depth=10, width=WIDTH, conv1_t_stride=2, no_max_pool=True)
    assert set(state) == set(encoder.state_dict())
    before = encoder.conv1.weight.detach().clone()
    load_encoder_weights(encoder, encoder_path)
    assert not torch.equal(before, encoder.conv1.weight) and torch.equal(encoder.conv1.weight, state["conv1.weight"])
    assert tuple(encoder(torch.zeros(1, 1, 80, 96, 80)).shape) == (1, 8 * WIDTH, 5, 6, 5)


def test_finetune_folds_and_crossval_summary(pipeline, mlflow_runs):
    for init in ("random", "camcontrast"):
        for fold in (0, 1):
            run_bundle(
                BUNDLE, ["common.json", "finetune_cls.json"], "train", **pipeline["common"],
                init=init, fold=fold, finetune_epochs=1, finetune_batch_size=4, tracking="mlflow", run_name=f"{init}_fold{fold}",
            )  # fmt: skip
    tracked = mlflow_runs(pipeline["root"] / "runs")
    assert sorted(tracked) == ["camcontrast_fold0", "camcontrast_fold1", "random_fold0", "random_fold1"]
    assert all(run["train_loss"] and [step for step, _ in run["val_mean_auc"]] == [1] for run in tracked.values())
    run = pipeline["root"] / "runs/finetune/adni_3way/camcontrast/lr0.01/fold1"
    test, val = (json.loads((run / f"{split}_metrics.json").read_text()) for split in ("test", "val"))
    assert test["split"] == "holdout" and val["split"] == "validation" and test["fold"] == 1
    assert len(test["per_class"]) == 3 and test["classes"] == ["CN", "MCI", "AD"]
    assert test["n_train"] + test["n_val"] + test["n_holdout"] == pipeline["manifest"]["n_sessions"]
    run_bundle(BUNDLE, ["common.json", "crossval_summary.json"], **pipeline["common"])
    summary = json.loads((pipeline["root"] / "runs/crossval_summary/crossval_summary.json").read_text())
    assert [row["method"] for row in summary["rows"]] == ["camcontrast", "random"]
    assert all(row["folds"] == 2 and len(row["test mean"]) == 2 for row in summary["rows"])
    assert "| camcontrast | 0.01 | 2 |" in (pipeline["root"] / "runs/crossval_summary/crossval_table.md").read_text()


def test_a_2d_nifti_in_the_cohort_is_refused_before_training(tmp_path):
    write_mri_dataset(tmp_path / "data", n_subjects=3, seed=1, max_sessions=1)
    victim = next((tmp_path / "data" / "subjects").rglob("*_T1w.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((80, 96), dtype=np.float32), np.eye(4)), victim)
    with pytest.raises(Exception) as raised:
        run_bundle(
            BUNDLE, ["common.json", "stage1.json"], "train", bundle_root=str(BUNDLE), dataset_dir=str(tmp_path / "data"),
            output_dir=str(tmp_path / "runs"), width=WIDTH, resnet_depth=10, num_workers=0,
        )  # fmt: skip
    message = "".join(str(e) for e in (raised.value, raised.value.__cause__) if e is not None)
    assert "1 problem(s)" in message and victim.name in message and "expected a 3D image" in message
    assert not (tmp_path / "runs").exists()


def test_inference_writes_one_embedding_per_volume(pipeline):
    run_bundle(BUNDLE, ["inference.json"], **pipeline["common"])  # inference.json stands alone
    with np.load(pipeline["root"] / "runs" / "embeddings.npz") as saved:
        assert saved["embeddings"].shape == (pipeline["manifest"]["n_sessions"], 8 * WIDTH)
        assert all(str(path).endswith("_T1w.nii.gz") for path in saved["images"])


def test_metadata_verifies_against_the_repository_schema():
    schema = BUNDLE.parents[1] / "schemas" / "meta_schema.json"
    monai.bundle.verify_metadata(meta_file=str(BUNDLE / "configs" / "metadata.json"), filepath=str(schema))
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["version"] == "0.10.0" and {"0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "0.9.0", "0.10.0"} <= set(meta["changelog"])



def _pretrain_parser(pipeline, **overrides):
    parser = monai.bundle.ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / name) for name in ("common.json", "pretrain.json")])
    for key, value in {**pipeline["common"], **overrides}.items():
        parser[key] = value
    return parser


@pytest.mark.parametrize(("strategy", "per_volume", "epochs_factor"), [("four", 8, 1), ("random", 1, 10), ("none", 1, 10)])
def test_the_sub_volume_strategies_of_table_3_in_3d(pipeline, strategy, per_volume, epochs_factor):
    parser = _pretrain_parser(pipeline, crop_strategy=strategy, pretrain_epochs=3)
    dataset = parser.get_parsed_content("train#dataset")
    assert len(dataset) == per_volume * len(parser.get_parsed_content("pretrain_data"))
    # the test's 32x40x32 volumes have 4x5x4 heatmaps: a fixed or a random sub-volume is the region of half the
    # heatmap grid (2x2x2 cells = 16x16x16 voxels; 5 // 2 = 2 on the odd axis); at the real 80x96x80 both are 40x48x40
    image_shape = {"four": (16, 16, 16), "random": (16, 16, 16), "none": (32, 40, 32)}[strategy]
    assert tuple(dataset[0]["image"].shape) == (1, *image_shape)
    assert tuple(dataset[0]["heatmap"].shape) == ((1, 4, 5, 4) if strategy == "none" else (1, 2, 2, 2))
    assert parser.get_parsed_content("stage2_epochs") == 3 * epochs_factor  # the same number of steps


def test_discard_normal_and_batched_augmentation_in_3d(pipeline):
    default = _pretrain_parser(pipeline).get_parsed_content("pretrain_data")
    kept = _pretrain_parser(pipeline, discard_normal="true").get_parsed_content("pretrain_data")
    assert kept == [d for d in default if d["label"] != 0] and len(kept) < len(default)
    assert _pretrain_parser(pipeline, batched_augmentation=False).get_parsed_content("train#batch_augmentation") is None
    batched = _pretrain_parser(pipeline, batched_augmentation=True)
    assert isinstance(batched.get_parsed_content("train#batch_augmentation"), BatchAffineIntensityAugmentation)
    # the workers then only cut and convert: the augmentation happens once, in the trainer
    assert [type(t).__name__ for t in batched.get_parsed_content("train#crop_transform").transforms] == ["EnsureTyped"]


def test_stage2_trains_channels_last_with_batched_augmentation_in_3d(pipeline, tmp_path):
    common = {**pipeline["common"], "pretrain_run_dir": str(tmp_path / "pretrain"), "encoder_path": str(tmp_path / "model.pt")}
    workflow = run_bundle(
        BUNDLE, ["common.json", "pretrain.json"], "train", **common, pretrain_epochs=1, pretrain_batch_size=10, channels_last=True,
        batched_augmentation=True,
    )  # fmt: skip
    assert isinstance(workflow.parser.get_parsed_content("train#trainer").batch_augmentation, BatchAffineIntensityAugmentation)
    network = workflow.parser.get_parsed_content("network")
    weight = next(w for w in network.image_encoder.parameters() if w.ndim == 5 and w.shape[1] > 1)  # 1 input channel is both
    assert weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()
    assert (tmp_path / "model.pt").is_file()
