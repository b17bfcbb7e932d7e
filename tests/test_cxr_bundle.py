"""Every config of the chest X-ray bundle, run through MONAI's bundle machinery on tiny synthetic radiographs."""

import json
from pathlib import Path

import monai.bundle
import numpy as np
import pytest
import torch

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.networks import UNetEncoder
from camcontrast_monai.synthetic import write_chestxray14_dataset, write_siim_dataset

BUNDLE = bundle_path("camcontrast_cxr")
SCHEMA = BUNDLE.parents[1] / "schemas" / "meta_schema.json"
IMAGE_SIZE, WIDTH = 64, 4

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr_bundle")
    write_chestxray14_dataset(root / "data" / "chestxray14", n=20, seed=0, image_size=IMAGE_SIZE, progress=False)
    write_siim_dataset(root / "data" / "siim", n=10, seed=0, image_size=32, progress=False)
    return root


def _common(root: Path, name: str) -> dict:
    return {
        "bundle_root": str(BUNDLE),
        "dataset_dir": str(root / "data"),
        "output_dir": str(root / name),
        "encoder_path": str(root / name / "model.pt"),
        "width": WIDTH,
        "num_workers": 0,
    }


@pytest.fixture(scope="module")
def binary(data):
    """The paper's main setting: coarse labels -> stage 1 -> heatmaps -> stage 2."""
    common = _common(data, "binary")
    stage1 = run_bundle(
        BUNDLE, ["common.json", "stage1.json"], "train", **common, image_size=IMAGE_SIZE,
        stage1_epochs=1, stage1_batch_size=4, stage1_val_fraction=0.25, tracking="mlflow", run_name="stage1",
    )  # fmt: skip
    run_bundle(BUNDLE, ["common.json", "heatmaps.json"], **common, image_size=IMAGE_SIZE)
    run_bundle(
        BUNDLE, ["common.json", "pretrain.json"], "train", **common, image_size=IMAGE_SIZE,
        pretrain_epochs=1, pretrain_batch_size=20,
    )  # fmt: skip
    return {"common": common, "stage1": stage1}


