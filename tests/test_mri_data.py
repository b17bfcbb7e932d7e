"""3D brain MRI data: sub-volume crops, NIfTI orientation, the synthetic cohort, the TSV reader, folds, summaries."""

import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from camcontrast_monai.apps.bundle import bundle_path
from camcontrast_monai.data import crossval_splits, patient_folds, read_clinica_tsv
from camcontrast_monai.report.crossval import crossval_table
from camcontrast_monai.synthetic import generate_brain, mri_affine, write_mri_dataset
from camcontrast_monai.transforms import FitVolume, FixedCrops, fixed_crop_names

CONFIGS = bundle_path("camcontrast_mri3d") / "configs"


def test_ten_sub_volumes_of_an_80x96x80_index_volume():
    index = torch.arange(80 * 96 * 80).reshape(1, 80, 96, 80)
    crops = FixedCrops()(index)
    assert fixed_crop_names(3) == ("h0-TL", "h0-TR", "h0-BL", "h0-BR", "h0-C", "h1-TL", "h1-TR", "h1-BL", "h1-BR", "h1-C")
    assert all(tuple(crop.shape) == (1, 40, 48, 40) for crop in crops)
    octants = [crop for name, crop in zip(fixed_crop_names(3), crops, strict=True) if not name.endswith("C")]
    covered = torch.cat([crop.flatten() for crop in octants]).sort().values
    assert torch.equal(covered, torch.arange(80 * 96 * 80)), "the 8 octants must cover every voxel exactly once"

    def origin(crop):  # the (d, h, w) position of a crop's first voxel in the whole volume
        return tuple(int(v) for v in np.unravel_index(int(crop[0, 0, 0, 0]), (80, 96, 80)))

    assert [origin(crop) for crop in crops] == [
        (0, 0, 0), (0, 0, 40), (0, 48, 0), (0, 48, 40), (0, 24, 20),
        (40, 0, 0), (40, 0, 40), (40, 48, 0), (40, 48, 40), (40, 24, 20),
    ]  # fmt: skip


def _load_image_transform(**overrides):
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "common.json"))
    parser.update(overrides)
    return Compose(parser.get_parsed_content("load_image"))


def test_nifti_round_trip_keeps_orientation_whatever_the_stored_axis_order(tmp_path):
    volume = np.zeros((80, 96, 80), dtype=np.float32)
    volume[20:40, 30:40, 50:60] = 1.0  # a bright block off-centre on every axis
    volume[60, 10, 5] = 0.5  # and one marker voxel
    ras = mri_affine()
    nib.save(nib.Nifti1Image(volume, ras), tmp_path / "ras.nii.gz")
    # the same head stored left-to-right and posterior-to-anterior flipped (LPS-like), with its affine saying so
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [79, 95, 0]
    nib.save(nib.Nifti1Image(volume[::-1, ::-1].copy(), ras @ flip), tmp_path / "lps.nii.gz")
    # and stored with the axes in another order (A, S, R)
    permute = np.eye(4)[[2, 0, 1, 3]]  # stored voxel (a, s, r) -> RAS voxel (r, a, s)
    nib.save(nib.Nifti1Image(volume.transpose(1, 2, 0).copy(), ras @ permute), tmp_path / "asr.nii.gz")

    load = _load_image_transform()
    loaded = {name: load({"image": str(tmp_path / f"{name}.nii.gz")})["image"] for name in ("ras", "lps", "asr")}
    for name, image in loaded.items():
        assert tuple(image.shape) == (1, 80, 96, 80), name
        assert float(image[0, 60, 10, 5]) == pytest.approx(0.5), name
        assert torch.equal(image[0] == 1.0, torch.from_numpy(volume == 1.0)), name
        assert np.allclose(image.affine.numpy(), ras), name


def test_fit_volume_zooms_pads_with_a_warning_and_refuses_wrong_dimensionality(caplog):
    fit = FitVolume((80, 96, 80))
    same = torch.rand(1, 80, 96, 80)
    assert fit(same) is same
    with caplog.at_level(logging.WARNING, logger="camcontrast_monai.transforms.volume"):
        # Clinica t1-linear's cropped size: one zoom factor min(80/169, 96/208, 80/179) = 0.447 for every axis
        out = fit(torch.ones(1, 169, 208, 179))
    assert tuple(out.shape) == (1, 80, 96, 80)
    assert "(169, 208, 179)" in caplog.text and "0.447" in caplog.text
    # 169 * 0.447 = 75.5 -> 76 voxels of head, padded with 2 zeros each side along the first axis
    assert out[0, :, 48, 40].nonzero().flatten().tolist() == list(range(2, 78))
    with pytest.raises(ValueError, match=r"3 spatial axes .* got shape \(1, 80, 96\)"):
        fit(torch.rand(1, 80, 96))


