"""Tests for the data set readers: each writes a small file in the real data set's own layout."""

import csv
import logging
import re
import sys
from pathlib import Path

import pytest

from camcontrast_monai.data.readers import (
    read_idrid_grading,
    read_image_label_csv,
    read_odir_annotations,
    split_by_patient,
)

ODIR_HEADER = (
    "ID,Patient Age,Patient Sex,Left-Fundus,Right-Fundus,Left-Diagnostic Keywords,Right-Diagnostic Keywords,"
    "N,D,G,C,A,H,M,O"
).split(",")


def _odir_row(patient_id, left_fundus, right_fundus, left_keywords, right_keywords, flags="00000000"):
    """One sheet row; ``flags`` are the patient-level N,D,G,C,A,H,M,O columns."""
    return [
        patient_id,
        60,
        "Female",
        left_fundus,
        right_fundus,
        left_keywords,
        right_keywords,
        *map(int, flags),
    ]


# Patient-level N..O flags deliberately disagree with single eyes (patient 0 is N=0 though its right eye
# is normal) to show that labels come from each eye's own keywords.
ODIR_ROWS = [
    _odir_row(0, "0_left.jpg", "0_right.jpg", "cataract", "normal fundus", flags="00010000"),
    _odir_row(
        1,
        "1_left.jpg",
        "1_right.jpg",
        "normal fundus，lens dust",
        "moderate non proliferative retinopathy，laser spot",
        flags="01000001",
    ),
    _odir_row(2, "2_left.jpg", "2_right.jpg", "no fundus image", "Normal Fundus", flags="10000000"),
    # one-eye patient
    _odir_row(3, "3_left.jpg", "", "pathological myopia", "", flags="00000010"),
    _odir_row(
        4, "4_left.jpg", "4_right.jpg", "anterior segment image", "lens dust, low image quality,normal fundus"
    ),
]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really an image")
    return path


