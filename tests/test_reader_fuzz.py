"""Seeded, bounded fuzzing of the annotation readers and the image check.

Each case is a real file damaged one of four ways: replaced by random bytes, random bytes after a
valid header, bytes overwritten at random positions, or cut at a random position. A reader must return
a datalist or raise ValueError / FileNotFoundError naming the file; ``check_image_file`` must return
problems naming the file and never raise. The image decoders (Pillow, ITK, nibabel) are C code, so
their fuzz loop runs in one child process: a segfault or a hang fails the test instead of pytest.
"""

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from camcontrast_monai.data import read_idrid_grading, read_image_label_csv, read_odir_annotations
from camcontrast_monai.synthetic.fundus import write_fundus_dataset

CASES_PER_FORMAT = 30
CHILD_TIMEOUT_S = 120
# bytes kept by "random bytes after a valid header": the signature and first fixed-size header structure
# (zip local header, PNG signature + IHDR, JPEG SOI + JFIF, DICOM preamble + "DICM", NIfTI-1 header, gzip)
HEADER_BYTES = {".xlsx": 30, ".png": 33, ".jpg": 20, ".dcm": 132, ".nii": 348, ".nii.gz": 10}
MUTATIONS = ("random bytes", "random bytes after header", "overwritten bytes", "cut")


def damaged_copies(original: Path, seed: int) -> list[tuple[str, bytes]]:
    """``CASES_PER_FORMAT`` damaged versions of ``original``, cycling through ``MUTATIONS``."""
    rng = np.random.default_rng(seed)
    data = original.read_bytes()
    # a CSV's header is its first line
    header_bytes = (
        data.index(b"\n") + 1 if original.suffix == ".csv" else HEADER_BYTES["".join(original.suffixes)]
    )
    cases = []
    for index in range(CASES_PER_FORMAT):
        mutation = MUTATIONS[index % len(MUTATIONS)]
        if mutation == "random bytes":
            damaged = rng.bytes(int(rng.integers(0, 512)))
        elif mutation == "random bytes after header":
            damaged = data[:header_bytes] + rng.bytes(int(rng.integers(1, len(data))))
        elif mutation == "overwritten bytes":
            buffer = np.frombuffer(data, dtype=np.uint8).copy()
            positions = rng.integers(0, len(data), size=int(rng.integers(1, 9)))
            buffer[positions] = rng.integers(0, 256, size=len(positions), dtype=np.uint8)
            damaged = buffer.tobytes()
        else:
            damaged = data[: int(rng.integers(0, len(data)))]
        cases.append((mutation, damaged))
    return cases


# ---- annotation readers (pure Python: fuzzed in this process) -------------------------------------


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fundus")
    write_fundus_dataset(root, n=6, image_size=64)
    openpyxl = pytest.importorskip("openpyxl")
    workbook = openpyxl.Workbook()
    with (root / "odir_annotations.csv").open(encoding="utf-8", newline="") as file:
        for row in csv.reader(file):
            workbook.active.append(row)
    workbook.save(root / "odir_annotations.xlsx")
    return root


READERS: dict[str, tuple[str, Callable[[Path, Path], list]]] = {
    "odir csv": ("odir_annotations.csv", lambda sheet, root: read_odir_annotations(sheet, root / "images")),
    "odir xlsx": ("odir_annotations.xlsx", lambda sheet, root: read_odir_annotations(sheet, root / "images")),
    "idrid": ("idrid_grading.csv", lambda sheet, root: read_idrid_grading(sheet, root / "images")),
    "image/label csv": ("labels.csv", lambda sheet, root: read_image_label_csv(sheet, root)),
}


@pytest.mark.parametrize(
    "reader_name",
    [
        "odir csv",
        "odir xlsx",
        "idrid",
        "image/label csv",
    ],
)
def test_reader_returns_or_raises_a_documented_error_naming_the_file(synthetic_set, reader_name, tmp_path):
    file_name, read = READERS[reader_name]
    original = synthetic_set / file_name
    suffix = original.suffix
    seed = list(READERS).index(reader_name)
    unexpected = []
    for index, (mutation, damaged) in enumerate(damaged_copies(original, seed)):
        sheet = tmp_path / f"case{index}{suffix}"
        sheet.write_bytes(damaged)
        try:
            read(sheet, synthetic_set)
        except (ValueError, FileNotFoundError) as error:
            if str(sheet) not in str(error):
                unexpected.append(f"{mutation}: message does not name the file: {error}")
        except Exception as error:
            unexpected.append(f"{mutation}: {type(error).__module__}.{type(error).__name__}: {error}")
    assert not unexpected, "\n".join(unexpected)


# ---- image files (C decoders: fuzzed in a child process) ------------------------------------------


def test_check_image_file_survives_damaged_images(tmp_path):
    completed = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )

    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    assert completed.stdout.splitlines()[-1] == f"checked {CASES_PER_FORMAT * 5} damaged images"


def fuzz_image_check(folder: Path) -> None:
    """The child process: write one good image per format, then check damaged copies of each."""
    import itk
    import nibabel
    from PIL import Image

    from camcontrast_monai.data.validation import check_image_file

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    volume = rng.random((12, 10, 6)).astype(np.float32)
    Image.fromarray(photo).save(folder / "good.png")
    Image.fromarray(photo).save(folder / "good.jpg", quality=90)
    itk.imwrite(
        itk.image_from_array(rng.integers(0, 4096, (24, 20), dtype=np.uint16)), str(folder / "good.dcm")
    )
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), folder / "good.nii")
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), folder / "good.nii.gz")

    checked = 0
    for seed, (suffix, spatial_dims, channels) in enumerate(
        [(".png", 2, 3), (".jpg", 2, 3), (".dcm", 3, 1), (".nii", 3, 1), (".nii.gz", 3, 1)]
    ):
        original = folder / f"good{suffix}"
        assert check_image_file(original, spatial_dims, channels) == [], original
        for index, (mutation, damaged) in enumerate(damaged_copies(original, seed)):
            path = folder / f"case{index}{suffix}"
            path.write_bytes(damaged)
            problems = check_image_file(path, spatial_dims, channels)
            assert all(problem.path == str(path) for problem in problems), (mutation, problems)
            # a file cut before its last quarter has lost pixel data: never clean
            if mutation == "cut" and len(damaged) < 0.75 * original.stat().st_size:
                assert problems, f"{mutation} to {len(damaged)} bytes of {original} was not detected"
            checked += 1
    print(f"checked {checked} damaged images")


if __name__ == "__main__":
    fuzz_image_check(Path(sys.argv[1]))
