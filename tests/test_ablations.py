"""Each CAMContrast ablation switch (paper Tables 3, 4, 6, Fig. 5) changes what it names and nothing else."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.apps.compare import ABLATIONS
from camcontrast_monai.networks import CAMClassifier, unweighted_heatmaps
from camcontrast_monai.synthetic import write_fundus_dataset
from camcontrast_monai.transforms import BackgroundSuppression, RandPairedCropd

BUNDLE = bundle_path()
N_IMAGES, SIZE, WIDTH = 10, 32, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data, a random stage-1 classifier, and heatmaps for every heatmap switch."""
    root = tmp_path_factory.mktemp("ablations")
    write_fundus_dataset(root / "data" / "pretrain", n=N_IMAGES, seed=0, image_size=64)
    common = {"bundle_root": str(BUNDLE), "dataset_dir": str(root / "data"), "width": WIDTH, "image_size": SIZE, "num_workers": 0}
    torch.manual_seed(0)
    classifier = CAMClassifier(width=WIDTH)
    (root / "stage1").mkdir()
    torch.save(classifier.state_dict(), root / "stage1" / "classifier.pt")
    heatmaps = {}
    # "false" is what `python -m monai.bundle run --negative_suppression false` passes (fire keeps lowercase a string)
    variants = {"default": {}, **{k: ABLATIONS[k] for k in HEATMAP_ABLATIONS}, "lowercase_false": {"negative_suppression": "false"}}
    for name, overrides in variants.items():
        run_bundle(
            BUNDLE, ["common.json", "heatmaps.json"], **common, **overrides, output_dir=str(root / name),
            classifier_path=str(root / "stage1" / "classifier.pt"),
        )  # fmt: skip
        datalist = json.loads((root / name / "heatmaps" / "heatmap_datalist.json").read_text())
        heatmaps[name] = {entry["image"]: (entry["label"], np.load(entry["heatmap"])) for entry in datalist}
    return {"root": root, "common": common, "heatmaps": heatmaps, "classifier": classifier}


HEATMAP_ABLATIONS = ("no_negative_suppression", "no_background_suppression", "unweighted_heatmaps")


def _parser(setup, configs, **overrides):
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / name) for name in configs])
    values = {**setup["common"], "output_dir": str(setup["root"] / "default"), **overrides}
    for key, value in values.items():
        parser[key] = value
    return parser


def test_no_attention_sets_only_the_attention_weight_to_zero(setup):
    default = _parser(setup, ["common.json", "stage1.json"])
    ablated = _parser(setup, ["common.json", "stage1.json"], **ABLATIONS["no_attention"])
    assert default.get_parsed_content("loss").attention_weight == 0.01
    loss = ablated.get_parsed_content("loss")
    logits, cams, labels = torch.randn(4, 2), torch.randn(4, 2, 3, 3), torch.tensor([0, 0, 1, 0])
    terms = loss.terms(logits, cams, labels)
    assert loss.attention_weight == 0.0 and torch.equal(terms["loss"], terms["cross_entropy"])
    assert ablated.get_parsed_content("stage1_lr") == default.get_parsed_content("stage1_lr")


def test_no_negative_suppression_changes_only_normal_heatmaps(setup):
    default, ablated = setup["heatmaps"]["default"], setup["heatmaps"]["no_negative_suppression"]
    labels = Counter(label for label, _ in default.values())
    assert labels[0] > 0 and labels[1] > 0
    for image, (label, heatmap) in default.items():
        if label == 0:
            assert not heatmap.any() and ablated[image][1].any()
        else:
            np.testing.assert_array_equal(ablated[image][1], heatmap)


def test_a_lowercase_false_override_turns_negative_suppression_off(setup):
    lowercase, ablated = setup["heatmaps"]["lowercase_false"], setup["heatmaps"]["no_negative_suppression"]
    assert sum(label == 0 and heatmap.any() for label, heatmap in lowercase.values()) > 0
    for image, (_, heatmap) in lowercase.items():
        np.testing.assert_array_equal(heatmap, ablated[image][1])


def test_no_background_suppression_leaves_out_only_the_foreground_weighting(setup):
    default, ablated = setup["heatmaps"]["default"], setup["heatmaps"]["no_background_suppression"]
    load = Compose(_parser(setup, ["common.json", "heatmaps.json"]).get_parsed_content("load_image"))
    changed = 0
    for image, (label, heatmap) in default.items():
        if label == 0:
            assert not ablated[image][1].any()  # negative suppression still zeroes normal images
            continue
        # default = ablated x (fraction of foreground pixels under each heatmap cell)
        fraction = BackgroundSuppression(15, 1.0).foreground_fraction(load({"image": image})["image"], heatmap.shape)
        np.testing.assert_allclose(heatmap, ablated[image][1] * fraction[0].numpy(), atol=1e-6)
        changed += int((heatmap != ablated[image][1]).sum())
    assert changed > 0  # the fundus images have dark corners