def _write_csv(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(rows)
    return path


def _write_xlsx(path: Path, rows: list[list]) -> Path:
    openpyxl = pytest.importorskip("openpyxl")
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


@pytest.fixture
def odir_images(tmp_path: Path) -> Path:
    image_dir = tmp_path / "ODIR-5K_Training_Dataset"
    for row in ODIR_ROWS:
        for file_name in row[3:5]:
            if file_name:
                _touch(image_dir / file_name)
    return image_dir


def _expected_odir(image_dir: Path) -> list[dict]:
    def entry(file_name, label, patient_id, eye, keywords):
        return {
            "image": str(image_dir / file_name),
            "label": label,
            "patient_id": patient_id,
            "eye": eye,
            "keywords": keywords,
        }

    return [
        entry("0_left.jpg", 1, "0", "left", ["cataract"]),
        entry("0_right.jpg", 0, "0", "right", ["normal fundus"]),
        entry("1_left.jpg", 0, "1", "left", ["normal fundus", "lens dust"]),
        entry("1_right.jpg", 1, "1", "right", ["moderate non proliferative retinopathy", "laser spot"]),
        # 2_left.jpg ("no fundus image") cannot be labelled and is skipped
        entry("2_right.jpg", 0, "2", "right", ["normal fundus"]),
        entry("3_left.jpg", 1, "3", "left", ["pathological myopia"]),
        # 4_left.jpg ("anterior segment image") cannot be labelled and is skipped
        entry("4_right.jpg", 0, "4", "right", ["lens dust", "low image quality", "normal fundus"]),
    ]


def test_odir_csv_gives_per_eye_binary_labels(tmp_path, odir_images, caplog):
    sheet = _write_csv(tmp_path / "annotations.csv", [ODIR_HEADER, *ODIR_ROWS])

    with caplog.at_level(logging.WARNING, logger="camcontrast_monai.data.readers"):
        datalist = read_odir_annotations(sheet, odir_images)

    assert datalist == _expected_odir(odir_images)
    skipped = [record.getMessage() for record in caplog.records]
    assert len(skipped) == 2
    assert "2_left.jpg" in skipped[0] and str(sheet) in skipped[0] and "row 4" in skipped[0]
    assert "4_left.jpg" in skipped[1] and "row 6" in skipped[1]


def test_odir_xlsx_matches_csv(tmp_path, odir_images):
    csv_sheet = _write_csv(tmp_path / "annotations.csv", [ODIR_HEADER, *ODIR_ROWS])
    xlsx_sheet = _write_xlsx(
        tmp_path / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx", [ODIR_HEADER, *ODIR_ROWS]
    )

    from_xlsx = read_odir_annotations(xlsx_sheet, odir_images)

    assert from_xlsx == read_odir_annotations(csv_sheet, odir_images)
    assert from_xlsx == _expected_odir(odir_images)


def test_odir_xlsx_row_numbers_match_excel(tmp_path, odir_images):
    rows = [ODIR_HEADER, *ODIR_ROWS, _odir_row(1, "9_left.jpg", "", "cataract", "")]
    xlsx_sheet = _write_xlsx(tmp_path / "annotations.xlsx", rows)

    with pytest.raises(ValueError, match=re.escape(f"{xlsx_sheet}, row 7: duplicate patient ID '1'")):
        read_odir_annotations(xlsx_sheet, odir_images)


def test_xlsx_without_openpyxl_says_how_to_install_it(tmp_path, odir_images, monkeypatch):
    sheet = tmp_path / "annotations.xlsx"
    sheet.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # makes "import openpyxl" fail

    with pytest.raises(ImportError, match=re.escape(f"Reading {sheet} needs openpyxl: pip install openpyxl")):
        read_odir_annotations(sheet, odir_images)


def test_unreadable_xlsx_names_the_file(tmp_path, odir_images):
    pytest.importorskip("openpyxl")
    not_a_workbook = tmp_path / "annotations.xlsx"
    not_a_workbook.write_text("ID,Left-Fundus\n")

    with pytest.raises(ValueError, match=re.escape(f"{not_a_workbook}: not a readable .xlsx workbook")):
        read_odir_annotations(not_a_workbook, odir_images)


def _odir_sheet_with(tmp_path: Path, extra_rows: list[list]) -> Path:
    return _write_csv(tmp_path / "annotations.csv", [ODIR_HEADER, *ODIR_ROWS, *extra_rows])


def test_odir_errors_name_file_and_row(tmp_path, odir_images):
    with pytest.raises(FileNotFoundError, match="ODIR annotation sheet not found: .*nowhere.csv"):
        read_odir_annotations(tmp_path / "nowhere.csv", odir_images)

    sheet = _odir_sheet_with(tmp_path, [])
    with pytest.raises(FileNotFoundError, match="ODIR image folder not found"):
        read_odir_annotations(sheet, tmp_path / "no_images")

    header_without_keywords = [name for name in ODIR_HEADER if name != "Left-Diagnostic Keywords"]
    sheet = _write_csv(tmp_path / "annotations.csv", [header_without_keywords])
    with pytest.raises(
        ValueError, match=r"missing required column\(s\) \['Left-Diagnostic Keywords'\]"
    ) as error:
        read_odir_annotations(sheet, odir_images)
    assert str(sheet) in str(error.value) and "found columns ['ID', 'Patient Age'" in str(error.value)

    sheet = _odir_sheet_with(tmp_path, [_odir_row(2, "7_left.jpg", "", "cataract", "")])
    with pytest.raises(
        ValueError, match=re.escape(f"{sheet}, row 7: duplicate patient ID '2' (first listed on row 4)")
    ):
        read_odir_annotations(sheet, odir_images)

    sheet = _odir_sheet_with(tmp_path, [_odir_row(7, "0_right.jpg", "", "cataract", "")])
    with pytest.raises(ValueError, match=re.escape(f"{sheet}, row 7: duplicate fundus image '0_right.jpg'")):
        read_odir_annotations(sheet, odir_images)

    sheet = _odir_sheet_with(tmp_path, [_odir_row(7, "7_left.jpg", "", "", "")])
    with pytest.raises(ValueError, match=re.escape(f"{sheet}, row 7: 'Left-Fundus' is '7_left.jpg' but")):
        read_odir_annotations(sheet, odir_images)

    sheet = _odir_sheet_with(tmp_path, [_odir_row("", "7_left.jpg", "", "cataract", "")])
    with pytest.raises(ValueError, match=re.escape(f"{sheet}, row 7: column 'ID' is empty")):
        read_odir_annotations(sheet, odir_images)


def test_odir_reports_every_missing_image(tmp_path, odir_images):
    sheet = _odir_sheet_with(
        tmp_path,
        [_odir_row(7, "7_left.jpg", "7_right.jpg", "cataract", "normal fundus")],
    )

    with pytest.raises(FileNotFoundError) as error:
        read_odir_annotations(sheet, odir_images)

    message = str(error.value)
    assert str(sheet) in message and "2 listed image file(s) do not exist" in message
    assert f"row 7: {odir_images / '7_left.jpg'}" in message
    assert f"row 7: {odir_images / '7_right.jpg'}" in message


IDRID_HEADER = ["Image name", "Retinopathy grade", "Risk of macular edema ", "", "", ""]


def _idrid_csv(tmp_path: Path, rows: list[list], header=IDRID_HEADER) -> Path:
    # the real files end in empty columns and empty rows
    padded = [[*row, "", "", ""] for row in rows]
    return _write_csv(
        tmp_path / "IDRiD_Disease Grading_Training Labels.csv", [header, *padded, [""] * 6, [""] * 6]
    )


@pytest.fixture
def idrid_images(tmp_path: Path) -> Path:
    image_dir = tmp_path / "a. Training Set"
    for file_name in ["IDRiD_001.jpg", "IDRiD_002.png", "IDRiD_003.tif", "IDRiD_004.jpg"]:
        _touch(image_dir / file_name)
    return image_dir


IDRID_ROWS = [["IDRiD_001", 3, 2], ["IDRiD_002", 0, 0], ["IDRiD_003", 2, 0], ["IDRiD_004", 0, 1]]


def _expected_idrid(image_dir: Path) -> list[dict]:
    return [
        {
            "image": str(image_dir / "IDRiD_001.jpg"),
            "dr_grade": 3,
            "dme_risk": 2,
            "joint_label": 11,
            "label": 1,
        },
        {
            "image": str(image_dir / "IDRiD_002.png"),
            "dr_grade": 0,
            "dme_risk": 0,
            "joint_label": 0,
            "label": 0,
        },
        {
            "image": str(image_dir / "IDRiD_003.tif"),
            "dr_grade": 2,
            "dme_risk": 0,
            "joint_label": 6,
            "label": 1,
        },
        {
            "image": str(image_dir / "IDRiD_004.jpg"),
            "dr_grade": 0,
            "dme_risk": 1,
            "joint_label": 1,
            "label": 1,
        },
    ]


def test_idrid_reads_real_layout(tmp_path, idrid_images):
    grading = _idrid_csv(tmp_path, IDRID_ROWS)

    assert read_idrid_grading(grading, idrid_images) == _expected_idrid(idrid_images)


def test_idrid_header_without_trailing_space(tmp_path, idrid_images):
    grading = _idrid_csv(
        tmp_path, IDRID_ROWS, header=["Image name", "Retinopathy grade", "Risk of macular edema"]
    )

    assert read_idrid_grading(grading, idrid_images) == _expected_idrid(idrid_images)


def test_idrid_xlsx_matches_csv(tmp_path, idrid_images):
    xlsx = _write_xlsx(tmp_path / "grading.xlsx", [IDRID_HEADER, *IDRID_ROWS, [None] * 6])

    assert read_idrid_grading(xlsx, idrid_images) == _expected_idrid(idrid_images)


def test_idrid_given_extension_is_the_only_one_tried(tmp_path, idrid_images):
    grading = _idrid_csv(tmp_path, [["IDRiD_002", 1, 1]])

    assert read_idrid_grading(grading, idrid_images, image_ext="png")[0]["image"] == str(
        idrid_images / "IDRiD_002.png"
    )
    with pytest.raises(FileNotFoundError, match=re.escape(f"row 2: {idrid_images / 'IDRiD_002'}(.jpg)")):
        read_idrid_grading(grading, idrid_images, image_ext=".jpg")


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        (["IDRiD_004", 5, 0], "column 'Retinopathy grade' is '5'; expected an integer from 0 to 4"),
        (["IDRiD_004", "two", 0], "column 'Retinopathy grade' is 'two'; expected an integer from 0 to 4"),
        (["IDRiD_004", 1.5, 0], "column 'Retinopathy grade' is '1.5'; expected an integer from 0 to 4"),
        (["IDRiD_004", 1, 3], "column 'Risk of macular edema' is '3'; expected an integer from 0 to 2"),
        (["IDRiD_004", 1, ""], "column 'Risk of macular edema' is ''; expected an integer from 0 to 2"),
        (["IDRiD_002", 1, 0], "duplicate image name 'IDRiD_002' (first listed on row 3)"),
    ],
)
def test_idrid_bad_rows_name_file_and_row(tmp_path, idrid_images, bad_row, expected):
    grading = _idrid_csv(tmp_path, [*IDRID_ROWS[:3], bad_row])

    with pytest.raises(ValueError, match=re.escape(f"{grading}, row 5: {expected}")):
        read_idrid_grading(grading, idrid_images)