def test_synthetic_atrophy_grows_with_severity_on_the_same_subject():
    sessions = {
        a: generate_brain(np.random.default_rng(7), np.random.default_rng(8), a) for a in (0.0, 0.5, 1.0)
    }
    assert sessions[0.0].volume.shape == (80, 96, 80) and sessions[0.0].volume.dtype == np.float32
    assert sessions[0.0].atrophy_map.sum() == 0
    lost = [int(sessions[a].atrophy_map.sum()) for a in (0.5, 1.0)]
    assert 1000 < lost[0] < lost[1]
    # the atrophy of a = 0.5 is (almost entirely) part of the atrophy of a = 1.0
    overlap = (sessions[0.5].atrophy_map & sessions[1.0].atrophy_map).sum() / lost[0]
    assert overlap > 0.9
    # enlarged ventricles darken the centre of the brain
    centre = (slice(30, 50), slice(40, 60), slice(40, 55))
    assert sessions[1.0].volume[centre].mean() < sessions[0.0].volume[centre].mean() - 0.05
    again = generate_brain(np.random.default_rng(7), np.random.default_rng(8), 0.5)
    assert np.array_equal(again.volume, sessions[0.5].volume)


def test_written_cohort_is_nifti_in_clinica_layout_and_reads_back(tmp_path):
    manifest = write_mri_dataset(tmp_path, n_subjects=3, seed=3, max_sessions=2)
    assert manifest["subjects_per_diagnosis"] == {"CN": 1, "MCI": 1, "AD": 1}
    header = (tmp_path / "labels.tsv").read_text().splitlines()[0]
    assert header == "participant_id\tsession_id\tdiagnosis\tage\tsex"
    datalist = read_clinica_tsv(tmp_path / "labels.tsv", label="diagnosis")
    assert len(datalist) == manifest["n_sessions"]
    first = datalist[0]
    image = nib.load(first["image"])
    assert image.shape == (80, 96, 80) and nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert np.allclose(image.header.get_zooms(), (2.0, 2.0, 2.0))
    atrophy = nib.load(tmp_path / "atrophy" / f"{first['id']}_atrophy.nii.gz")
    assert np.array_equal(atrophy.affine, image.affine)
    severities = {(s["participant_id"], s["session_id"]): s["severity"] for s in manifest["sessions"]}
    for entry in datalist:
        assert entry["label"] == {"CN": 0, "MCI": 1, "AD": 2}[entry["diagnosis"]]
        has_atrophy = np.asarray(nib.load(tmp_path / "atrophy" / f"{entry['id']}_atrophy.nii.gz").dataobj).any()
        assert has_atrophy == (severities[(entry["patient_id"], entry["session_id"])] > 0)


def _tsv(path, rows, header="participant_id\tsession_id\tdiagnosis\timage"):
    path.write_text("\n".join([header, *("\t".join(row) for row in rows)]) + "\n")
    return path


def test_clinica_tsv_reader_labels_aliases_and_image_column(tmp_path):
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz", "d.nii"):
        (tmp_path / name).write_bytes(b"")
    tsv = _tsv(tmp_path / "labels.tsv", [
        ["sub-01", "ses-M000", "CN", "a.nii.gz"], ["sub-01", "ses-M012", "sMCI", "b.nii.gz"],
        ["sub-02", "ses-M000", "Dementia", "c.nii.gz"], ["sub-03", "ses-M000", "mci", "d.nii"],
    ])  # fmt: skip
    binary = read_clinica_tsv(tsv)
    assert [(d["diagnosis"], d["label"], d["class_index"]) for d in binary] == [
        ("CN", 0, 0), ("MCI", 1, 1), ("AD", 1, 2), ("MCI", 1, 1),
    ]  # fmt: skip
    assert binary[1]["image"] == str(tmp_path / "b.nii.gz")
    assert binary[1]["patient_id"] == "sub-01" and binary[1]["id"] == "sub-01_ses-M012"
    assert [d["label"] for d in read_clinica_tsv(tsv, label="diagnosis")] == [0, 1, 2, 1]