def test_unweighted_heatmaps_are_the_normalised_feature_sum(setup):
    default, ablated = setup["heatmaps"]["default"], setup["heatmaps"]["unweighted_heatmaps"]
    image_path, (label, heatmap) = next((k, v) for k, v in ablated.items() if v[0] == 1)
    assert not np.array_equal(heatmap, default[image_path][1])
    load = Compose(_parser(setup, ["common.json", "heatmaps.json"]).get_parsed_content("load_image"))
    image = torch.as_tensor(load({"image": image_path})["image"]).float()[None]
    classifier = setup["classifier"]
    features = classifier.encoder.eval()(image).sum(dim=1)[0]
    expected = (features - features.min()) / (features.max() - features.min())
    # background suppression still applies on top: x (fraction of foreground pixels under each cell)
    fraction = BackgroundSuppression(15, 1.0).foreground_fraction(image[0], heatmap.shape)[0]
    np.testing.assert_allclose(heatmap, (expected * fraction).detach().numpy(), atol=1e-5)
    assert unweighted_heatmaps(classifier, image).shape == (1, 1, *heatmap.shape)


def _dataset(setup, **overrides):
    parser = _parser(setup, ["common.json", "pretrain.json"], **overrides)
    return parser, parser.get_parsed_content("train#dataset")


@pytest.mark.parametrize(
    "strategy,samples_per_image,image_side,heatmap_side,epochs_factor",
    [("five", 5, 16, 1, 1), ("four", 4, 16, 1, 1), ("none", 1, 32, 2, 5), ("random", 1, 16, 1, 5)],
)
def test_crop_strategy_changes_the_crops_and_keeps_the_step_budget(setup, strategy, samples_per_image, image_side, heatmap_side, epochs_factor):
    parser, dataset = _dataset(setup, crop_strategy=strategy, pretrain_epochs=2, crop_size=8)
    assert len(dataset) == N_IMAGES * samples_per_image
    sample = dataset[0]
    # 32-px images have a 2x2 heatmap (U-Net features at 1/16); the workers serve unaugmented crops
    # (the whole image for "none"), and the trainer's batch augmentation resizes them to crop_size
    assert tuple(sample["image"].shape) == (3, image_side, image_side)
    assert tuple(sample["heatmap"].shape) == (1, heatmap_side, heatmap_side)
    augment = parser.get_parsed_content("train#batch_augmentation")
    assert augment(sample["image"][None], 0).shape == (1, 3, 8, 8)
    assert parser.get_parsed_content("stage2_epochs") == 2 * epochs_factor


def test_per_crop_augmentation_switch_augments_in_the_workers(setup):
    parser, dataset = _dataset(setup, batched_augmentation=False, crop_size=8)
    assert parser.get_parsed_content("train#batch_augmentation") is None
    assert parser.get_parsed_content("train#trainer").batch_augmentation is None
    assert tuple(dataset[0]["image"].shape) == (3, 8, 8)  # augmented (resized to crop_size) per crop


def test_shipped_auto_augments_in_the_loader_workers_on_a_cpu(setup):
    """The bundle's "auto": the workers augment each crop on a CPU; without workers the trainer augments batches."""
    workers = _parser(setup, ["common.json", "pretrain.json"], **{"train#dataloader#num_workers": 2})
    assert workers["batched_augmentation"] == "auto"
    assert workers.get_parsed_content("augment_in_batches") is False
    assert workers.get_parsed_content("train#batch_augmentation") is None
    batched = _parser(setup, ["common.json", "pretrain.json"])
    assert batched.get_parsed_content("augment_in_batches") is True
    in_workers, in_batches = (p.get_parsed_content("train#crop_transform").transforms for p in (workers, batched))
    assert len(in_workers) == len(in_batches) + 1  # the per-crop augmentation, before the float cast


def test_unknown_crop_strategy_is_refused(setup):
    with pytest.raises(RuntimeError) as raised:
        _dataset(setup, crop_strategy="six")
    assert "unknown crop strategy 'six'" in str(raised.value.__cause__)


def test_random_paired_crop_cuts_image_and_heatmap_at_the_same_place():
    image = torch.arange(16 * 16.0).reshape(1, 16, 16)
    heatmap = torch.arange(4 * 4.0).reshape(1, 4, 4)
    crop = RandPairedCropd(["image", "heatmap"])
    crop.set_random_state(3)
    seen = set()
    for _ in range(20):
        out = crop({"image": image, "heatmap": heatmap})
        row, col = divmod(int(out["heatmap"][0, 0, 0]), 4)
        assert out["heatmap"].shape == (1, 2, 2) and out["image"].shape == (1, 8, 8)
        assert int(out["image"][0, 0, 0]) == (4 * row) * 16 + 4 * col
        seen.add((row, col))
    assert len(seen) > 3  # the position is random, over the 3 x 3 possible offsets


def test_discard_normal_drops_exactly_the_normal_images(setup):
    default = _parser(setup, ["common.json", "pretrain.json"]).get_parsed_content("pretrain_data")
    ablated = _parser(setup, ["common.json", "pretrain.json"], **ABLATIONS["discard_normal"]).get_parsed_content("pretrain_data")
    assert ablated == [d for d in default if d["label"] != 0] and len(ablated) < len(default)


def test_temperature_and_class_ratio_switches(setup):
    assert _parser(setup, ["common.json", "pretrain.json"], temperature=0.1).get_parsed_content("loss").temperature == 0.1
    full = _parser(setup, ["common.json"]).get_parsed_content("pretrain_datalist")
    counts = Counter(d["label"] for d in full)
    assert counts == {1: 6, 0: 4}  # 10 synthetic images at the default ratio 0.8 (4 normal : 5 abnormal, rounded)
    reduced = _parser(setup, ["common.json"], pretrain_class_ratio=0.5).get_parsed_content("pretrain_datalist")
    assert Counter(d["label"] for d in reduced) == {1: 6, 0: 3}
    assert all(d in full for d in reduced)
