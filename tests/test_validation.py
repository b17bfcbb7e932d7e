"""Every kind of bad input gives one clear problem naming its file (and row) and what was expected.

Each test writes real files in the real formats (PNG, JPEG, DICOM, NIfTI, NumPy, ODIR sheets).
"""

import csv
from pathlib import Path

import nibabel
import numpy as np
import pytest
from PIL import Image, ImageFile

from camcontrast_monai.apps.check_data import check_data_command
from camcontrast_monai.data.validation import Problem, check_datalist, check_image_file, validate_datalist
from camcontrast_monai.synthetic import write_fundus_dataset

RNG_SEED = 0


def _rgb_pixels(height: int = 32, width: int = 40) -> np.ndarray:
    return np.random.default_rng(RNG_SEED).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_png(path: Path, pixels: np.ndarray | None = None, mode: str = "RGB") -> Path:
    Image.fromarray(_rgb_pixels() if pixels is None else pixels).convert(mode).save(path)
    return path


def _write_jpeg(path: Path) -> Path:
    Image.fromarray(_rgb_pixels()).save(path, quality=90)
    return path


def _write_dicom(path: Path) -> Path:
    itk = pytest.importorskip("itk")
    pixels = np.random.default_rng(RNG_SEED).integers(0, 4096, (24, 20), dtype=np.uint16)
    itk.imwrite(itk.image_from_array(pixels), str(path))
    return path


def _write_nifti(path: Path, volume: np.ndarray) -> Path:
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), path)
    return path


def _cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _only_problem(problems: list[Problem]) -> str:
    assert len(problems) == 1, problems
    return str(problems[0])


def _entries(paths_and_labels) -> list[dict]:
    return [{"image": str(path), "label": label} for path, label in paths_and_labels]


# ---- one image file --------------------------------------------------------------------------------


def test_random_bytes_png_cannot_be_read(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(RNG_SEED).bytes(300))

    message = _only_problem(check_image_file(path, 2, 3))

    assert message.startswith(f"{path}: cannot be read as PNG")


def test_empty_file_is_reported_as_empty(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()

    assert _only_problem(check_image_file(path, 2, 3)) == f"{path}: is empty (0 bytes); expected a PNG image"


@pytest.mark.parametrize("load_truncated_images", [False, True])
def test_truncated_png_is_detected_even_if_pillow_allows_truncation(
    tmp_path, monkeypatch, load_truncated_images
):
    # some libraries switch this on globally; the check must still see the missing half
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated_images)
    path = _cut_in_half(_write_png(tmp_path / "half.png"))

    message = _only_problem(check_image_file(path, 2, 3))

    assert message.startswith(f"{path}: cannot be read as PNG") and "truncated" in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated_images


def test_truncated_jpeg_is_detected(tmp_path):
    path = _cut_in_half(_write_jpeg(tmp_path / "half.jpg"))

    message = _only_problem(check_image_file(path, 2, 3))

    assert message.startswith(f"{path}: cannot be read as JPEG") and "truncated" in message


def test_corrupted_dicom_cannot_be_read(tmp_path):
    path = _write_dicom(tmp_path / "slice.dcm")
    assert check_image_file(path, 3, 1) == []  # ITK reads a single-frame DICOM as a one-slice volume
    _cut_in_half(path)

    assert _only_problem(check_image_file(path, 3, 1)).startswith(f"{path}: cannot be read as DICOM")


def test_truncated_nifti_cannot_be_read(tmp_path):
    path = _cut_in_half(_write_nifti(tmp_path / "volume.nii.gz", np.zeros((16, 16, 8), np.float32)))

    assert _only_problem(check_image_file(path, 3, 1)).startswith(f"{path}: cannot be read as NIfTI")


def test_missing_file(tmp_path):
    path = tmp_path / "gone.png"

    assert _only_problem(check_image_file(path, 2, 3)) == f"{path}: does not exist; expected an image file"


def test_folder_instead_of_file(tmp_path):
    assert (
        _only_problem(check_image_file(tmp_path, 2, 3)) == f"{tmp_path}: is a folder; expected an image file"
    )


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "scan.bmp"
    path.write_bytes(b"BM")

    message = _only_problem(check_image_file(path, 2, 3))

    assert message.startswith(f"{path}: has an unsupported file type; expected one of .png, .jpg")


def test_rgba_png_where_rgb_expected(tmp_path):
    path = _write_png(tmp_path / "screenshot.png", mode="RGBA")

    message = _only_problem(check_image_file(path, 2, 3))

    assert message == f"{path}: has 4 channel(s) (image mode 'RGBA'); expected 3 channel(s)"


def test_grayscale_png_where_rgb_expected(tmp_path):
    path = _write_png(tmp_path / "gray.png", mode="L")

    message = _only_problem(check_image_file(path, 2, 3))

    assert message == f"{path}: has 1 channel(s) (image mode 'L'); expected 3 channel(s)"


