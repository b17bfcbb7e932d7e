"""Every config of the fundus bundle, run through MONAI's bundle machinery on tiny generated data."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.networks import CAMClassifier, pretrained_unet
from camcontrast_monai.synthetic import write_fundus_dataset, write_refuge_dataset

BUNDLE = bundle_path()
IMAGE_SIZE, WIDTH = 64, 2


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, fundus_dataset_dir):
    """Stage 1 -> heatmaps -> stage 2 once for the whole module; returns the paths and overrides."""
    root = tmp_path_factory.mktemp("fundus_bundle")
    common = {
        "bundle_root": str(BUNDLE),
        "dataset_dir": str(fundus_dataset_dir),
        "output_dir": str(root / "runs"),
        "encoder_path": str(root / "models" / "model.pt"),
        "width": WIDTH,
        "image_size": IMAGE_SIZE,
        "num_workers": 0,
    }
    stage1 = run_bundle(
        BUNDLE, ["common.json", "stage1.json"], "train", **common, stage1_epochs=2, stage1_batch_size=4, stage1_val_fraction=0.25
    )
    run_bundle(BUNDLE, ["common.json", "heatmaps.json"], **common)
    pretrain = run_bundle(
        BUNDLE, ["common.json", "pretrain.json"], "train", **common, pretrain_epochs=1, pretrain_batch_size=20
    )
    return {"root": root, "common": common, "stage1": stage1, "pretrain": pretrain}


def test_stage1_writes_classifier_checkpoints_and_histories(pipeline):
    runs = pipeline["root"] / "runs" / "stage1"
    classifier = CAMClassifier(width=WIDTH)
    classifier.load_state_dict(torch.load(runs / "classifier.pt", weights_only=True))
    losses = json.loads((runs / "loss_history.json").read_text())
    # 12 training images (25% of 16 held out by patient), batch 4, drop_last -> 3 iterations x 2 epochs
    assert [step for step, _ in losses["loss"]] == [1, 2, 3, 4, 5, 6]
    assert set(losses) == {"loss", "cross_entropy", "attention"}
    assert [epoch for epoch, _ in json.loads((runs / "val_history.json").read_text())["val_auc"]] == [1, 2]
    assert [p.name for p in (runs / "checkpoints").iterdir()] == ["checkpoint_6.pt"]


def test_heatmaps_are_lossless_suppressed_and_small(pipeline):
    root = pipeline["root"]
    datalist = json.loads((root / "runs" / "heatmaps" / "heatmap_datalist.json").read_text())
    assert len(datalist) == 16
    for entry in datalist:
        heatmap = np.load(entry["heatmap"])
        assert heatmap.dtype == np.float32 and heatmap.shape == (IMAGE_SIZE // 16, IMAGE_SIZE // 16)
        assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
        if entry["label"] == 0:
            assert not heatmap.any(), "negative suppression must zero every normal heatmap"
    # the crop set on disk is the source images plus one tiny heatmap each: no crop copies
    heatmap_bytes = sum(p.stat().st_size for p in (root / "runs" / "heatmaps" / "heatmaps").iterdir())
    image_bytes = sum(p.stat().st_size for p in (Path(pipeline["common"]["dataset_dir"]) / "pretrain" / "images").iterdir())
    assert heatmap_bytes < 0.1 * image_bytes


def test_pretrained_encoder_is_a_plain_state_dict_that_changes_a_unet(pipeline):
    encoder_path = Path(pipeline["common"]["encoder_path"])
    state = torch.load(encoder_path, weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    assert set(state) == set(pipeline["pretrain"].parser.get_parsed_content("network").image_encoder.state_dict())
    torch.manual_seed(0)
    random_unet = pretrained_unet(in_channels=3, out_channels=1, width=WIDTH)
    torch.manual_seed(0)
    loaded_unet = pretrained_unet(in_channels=3, out_channels=1, width=WIDTH, encoder_weights=str(encoder_path))
    changed = [k for k in state if not torch.equal(random_unet.state_dict()[k], loaded_unet.state_dict()[k])]
    assert len(changed) > 0.9 * len(state)
    assert torch.equal(loaded_unet.state_dict()["down_4.convs.conv_1.conv.weight"], state["down_4.convs.conv_1.conv.weight"])


def test_finetune_grading_from_the_pretrained_encoder(pipeline):
    run_bundle(
        BUNDLE, ["common.json", "finetune_cls.json"], "train", **pipeline["common"],
        init="camcontrast", finetune_epochs=1, finetune_batch_size=4, crop_size=48,
    )  # fmt: skip
    result = json.loads(next((pipeline["root"] / "runs" / "finetune" / "grading").glob("*/test_metrics.json")).read_text())
    assert result["init"] == "camcontrast" and result["n_train"] + result["n_val"] + result["n_test"] == 15
    assert 0.0 <= result["metrics"]["test_joint_accuracy"] <= 1.0
    assert len(result["per_head"]) == 2


def test_finetune_glaucoma_reads_refuge_folders_and_scores_f1(pipeline, tmp_path):
    write_refuge_dataset(tmp_path / "refuge", n=40, seed=1, image_size=IMAGE_SIZE)
    out = tmp_path / "glaucoma"
    run_bundle(
        BUNDLE, ["common.json", "finetune_glaucoma.json"], "train", **{**pipeline["common"], "dataset_dir": str(tmp_path)},
        init="camcontrast", finetune_epochs=2, finetune_batch_size=4, crop_size=48, finetune_dir=str(out),
    )  # fmt: skip
    result = json.loads((out / "test_metrics.json").read_text())
    assert result["task"] == "glaucoma" and result["n_train"] + result["n_val"] + result["n_test"] == 40
    assert set(result["metrics"]) == {"test_f1"} and 0.0 <= result["metrics"]["test_f1"] <= 1.0
    assert [epoch for epoch, _ in json.loads((out / "val_history.json").read_text())["val_f1"]] == [1, 2]


@pytest.mark.parametrize("seg_task,classes", [("lesions", 4), ("vessels", 1)])
def test_finetune_segmentation_tasks(pipeline, seg_task, classes):
    run_bundle(
        BUNDLE, ["common.json", "finetune_seg.json"], "train", **pipeline["common"],
        init="random", seg_task=seg_task, finetune_epochs=1, label_fraction=0.5,
    )  # fmt: skip
    run = next((pipeline["root"] / "runs" / "finetune" / seg_task).glob("random_fraction0.5_seed0"))
    result = json.loads((run / "test_metrics.json").read_text())
    assert len(result["per_class"]) == classes and len(result["classes"]) == classes
    assert result["metric"] == ("auc_pr" if seg_task == "lesions" else "f1")
    assert result["n_train"] < 9  # half of the 60% training split, whole patients at a time


def test_stage1_refuses_bad_images_before_writing_anything(tmp_path):
    data = tmp_path / "data" / "pretrain"
    write_fundus_dataset(data, n=6, seed=0, image_size=64)
    whole = (data / "images" / "0_left.png").read_bytes()
    (data / "images" / "0_left.png").write_bytes(whole[: len(whole) // 2])
    (data / "images" / "1_right.png").write_bytes(b"not an image")
    with pytest.raises(Exception) as raised:
        run_bundle(
            BUNDLE, ["common.json", "stage1.json"], "train", bundle_root=str(BUNDLE), dataset_dir=str(tmp_path / "data"),
            output_dir=str(tmp_path / "runs"), image_size=IMAGE_SIZE, width=WIDTH, num_workers=0,
        )  # fmt: skip
    message = "".join(str(e) for e in (raised.value, raised.value.__cause__) if e is not None)
    assert "2 problem(s)" in message and "0_left.png" in message and "1_right.png" in message
    assert not (tmp_path / "runs").exists()