def test_binary_chain_trains_on_the_official_training_list_and_saves_the_encoder(data, binary, mlflow_runs):
    runs = Path(binary["common"]["output_dir"])
    tracked = mlflow_runs(runs)["stage1"]  # --tracking mlflow, MONAI's default settings
    assert [step for step, _ in tracked["train_loss"]] == list(range(1, len(tracked["train_loss"]) + 1)) and tracked["val_auc"]
    train_val = set((data / "data" / "chestxray14" / "train_val_list.txt").read_text().split())
    heatmaps = json.loads((runs / "heatmaps" / "heatmap_datalist.json").read_text())
    assert {Path(d["image"]).name for d in heatmaps} == train_val  # test-list images are never pretrained on
    for entry in heatmaps:
        heatmap = np.load(entry["heatmap"])
        assert heatmap.shape == (IMAGE_SIZE // 16, IMAGE_SIZE // 16) and 0 <= heatmap.min() and heatmap.max() <= 1
        assert len(entry["targets"]) == 5  # the stage-1 classes ride along as plain numbers
        if entry["label"] == 0:
            assert not heatmap.any()
    losses = json.loads((runs / "stage1" / "loss_history.json").read_text())
    assert set(losses) == {"loss", "cross_entropy", "attention"}
    classifier = binary["stage1"].parser.get_parsed_content("network")
    assert classifier.classifier.out_features == 2
    state = torch.load(binary["common"]["encoder_path"], weights_only=True)
    assert state["conv_0.conv_0.conv.weight"].shape[1] == 1  # one grayscale input channel


def test_multilabel_stage1_heatmap_averages_positive_class_cams(data):
    common = _common(data, "multilabel")
    stage1 = run_bundle(
        BUNDLE, ["common.json", "stage1.json"], "train", **common, image_size=IMAGE_SIZE, multilabel=True,
        stage1_epochs=1, stage1_batch_size=4, stage1_val_fraction=0.25,
    )  # fmt: skip
    classifier = stage1.parser.get_parsed_content("network").eval()
    assert classifier.classifier.out_features == 5
    runs = Path(common["output_dir"])
    assert set(json.loads((runs / "stage1" / "loss_history.json").read_text())) == {"loss"}
    assert set(json.loads((runs / "stage1" / "val_history.json").read_text())) == {"val_auc"}
    paired = run_bundle(BUNDLE, ["common.json", "heatmaps.json"], **common, image_size=IMAGE_SIZE, multilabel=True)
    entries = json.loads((runs / "heatmaps" / "heatmap_datalist.json").read_text())
    load = monai.transforms.Compose(paired.parser.get_parsed_content("load_image"))
    checked = 0
    for entry in entries:
        heatmap = torch.from_numpy(np.load(entry["heatmap"]))
        if not any(entry["targets"]):
            assert not heatmap.any()  # abnormal or not, no positive stage-1 class: empty heatmap
            continue
        image = torch.as_tensor(load({"image": entry["image"]})["image"])[None]
        with torch.no_grad():
            cams = classifier.cams(image)[0]
        positive = [k for k, value in enumerate(entry["targets"]) if value]
        maps = [(cams[k] - cams[k].min()) / (cams[k].max() - cams[k].min()) for k in positive]
        foreground = torch.nn.functional.adaptive_avg_pool2d((image[0] > 15 / 255).float(), heatmap.shape)[0]
        torch.testing.assert_close(heatmap, sum(maps) / len(maps) * foreground, rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked >= 3


def test_linear_evaluation_keeps_the_encoder_and_its_batchnorm_statistics_frozen(data, binary):
    common = binary["common"]
    workflow = run_bundle(
        BUNDLE, ["common.json", "finetune_cls.json"], "train", **common, init="camcontrast",
        finetune_epochs=1, finetune_batch_size=4, image_size=32, crop_size=32,
    )  # fmt: skip
    network = workflow.parser.get_parsed_content("network")
    pretrained = torch.load(common["encoder_path"], weights_only=True)
    for key, value in network.encoder.state_dict().items():
        assert torch.equal(value, pretrained[key]), f"{key} changed during linear evaluation"
    assert any("running_mean" in key for key in pretrained)
    result = json.loads(next(Path(common["output_dir"]).glob("finetune/chestxray14/*/test_metrics.json")).read_text())
    test_list = (data / "data" / "chestxray14" / "test_list.txt").read_text().split()
    assert result["n_test"] == len(test_list) and result["n_train"] + result["n_val"] + result["n_test"] == 20
    assert len(result["per_class"]) == len(result["classes"]) == 14 and result["linear_evaluation"] is True
    present = [auc for auc in result["per_class"] if auc is not None]
    assert present and all(0.0 <= auc <= 1.0 for auc in present)
    assert result["metrics"]["test_mean_auc"] == pytest.approx(float(np.mean(present)))


def test_pneumothorax_segmentation_from_dicom_and_rle_at_a_label_fraction(data):
    common = _common(data, "seg")
    run_bundle(
        BUNDLE, ["common.json", "finetune_seg.json"], "train", **common, init="random",
        finetune_epochs=1, image_size=32, label_fraction=0.5,
    )  # fmt: skip
    run = Path(common["output_dir"]) / "finetune" / "pneumothorax" / "random_fraction0.5_seed0"
    result = json.loads((run / "test_metrics.json").read_text())
    assert result["classes"] == ["pneumothorax"] and result["n_val"] + result["n_test"] == 4
    assert result["n_train"] == 3  # half of the 6 training images, one image per patient
    assert [epoch for epoch, _ in json.loads((run / "val_history.json").read_text())["val_score"]] == [1]


def test_metadata_verifies_offline_and_inference_writes_grayscale_embeddings(data, binary):
    monai.bundle.verify_metadata(meta_file=str(BUNDLE / "configs" / "metadata.json"), filepath=str(SCHEMA))
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["version"] == "0.10.0" and {"0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "0.9.0", "0.10.0"} <= set(meta["changelog"])
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    common = binary["common"]
    run_bundle(BUNDLE, ["inference.json"], **common, image_size=IMAGE_SIZE)  # inference.json stands alone
    embeddings = np.load(Path(common["output_dir"]) / "embeddings.npz")
    assert embeddings[embeddings.files[0]].shape[-1] == 16 * WIDTH


def test_network_io_and_torchscript_export_with_one_channel(tmp_path):
    configs = [str(BUNDLE / "configs" / "inference.json")]  # as the model zoo reads it: alone
    monai.bundle.verify_net_in_out(
        net_id="network_def", meta_file=str(BUNDLE / "configs" / "metadata.json"), config_file=configs, device="cpu",
        bundle_root=str(BUNDLE), width=2,
        **{"_meta_#network_data_format#inputs#image#spatial_shape": [32, 48], "_meta_#network_data_format#outputs#pred#num_channels": 32},
    )  # fmt: skip
    torch.manual_seed(0)
    state = UNetEncoder(spatial_dims=2, in_channels=1, width=2).state_dict()
    torch.save(state, tmp_path / "model.pt")
    monai.bundle.ckpt_export(
        net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(tmp_path / "model.pt"),
        meta_file=str(BUNDLE / "configs" / "metadata.json"), config_file=configs, bundle_root=str(BUNDLE), width=2,
    )  # fmt: skip
    scripted = torch.jit.load(str(tmp_path / "model.ts"), map_location="cpu").eval()
    eager = UNetEncoder(spatial_dims=2, in_channels=1, width=2).eval()
    eager.load_state_dict(state)
    x = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("configs,overrides", [
    (["pretrain.json"], {"crop_strategy": "random", "discard_normal": True, "batched_augmentation": "false"}),
    (["pretrain.json", "pretrain_baseline.json", "pretrain_simclr.json"], {"fixed_crops": "true"}),
    (["pretrain.json", "pretrain_baseline.json", "pretrain_supcon.json"], {"fixed_crops": False}),
])  # fmt: skip
def test_the_2d_stage2_switches_and_baselines_run_on_chest_xrays(binary, tmp_path, configs, overrides):
    """The fundus bundle's stage-2 ablation switches and baseline configs, shared by both 2D bundles."""
    common = {**binary["common"], "encoder_path": str(tmp_path / "encoder.pt"), "pretrain_run_dir": str(tmp_path / "run")}
    run_bundle(
        BUNDLE, ["common.json", *configs], "train", **common, **overrides, image_size=IMAGE_SIZE,
        pretrain_epochs=1, pretrain_batch_size=10,
    )  # fmt: skip
    state = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert state["conv_0.conv_0.conv.weight"].shape[1] == 1  # a one-channel (radiograph) encoder