def test_3d_nifti_where_2d_expected(tmp_path):
    path = _write_nifti(tmp_path / "volume.nii.gz", np.zeros((16, 16, 8), np.float32))

    message = _only_problem(check_image_file(path, 2, 1))

    assert message == f"{path}: is 3D (spatial size 16x16x8); expected a 2D image"


def test_2d_png_where_3d_expected(tmp_path):
    path = _write_png(tmp_path / "photo.png")

    message = _only_problem(check_image_file(path, 3, 3))

    assert message == f"{path}: is 2D (spatial size 32x40); expected a 3D image"


def test_nan_and_inf_in_float_nifti(tmp_path):
    volume = np.ones((8, 8, 4), np.float32)
    volume[0, 0, 0], volume[1, 1, 1], volume[2, 2, 2] = np.nan, np.inf, -np.inf
    path = _write_nifti(tmp_path / "volume.nii.gz", volume)

    message = _only_problem(check_image_file(path, 3, 1))

    assert message == f"{path}: contains 1 NaN and 2 infinite value(s); expected finite numbers"


def test_nan_in_npy_heatmap(tmp_path):
    heatmap = np.zeros((14, 14), np.float32)
    heatmap[3, 4] = np.nan
    path = tmp_path / "heatmap.npy"
    np.save(path, heatmap)

    message = _only_problem(check_image_file(path, 2, 1))

    assert message == f"{path}: contains 1 NaN and 0 infinite value(s); expected finite numbers"


def test_image_smaller_than_min_size(tmp_path):
    path = _write_png(tmp_path / "thumbnail.png", _rgb_pixels(12, 40))

    message = _only_problem(check_image_file(path, 2, 3, min_spatial_size=16))

    assert message == f"{path}: is too small: spatial size 12x40; expected at least 16x16"


def test_good_files_of_every_format_pass(tmp_path):
    png = _write_png(tmp_path / "photo.png")
    jpeg = _write_jpeg(tmp_path / "photo.jpg")
    nifti = _write_nifti(tmp_path / "volume.nii.gz", np.ones((16, 16, 8), np.float32))
    heatmap = tmp_path / "heatmap.npy"
    np.save(heatmap, np.zeros((14, 14), np.float32))

    assert check_image_file(png, 2, 3, min_spatial_size=(32, 40)) == []
    assert check_image_file(jpeg, 2, (1, 3), min_spatial_size=16) == []
    assert check_image_file(nifti, 3, 1, min_spatial_size=8) == []
    assert check_image_file(heatmap, 2, 1) == []


# ---- data sets -----------------------------------------------------------------------------------


@pytest.fixture
def two_good_images(tmp_path) -> list[Path]:
    return [_write_png(tmp_path / "normal.png"), _write_png(tmp_path / "abnormal.png")]


def test_clean_data_set_has_no_problems(two_good_images):
    datalist = _entries(zip(two_good_images, [0, 1], strict=True))

    assert check_datalist(datalist, min_spatial_size=16, progress=False) == []
    assert validate_datalist(datalist, min_spatial_size=16, progress=False) is datalist


def test_empty_data_set():
    assert _only_problem(check_datalist([], source="sheet.csv")) == (
        "sheet.csv: the data set is empty; expected at least one entry"
    )


def test_entry_without_label(two_good_images):
    datalist = [{"image": str(two_good_images[0]), "label": 0}, {"image": str(two_good_images[1])}]

    problems = check_datalist(datalist, require_both_classes=False, source="list.json", progress=False)

    assert _only_problem(problems) == (
        "list.json: datalist[1] has no 'label' key; expected keys ['image', 'label'], found ['image']"
    )


def test_label_outside_coarse_labels(two_good_images):
    datalist = _entries(zip(two_good_images, [0, 7], strict=True))

    problems = check_datalist(datalist, require_both_classes=False, source="labels.csv", progress=False)

    assert _only_problem(problems) == (
        f"labels.csv: datalist[1] ({two_good_images[1]}): label is 7; expected one of [0, 1]"
    )
    assert check_datalist(datalist, allowed_labels=None, require_both_classes=False, progress=False) == []


def test_duplicate_image_paths(two_good_images):
    first, second = two_good_images
    # the same file spelled two ways is still one image
    datalist = _entries([(first, 0), (second, 1), (first.parent / "." / first.name, 1)])

    message = _only_problem(check_datalist(datalist, source="list.json", progress=False))

    assert message == f"list.json: image {first} is listed 2 times (datalist[0], datalist[2]); expected once"


def test_only_one_class(two_good_images):
    datalist = _entries(zip(two_good_images, [1, 1], strict=True))

    message = _only_problem(check_datalist(datalist, source="odir.csv", progress=False))

    assert message.startswith(
        "odir.csv: does not have both classes: 0 normal (label 0) and 2 abnormal (label 1) entries; expected both"
    )


def test_missing_image_without_reading_pixels(two_good_images, tmp_path):
    missing = tmp_path / "gone.png"
    datalist = _entries([(two_good_images[0], 0), (missing, 1)])

    message = _only_problem(check_datalist(datalist, check_pixels=False, progress=False))

    assert message == f"{missing}: does not exist; expected an image file"


