"""ChestX-ray14 and SIIM-ACR readers, on files written byte for byte in the real data sets' formats."""

import json
from pathlib import Path

import itk
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from camcontrast_monai.apps.bundle import bundle_path
from camcontrast_monai.data import (
    CHESTXRAY14_LABELS,
    chestxray14_splits,
    read_chestxray14,
    read_siim_acr,
    read_siim_rle,
    rle_decode,
    rle_encode,
)
from camcontrast_monai.transforms import RLEMask

# the real header, verbatim: the bracketed names hold commas, so csv splits them into four columns
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
DATA_ENTRY_ROWS = [
    "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
    "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171",
    "00000003_000.png,Hernia,0,3,81,F,PA,2582,2991,0.143,0.143",
    "00000003_001.png,Pleural_Thickening|Effusion|Hernia,1,3,74,F,AP,2500,2048,0.168,0.168",
    "00000004_000.png,Mass|Nodule,0,4,82,M,AP,2500,2048,0.168,0.168",
]


def _write_chestxray14(folder: Path, rows=DATA_ENTRY_ROWS, trailing_comma=False, test=("00000003_000.png", "00000003_001.png")):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    end = ",\n" if trailing_comma else "\n"
    (folder / "Data_Entry_2017.csv").write_text(DATA_ENTRY_HEADER + end + "".join(row + end for row in rows))
    names = [row.split(",")[0] for row in rows]
    for name in names:
        (folder / "images" / name).write_bytes(b"")
    (folder / "train_val_list.txt").write_text("".join(f"{n}\n" for n in names if n not in test))
    (folder / "test_list.txt").write_text("".join(f"{n}\n" for n in test))
    return folder


@pytest.mark.parametrize("trailing_comma", [False, True])
def test_data_entry_gives_coarse_and_fourteen_fine_labels(tmp_path, trailing_comma):
    folder = _write_chestxray14(tmp_path, trailing_comma=trailing_comma)
    datalist = read_chestxray14(folder / "Data_Entry_2017.csv", folder / "images")
    assert [d["label"] for d in datalist] == [1, 1, 0, 1, 1, 1]
    assert datalist[1]["findings"] == ["Cardiomegaly", "Emphysema"]
    assert np.flatnonzero(datalist[1]["targets"]).tolist() == [1, 10]  # Cardiomegaly, Emphysema
    assert np.flatnonzero(datalist[4]["targets"]).tolist() == [2, 12, 13]  # Effusion, Pleural_Thickening, Hernia
    assert not datalist[2]["targets"].any() and datalist[2]["targets"].shape == (14,)
    assert [d["patient_id"] for d in datalist] == ["1", "1", "2", "3", "3", "4"]
    assert datalist[1]["follow_up"] == 1
    assert datalist[0]["image"] == str(folder / "images" / "00000001_000.png")
    assert len(CHESTXRAY14_LABELS) == 14 and CHESTXRAY14_LABELS[12] == "Pleural_Thickening"


def test_official_lists_select_images_and_split_is_patient_disjoint(tmp_path):
    folder = _write_chestxray14(tmp_path)
    args = [folder / "Data_Entry_2017.csv", folder / "images", folder / "train_val_list.txt", folder / "test_list.txt"]
    splits = chestxray14_splits(*args, val_fraction=0.34, seed=3)
    assert sorted(d["patient_id"] for d in splits["test"]) == ["3", "3"]
    patients = {name: {d["patient_id"] for d in entries} for name, entries in splits.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] | patients["val"]) & patients["test"]
    assert sorted(patients["train"] | patients["val"]) == ["1", "2", "4"]
    images = {name: [d["image"] for d in entries] for name, entries in splits.items()}
    again = chestxray14_splits(*args, val_fraction=0.34, seed=3)
    assert {name: [d["image"] for d in entries] for name, entries in again.items()} == images  # seeded
    # two images of patient 1 on the test list while patient 1's other image trains: refused
    (folder / "test_list.txt").write_text("00000001_001.png\n")
    (folder / "train_val_list.txt").write_text("00000001_000.png\n00000002_000.png\n")
    with pytest.raises(ValueError, match="1 patient"):
        chestxray14_splits(*args)


def test_data_entry_errors_name_file_and_row(tmp_path):
    rows = DATA_ENTRY_ROWS[:2] + ["00000002_000.png,No Finding|Mass,0,2,81,M,PA,2500,2048,0.171,0.171"]
    folder = _write_chestxray14(tmp_path / "mixed", rows=rows, test=())
    with pytest.raises(ValueError, match=r"Data_Entry_2017.csv, row 4: .*mixes 'No Finding'"):
        read_chestxray14(folder / "Data_Entry_2017.csv", folder / "images")
    rows = DATA_ENTRY_ROWS[:1] + ["00000001_001.png,Pleural Thickening,1,1,58,M,PA,2894,2729,0.143,0.143"]
    folder = _write_chestxray14(tmp_path / "typo", rows=rows, test=())
    with pytest.raises(ValueError, match=r"row 3: .*unknown label\(s\) \['Pleural Thickening'\]"):
        read_chestxray14(folder / "Data_Entry_2017.csv", folder / "images")