def test_idrid_missing_column_and_files(tmp_path, idrid_images):
    with pytest.raises(FileNotFoundError, match="IDRiD grading CSV not found"):
        read_idrid_grading(tmp_path / "missing.csv", idrid_images)

    grading = _write_csv(tmp_path / "grading.csv", [["Image", "Retinopathy grade"], ["IDRiD_001", 1]])
    with pytest.raises(ValueError, match="missing required column") as error:
        read_idrid_grading(grading, idrid_images)
    assert str(grading) in str(error.value) and "found columns ['Image', 'Retinopathy grade']" in str(
        error.value
    )

    many_missing = [[f"IDRiD_1{number:02d}", 0, 0] for number in range(12)]
    grading = _idrid_csv(tmp_path, [*IDRID_ROWS, *many_missing])
    with pytest.raises(FileNotFoundError) as error:
        read_idrid_grading(grading, idrid_images)
    message = str(error.value)
    assert str(grading) in message and "12 listed image file(s) do not exist" in message
    assert f"row 6: {idrid_images / 'IDRiD_100'}(.jpg|.JPG|.png|.tif)" in message
    assert "IDRiD_109" in message and "IDRiD_110" not in message and "and 2 more" in message


def test_value_under_blank_header_is_rejected(tmp_path, idrid_images):
    grading = _write_csv(tmp_path / "grading.csv", [IDRID_HEADER, ["IDRiD_001", 1, 0, "", "oops", ""]])

    with pytest.raises(
        ValueError, match=re.escape(f"{grading}, row 2: value 'oops' in column 5 has no header")
    ):
        read_idrid_grading(grading, idrid_images)


