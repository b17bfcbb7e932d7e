"""Same seed -> same splits, crops and first-epoch losses; no patient on two sides of any split."""

import json

import torch
from monai.transforms import Compose, Lambdad

from camcontrast_monai.apps.bundle import bundle_path, run_bundle
from camcontrast_monai.data import (
    FixedCropDataset,
    downstream_splits,
    read_odir_annotations,
    split_by_patient,
    subsample_by_patient,
)
from camcontrast_monai.synthetic import write_fundus_dataset
from camcontrast_monai.transforms import stage2_image_augmentation


def patients(entries):
    return {entry["patient_id"] for entry in entries}


def datalist_with_patients(n_patients=40, images_per_patient=(1, 2, 3)):
    entries = []
    for patient in range(n_patients):
        for k in range(images_per_patient[patient % len(images_per_patient)]):
            entries.append({"image": f"/data/{patient}_{k}.png", "label": patient % 2, "patient_id": str(patient)})
    return entries


def test_downstream_splits_and_label_fractions_never_share_a_patient():
    datalist = datalist_with_patients()
    for seed in range(5):
        for fraction in (0.1, 0.25, 0.5, 1.0):
            splits = downstream_splits(datalist, seed=seed, label_fraction=fraction)
            train, val, test = (patients(splits[name]) for name in ("train", "val", "test"))
            assert not (train & val or train & test or val & test)
            # every image of a kept patient is kept: fractions drop whole patients
            assert sum(e["patient_id"] in train for e in datalist) == len(splits["train"])


def test_splits_are_a_function_of_the_seed_and_test_set_of_the_seed_only():
    datalist = datalist_with_patients()
    assert downstream_splits(datalist, seed=3) == downstream_splits(datalist, seed=3)
    assert downstream_splits(datalist, seed=3)["test"] != downstream_splits(datalist, seed=4)["test"]
    small, full = downstream_splits(datalist, seed=3, label_fraction=0.25), downstream_splits(datalist, seed=3)
    assert small["test"] == full["test"] and small["val"] == full["val"]
    assert patients(small["train"]) < patients(full["train"])
    assert subsample_by_patient(full["train"], 0.5, seed=1) == subsample_by_patient(full["train"], 0.5, seed=1)


def test_stratified_splits_give_every_split_its_share_of_a_rare_class():
    # 50 one-image patients, 5 positives (the glaucoma task's kind of imbalance, at a size where it bites)
    datalist = [{"image": f"/data/{i}.png", "label": [int(i % 10 == 0)], "patient_id": str(i)} for i in range(50)]
    for seed in range(10):
        splits = downstream_splits(datalist, seed=seed, stratify_key="label")
        positives = {name: sum(e["label"][0] for e in entries) for name, entries in splits.items()}
        # 0.6/0.2/0.2 of 5 positives and 45 negatives: 3/1/1 and 27/9/9
        assert positives == {"train": 3, "val": 1, "test": 1}
        assert [len(splits[name]) for name in ("train", "val", "test")] == [30, 10, 10]
    # unstratified, some seed leaves a test split without a positive; that is what stratifying is for
    assert any(
        sum(e["label"][0] for e in downstream_splits(datalist, seed=seed)["test"]) == 0 for seed in range(10)
    )
    # a patient is one stratum, by their first entry's label, and stays on one side
    with_patients = datalist_with_patients()
    splits = downstream_splits(with_patients, seed=0, stratify_key="label")
    train, val, test = (patients(splits[name]) for name in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)


def test_odir_pretraining_split_keeps_both_eyes_of_a_patient_together(tmp_path):
    write_fundus_dataset(tmp_path, n=30, seed=0, image_size=64)
    datalist = read_odir_annotations(tmp_path / "odir_annotations.csv", tmp_path / "images")
    train, val = split_by_patient(datalist, (0.8, 0.2), seed=0)
    assert patients(train).isdisjoint(patients(val))
    assert len(train) + len(val) == 30


def test_same_seed_gives_the_same_augmented_crops():
    images = [{"image": torch.rand(3, 32, 32), "heatmap": torch.rand(1, 2, 2), "label": 1} for _ in range(2)]

    def crops(seed):
        augment = Compose([stage2_image_augmentation(keys="image")]).set_random_state(seed=seed)
        dataset = FixedCropDataset(images, Lambdad("image", lambda x: x), augment, progress=False, num_workers=0)
        return [dataset[i]["image"] for i in range(len(dataset))]

    first, again, other = crops(7), crops(7), crops(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_same_seed_gives_the_same_first_epoch_losses(tmp_path):
    write_fundus_dataset(tmp_path / "data" / "pretrain", n=12, seed=0, image_size=64)
    bundle = bundle_path()

    def stage1_losses(run_dir, seed):
        run_bundle(
            bundle, ["common.json", "stage1.json"], "train", bundle_root=str(bundle), dataset_dir=str(tmp_path / "data"),
            output_dir=str(run_dir), image_size=32, width=2, num_workers=0, seed=seed,
            stage1_epochs=1, stage1_batch_size=3, stage1_val_fraction=0.25,
        )  # fmt: skip
        return json.loads((run_dir / "stage1" / "loss_history.json").read_text())

    first, again, other = stage1_losses(tmp_path / "a", 0), stage1_losses(tmp_path / "b", 0), stage1_losses(tmp_path / "c", 1)
    assert first == again
    assert len(first["loss"]) == 3
    assert first["loss"] != other["loss"]