def test_validate_datalist_lists_every_problem(tmp_path, two_good_images):
    rgba = _write_png(tmp_path / "rgba.png", mode="RGBA")
    truncated = _cut_in_half(_write_png(tmp_path / "half.png"))
    missing = tmp_path / "gone.png"
    datalist = _entries([(two_good_images[0], 0), (rgba, 1), (truncated, 0), (missing, 1)])

    with pytest.raises(ValueError) as raised:
        validate_datalist(datalist, source="sheet.csv", progress=False)

    lines = str(raised.value).splitlines()
    assert lines[0] == "sheet.csv: 3 problem(s) in the data; fix them before training:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [str(rgba), str(truncated), str(missing)]


def test_validate_datalist_shortens_long_lists(tmp_path):
    datalist = _entries((tmp_path / f"{index}.png", index % 2) for index in range(53))

    with pytest.raises(ValueError) as raised:
        validate_datalist(datalist, check_pixels=False, progress=False)

    lines = str(raised.value).splitlines()
    assert len(lines) == 1 + 50 + 1
    assert lines[-1] == "  and 3 more"


# ---- the check-data command ----------------------------------------------------------------------


def _file_tree(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_check_data_on_clean_synthetic_set(tmp_path, capsys):
    write_fundus_dataset(tmp_path, n=6, image_size=64)
    before = _file_tree(tmp_path)

    exit_code = check_data_command(str(tmp_path / "odir_annotations.csv"))

    report = capsys.readouterr().out.splitlines()
    assert exit_code == 0
    assert report == [
        f"{tmp_path / 'odir_annotations.csv'} (odir sheet): 6 entries, 3 normal / 3 abnormal",
        "no problems found",
    ]
    assert _file_tree(tmp_path) == before


def test_check_data_reports_missing_and_truncated_images_together(tmp_path, capsys):
    write_fundus_dataset(tmp_path, n=6, image_size=64)
    sheet = tmp_path / "odir_annotations.csv"
    missing = tmp_path / "images" / "0_left.png"
    missing.unlink()
    truncated = _cut_in_half(tmp_path / "images" / "2_right.png")
    before = _file_tree(tmp_path)

    exit_code = check_data_command(str(sheet))

    report = capsys.readouterr().out.splitlines()
    assert exit_code == 1
    assert report[0] == f"{sheet} (odir sheet): 6 entries, 3 normal / 3 abnormal"
    assert report[1] == f"{sheet}, row 2: listed image {missing} does not exist"
    assert report[2].startswith(f"{truncated}: cannot be read as PNG: OSError: image file is truncated")
    assert report[3:] == ["2 problem(s) in 2 file(s)"]
    assert _file_tree(tmp_path) == before


def test_check_data_reports_a_table_error_with_its_row(tmp_path, capsys):
    write_fundus_dataset(tmp_path, n=6, image_size=64)
    sheet = tmp_path / "odir_annotations.csv"
    with sheet.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    rows[2][rows[0].index("Left-Diagnostic Keywords")] = ""
    with sheet.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows(rows)

    exit_code = check_data_command(str(sheet), format="odir")

    report = capsys.readouterr().out.splitlines()
    assert exit_code == 1
    assert report[0] == f"{sheet}: cannot be read"
    assert report[1].startswith(
        f"{sheet}, row 3: 'Left-Fundus' is '1_left.png' but 'Left-Diagnostic Keywords' is empty"
    )
    assert report[2] == "1 problem(s) in 1 file(s)"


def test_checking_many_images_builds_monais_loader_once(tmp_path, monkeypatch):
    """Building a LoadImage builds every MONAI reader; the nvImageCodec one warns each time (once per image before)."""
    import camcontrast_monai.data.validation as validation

    built = []
    real = validation.LoadImage
    monkeypatch.setattr(validation, "LoadImage", lambda *a, **k: built.append(1) or real(*a, **k))
    validation._load_image.cache_clear()
    paths = [_write_png(tmp_path / f"{i}.png") for i in range(5)]
    assert check_datalist([{"image": str(p), "label": i % 2} for i, p in enumerate(paths)], spatial_dims=2, channels=3) == []
    assert len(built) == 1
    validation._load_image.cache_clear()


def test_check_data_on_a_data_set_folder_checks_the_sheet_synth_wrote(tmp_path, capsys):
    write_fundus_dataset(tmp_path / "set", n=4, seed=0, image_size=64)
    (tmp_path / "set" / "images" / "1_right.png").unlink()
    assert check_data_command(str(tmp_path / "set")) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'set' / 'odir_annotations.csv'} (odir sheet): 4 entries" in out
    assert "row 3: listed image" in out and "1_right.png does not exist" in out and "1 problem(s) in 1 file(s)" in out


def test_check_data_on_a_folder_without_a_sheet_names_what_it_looked_for(tmp_path):
    with pytest.raises(SystemExit, match="folder without an annotation sheet; expected one of odir_annotations.xlsx"):
        check_data_command(str(tmp_path))