def test_image_label_csv_resolves_paths_and_keeps_extra_columns(tmp_path):
    data_dir = tmp_path / "data"
    _touch(data_dir / "images" / "a.png")
    _touch(data_dir / "images" / "b.png")
    elsewhere = _touch(tmp_path / "elsewhere" / "c.png")
    table = _write_csv(
        data_dir / "labels.csv",
        [
            ["image", "label", "site"],
            ["images/a.png", 0, "x"],
            ["images/b.png", "1", "y"],
            [str(elsewhere), 1, ""],
        ],
    )

    assert read_image_label_csv(table) == [
        {"image": str(data_dir / "images" / "a.png"), "label": 0, "site": "x"},
        {"image": str(data_dir / "images" / "b.png"), "label": 1, "site": "y"},
        {"image": str(elsewhere), "label": 1, "site": ""},
    ]


def test_image_label_csv_custom_columns_and_base_dir(tmp_path):
    _touch(tmp_path / "pictures" / "a.png")
    table = _write_csv(tmp_path / "table.csv", [["path", "class"], ["a.png", 2]])

    datalist = read_image_label_csv(
        table, base_dir=tmp_path / "pictures", image_column="path", label_column="class"
    )

    assert datalist == [{"image": str(tmp_path / "pictures" / "a.png"), "label": 2}]