def test_clinica_tsv_reader_reports_every_problem(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    bad = _tsv(tmp_path / "bad.tsv", [
        ["sub-01", "ses-M000", "CN", "a.nii.gz"], ["sub-02", "ses-M000", "FTD", "a.nii.gz"],
        ["sub-03", "ses-M000", "AD", "a.nii.gz"], ["sub-03", "ses-M000", "AD", "a.nii.gz"],
    ])  # fmt: skip
    with pytest.raises(ValueError) as raised:
        read_clinica_tsv(bad)
    message = str(raised.value)
    assert "3 problem(s)" in message and "row 3: unknown diagnosis 'FTD'" in message
    assert "row 4: sub-03 ses-M000 appears 2 times" in message and "row 5" in message
    with pytest.raises(ValueError, match=r"missing column\(s\) \['diagnosis'\]"):
        read_clinica_tsv(_tsv(tmp_path / "cols.tsv", [["sub-01", "ses-M000"]], "participant_id\tsession_id"))
    # no image column: the CAPS template, and every missing file named
    caps = _tsv(tmp_path / "caps.tsv", [["sub-01", "ses-M000", "CN"], ["sub-02", "ses-M000", "AD"]], "participant_id\tsession_id\tdiagnosis")
    with pytest.raises(FileNotFoundError) as missing:
        read_clinica_tsv(caps)
    assert "2 image(s) not found" in str(missing.value)
    assert "subjects/sub-02/ses-M000/t1_linear/sub-02_ses-M000_T1w.nii.gz" in str(missing.value)


def _cohort(n_patients=40, seed=0):
    rng = np.random.default_rng(seed)
    datalist = []
    for patient in range(n_patients):
        diagnosis = patient % 3
        for session in range(int(rng.integers(1, 4))):
            datalist.append({"image": f"p{patient}_s{session}.nii.gz", "patient_id": f"sub-{patient:02d}", "class_index": diagnosis})
    return datalist


def test_holdout_and_folds_are_patient_disjoint_and_stratified():
    datalist = _cohort()
    splits = crossval_splits(datalist, n_folds=5, holdout_fraction=0.2, seed=1)

    def patients(entries):
        return {d["patient_id"] for d in entries}

    holdout = patients(splits["holdout"])
    assert len(holdout) == 9  # round(20% of 14, 13 and 13 patients per class) = 3 + 3 + 3
    assert {d["class_index"] for d in splits["holdout"]} == {0, 1, 2}
    vals = [patients(fold["val"]) for fold in splits["folds"]]
    assert all(not (a & b) for i, a in enumerate(vals) for b in vals[i + 1 :])
    assert all(not (v & holdout) for v in vals)
    assert set().union(*vals) == patients(splits["development"]) == patients(datalist) - holdout
    assert sorted(len(v) for v in vals) == [6, 6, 6, 6, 7]  # 31 development patients dealt round-robin
    for fold in splits["folds"]:
        assert not patients(fold["train"]) & patients(fold["val"])
        assert len(fold["train"]) + len(fold["val"]) == len(splits["development"])
    # the holdout does not depend on the number of folds
    assert patients(crossval_splits(datalist, n_folds=3, holdout_fraction=0.2, seed=1)["holdout"]) == holdout
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        patient_folds(datalist[:3], n_folds=5)


def test_crossval_table_selects_the_lr_by_mean_validation_auc_and_reports_mean_std():
    def run(val, test):
        return {"val": {"metrics": {"mean_auc": float(np.mean(val))}, "per_class": val},
                "test": {"metrics": {"mean_auc": float(np.mean(test))}, "per_class": test}}  # fmt: skip

    results = {
        "camcontrast": {
            0.01: {0: run([0.6, 0.5, 0.7], [0.6, 0.5, 0.7]), 1: run([0.8, 0.5, 0.9], [0.7, 0.6, 0.8])},
            0.1: {0: run([0.5, 0.5, 0.5], [0.9, 0.9, 0.9]), 1: run([0.5, 0.5, 0.5], [0.9, 0.9, 0.9])},
            0.001: {0: run([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])},  # one fold only: not eligible
        }
    }
    (row,) = crossval_table(results)
    assert row["method"] == "camcontrast" and row["lr"] == "0.01" and row["folds"] == 2
    assert row["validation CN"] == pytest.approx((70.0, 10.0))
    assert row["validation MCI"] == pytest.approx((50.0, 0.0))
    assert row["validation mean"] == pytest.approx((200 / 3, 20 / 3))  # fold means 0.6 and 0.7333
    assert row["test AD"] == pytest.approx((75.0, 5.0))