# SIIM-ACR: H=4 rows, W=3 columns; column-major index = column * 4 + row
def test_rle_decode_is_column_major_with_relative_starts():
    # run 1: pixels 1-2 (column 0, rows 1-2); run 2 starts 3 after pixel 3 ends it: pixel 6 (column 1, row 2)
    mask = rle_decode("1 2 3 1", height=4, width=3)
    expected = np.zeros((4, 3), dtype=np.uint8)
    expected[1, 0] = expected[2, 0] = 1
    expected[2, 1] = 1
    np.testing.assert_array_equal(mask, expected)
    assert not rle_decode("-1", 4, 3).any() and not rle_decode(" -1", 4, 3).any()
    np.testing.assert_array_equal(rle_decode("11 1", 4, 3), np.eye(1, 12, 11).reshape(3, 4).T)  # last pixel: row 3, column 2
    with pytest.raises(ValueError, match="exceeds"):
        rle_decode("11 2", 4, 3)
    with pytest.raises(ValueError, match="odd count"):
        rle_decode("1 2 3", 4, 3)


def test_rle_encode_inverts_decode_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = (rng.random((9, 7)) < 0.3).astype(np.uint8)
        np.testing.assert_array_equal(rle_decode(rle_encode(mask), 9, 7), mask)
    assert rle_encode(np.zeros((5, 5))) == "-1"
    assert rle_encode(np.array([[0, 0], [1, 0], [1, 1]])) == "1 2 2 1"  # H=3: pixels 1,2 then 5 (column 1, row 2)


def test_siim_csv_unions_rows_and_reads_empty_masks(tmp_path):
    csv_path = tmp_path / "train-rle.csv"
    csv_path.write_text(
        "ImageId, EncodedPixels\n"
        "1.2.276.0.7230010.3.1.4.8323329.1.1, -1\n"
        "1.2.276.0.7230010.3.1.4.8323329.2.1, 1 2 3 1\n"
        "1.2.276.0.7230010.3.1.4.8323329.2.1, 10 1\n"
    )
    codes = read_siim_rle(csv_path)
    assert codes == {"1.2.276.0.7230010.3.1.4.8323329.1.1": [], "1.2.276.0.7230010.3.1.4.8323329.2.1": ["1 2 3 1", "10 1"]}
    union = RLEMask()(codes["1.2.276.0.7230010.3.1.4.8323329.2.1"], (4, 3))
    assert union.shape == (1, 4, 3) and union.dtype == torch.float32
    assert torch.nonzero(union[0]).tolist() == [[1, 0], [2, 0], [2, 1], [2, 2]]  # pixel 10: column 2, row 2
    assert not RLEMask()(codes["1.2.276.0.7230010.3.1.4.8323329.1.1"], (4, 3)).any()
    csv_path.write_text("ImageId, EncodedPixels\nA, 1 2\nA, -1\n")
    with pytest.raises(ValueError, match=r"train-rle.csv, row 3: image A is listed as empty"):
        read_siim_rle(csv_path)
    csv_path.write_text("ImageId, EncodedPixels\nA, 1 x\n")
    with pytest.raises(ValueError, match=r"row 2: EncodedPixels '1 x'"):
        read_siim_rle(csv_path)


def test_dicom_pixel_and_mask_pixel_land_together_through_the_bundle_transforms(tmp_path):
    """A bright DICOM pixel at row 1, column 6 and an RLE mask of that pixel decode to the same place."""
    height = width = 8  # square, so the bundle's resize to (8, 8) is exact; row != column catches a transpose
    row, column = 1, 6
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[row, column] = 255
    image_id = "1.2.276.0.7230010.3.1.4.8323329.300.1517875162.258081"
    folder = tmp_path / "dicom-images-train" / "1.2.276.0.7230010.3.1.2" / "1.2.276.0.7230010.3.1.3"
    folder.mkdir(parents=True)
    itk.imwrite(itk.image_from_array(pixels), str(folder / f"{image_id}.dcm"))
    (tmp_path / "train-rle.csv").write_text(f"ImageId, EncodedPixels\n{image_id}, {column * height + row} 1\n")
    datalist = read_siim_acr(tmp_path / "train-rle.csv", tmp_path / "dicom-images-train")
    assert datalist == [{"image": str(folder / f"{image_id}.dcm"), "rle": [f"{column * height + row} 1"], "patient_id": image_id}]

    bundle = bundle_path("camcontrast_cxr")
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "common.json"), str(bundle / "configs" / "finetune_seg.json")])
    parser["image_size"] = height
    loaded = Compose(parser.get_parsed_content("load_sample"))(datalist[0])
    image, label = loaded["image"], loaded["label"]
    assert image.shape == label.shape == (1, height, height)
    assert torch.nonzero(label[0]).tolist() == [[row, column]]
    assert torch.equal(torch.nonzero(image[0] == image.max()), torch.nonzero(label[0]))


def test_siim_reader_reports_missing_dicoms(tmp_path):
    (tmp_path / "dicom").mkdir()
    (tmp_path / "train-rle.csv").write_text("ImageId, EncodedPixels\nabc, -1\n")
    with pytest.raises(FileNotFoundError, match=r"1 listed image\(s\) have no <ImageId>.dcm .*abc"):
        read_siim_acr(tmp_path / "train-rle.csv", tmp_path / "dicom")


def test_heatmap_datalist_json_keeps_multilabel_targets_as_numbers(tmp_path):
    from camcontrast_monai.engines.heatmaps import _json_value

    assert json.loads(json.dumps({"targets": np.array([1.0, 0.0], dtype=np.float32)}, default=_json_value)) == {"targets": [1.0, 0.0]}