def test_image_label_csv_errors(tmp_path):
    _touch(tmp_path / "a.png")

    table = _write_csv(tmp_path / "labels.csv", [["image", "label"], ["a.png", "abnormal"]])
    with pytest.raises(
        ValueError, match=re.escape(f"{table}, row 2: column 'label' is 'abnormal'; expected an integer")
    ):
        read_image_label_csv(table)

    table = _write_csv(tmp_path / "labels.csv", [["image", "class"], ["a.png", 1]])
    with pytest.raises(ValueError, match=re.escape("missing required column(s) ['label']")):
        read_image_label_csv(table)

    table = _write_csv(tmp_path / "labels.csv", [["image", "label"], ["a.png", 1], ["", ""], ["./a.png", 0]])
    with pytest.raises(ValueError, match=re.escape(f"{table}, row 4: duplicate image")):
        read_image_label_csv(table)

    table = _write_csv(tmp_path / "labels.csv", [["image", "label"], ["a.png", 1], ["b.png", 0]])
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"{table}: 1 listed image file(s) do not exist: row 3:")
    ):
        read_image_label_csv(table)


def test_synthetic_generator_layout(tmp_path):
    """The synthetic data generator writes these files, with images next to them as N_left.png."""
    for file_name in ["3_left.png", "3_right.png", "4_left.png"]:
        _touch(tmp_path / "images" / file_name)
    odir = _write_csv(
        tmp_path / "odir_annotations.csv",
        [
            ODIR_HEADER,
            _odir_row(
                3, "3_left.png", "3_right.png", "normal fundus", "moderate non proliferative retinopathy"
            ),
            _odir_row(4, "4_left.png", "", "normal fundus", "", flags="10000000"),
        ],
    )
    idrid = _write_csv(
        tmp_path / "idrid_grading.csv",
        [["Image name", "Retinopathy grade", "Risk of macular edema "], ["3_left", 0, 0], ["3_right", 2, 1]],
    )
    labels = _write_csv(
        tmp_path / "labels.csv", [["image", "label"], ["images/3_left.png", 0], ["images/3_right.png", 1]]
    )

    assert [
        (entry["image"], entry["label"]) for entry in read_odir_annotations(odir, tmp_path / "images")
    ] == [
        (str(tmp_path / "images" / "3_left.png"), 0),
        (str(tmp_path / "images" / "3_right.png"), 1),
        (str(tmp_path / "images" / "4_left.png"), 0),
    ]
    assert [entry["joint_label"] for entry in read_idrid_grading(idrid, tmp_path / "images")] == [0, 7]
    assert [entry["label"] for entry in read_image_label_csv(labels)] == [0, 1]


def _patients_datalist() -> list[dict]:
    # 30 patients with two eyes and 10 with one eye, plus 5 entries without a patient id
    datalist = []
    for patient in range(40):
        for eye in ("left", "right") if patient < 30 else ("left",):
            datalist.append({"image": f"/images/{patient}_{eye}.png", "patient_id": str(patient), "label": 0})
    datalist += [{"image": f"/images/loose_{number}.png", "label": 1} for number in range(5)]
    return datalist


def _patients_of(split: list[dict]) -> set:
    return {entry.get("patient_id", entry["image"]) for entry in split}


def test_split_by_patient_keeps_patients_together():
    datalist = _patients_datalist()

    train, validation = split_by_patient(datalist, fractions=(0.8, 0.2), seed=0)

    assert not _patients_of(train) & _patients_of(validation)
    assert sorted(map(id, train + validation)) == sorted(map(id, datalist))
    assert (len(train), len(validation)) == (60, 15)


@pytest.mark.parametrize("seed", range(5))
def test_split_by_patient_sizes_follow_fractions(seed):
    datalist = _patients_datalist()

    splits = split_by_patient(datalist, fractions=(0.7, 0.1, 0.2), seed=seed)

    # targets are 52.5, 7.5 and 15 entries; loose entries let every split land within half an entry
    targets = [52.5, 7.5, 15]
    assert all(abs(len(split) - target) <= 0.5 for split, target in zip(splits, targets, strict=True))
    assert sum(map(len, splits)) == len(datalist)
    patient_sets = [_patients_of(split) for split in splits]
    assert all(not patient_sets[a] & patient_sets[b] for a, b in [(0, 1), (0, 2), (1, 2)])


def test_split_by_patient_is_seeded():
    datalist = _patients_datalist()

    assert split_by_patient(datalist, seed=1) == split_by_patient(datalist, seed=1)
    assert split_by_patient(datalist, seed=1) != split_by_patient(datalist, seed=2)


def test_split_by_patient_rejects_bad_fractions():
    with pytest.raises(ValueError, match="positive"):
        split_by_patient(_patients_datalist(), fractions=(1.0, 0.0))


def _jpeg(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), (120, 40, 20)).save(path, format="JPEG")


def test_refuge_training400_layout_labels_by_folder(tmp_path):
    from camcontrast_monai.data import read_refuge_glaucoma

    root = tmp_path / "REFUGE-Training400" / "Training400"
    for name in ("Glaucoma/g0001.jpg", "Glaucoma/g0002.jpg", "Non-Glaucoma/n0001.jpg", "Non-Glaucoma/notes.txt"):
        _jpeg(root / name) if name.endswith(".jpg") else (root / name).write_text("not a photograph")
    entries = read_refuge_glaucoma(root)
    assert [(Path(e["image"]).name, e["label"], e["patient_id"]) for e in entries] == [
        ("g0001.jpg", 1, "g0001"), ("g0002.jpg", 1, "g0002"), ("n0001.jpg", 0, "n0001"),
    ]  # fmt: skip
    assert all(Path(e["image"]).is_absolute() for e in entries)
    with pytest.raises(FileNotFoundError, match="Non-Glaucoma"):
        read_refuge_glaucoma(tmp_path)


def test_refuge_validation_sheet_names_rows(tmp_path):
    from camcontrast_monai.data import read_refuge_glaucoma

    for name in ("V0001.jpg", "V0002.jpg"):
        _jpeg(tmp_path / "images" / name)
    sheet = tmp_path / "Glaucoma_label_and_Fovea_location.csv"
    sheet.write_text("ID,ImgName,Fovea_X,Fovea_Y,Glaucoma Label\n1,V0002.jpg,1000,1000,1\n2,V0001.jpg,990,1010,0\n")
    entries = read_refuge_glaucoma(tmp_path / "images", sheet)
    assert [(Path(e["image"]).name, e["label"]) for e in entries] == [("V0001.jpg", 0), ("V0002.jpg", 1)]
    sheet.write_text("ID,ImgName,Fovea_X,Fovea_Y,Glaucoma Label\n1,V0002.jpg,1000,1000,2\n")
    with pytest.raises(ValueError, match=r"row 2.*'Glaucoma Label' is '2'"):
        read_refuge_glaucoma(tmp_path / "images", sheet)
    sheet.write_text("ID,ImgName,Fovea_X,Fovea_Y,Glaucoma Label\n1,V0003.jpg,1000,1000,1\n")
    with pytest.raises(FileNotFoundError, match="row 2: .*V0003.jpg"):
        read_refuge_glaucoma(tmp_path / "images", sheet)
