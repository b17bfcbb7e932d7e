"""``camcontrast check-data``: read an annotation sheet and every image it lists, report all problems.

The check reads only; it never writes a file. It runs the same reader and the same image loading as
training, so a clean report means stage 1 will not stop on bad input.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

# the data package loads torch and MONAI: it is imported where a check runs, so ``camcontrast --help``,
# which reads this module's docstrings, stays fast
if TYPE_CHECKING:
    from camcontrast_monai.data.validation import Problem

SHEET_FORMATS = ("auto", "odir", "idrid", "csv")
# the sheets `camcontrast synth fundus` writes, in the order a folder is searched for one
FOLDER_SHEETS = ("odir_annotations.xlsx", "odir_annotations.csv", "idrid_grading.csv", "labels.csv")


# this docstring is also `camcontrast check-data --help`; fire takes a colon in an argument's continuation
# line for a new argument, so those lines have none
def check_data_command(
    sheet: str,
    images: str | None = None,
    format: str = "auto",
    spatial_dims: int = 2,
    channels: int = 3,
    min_size: int = 16,
    pixels: bool = True,
) -> int:
    """Check a data set before training and report every problem at once; return 0 if clean, 1 if not.

    The return value is the exit status of `camcontrast check-data`.

    Args:
        sheet: an ODIR annotation sheet, an IDRiD grading CSV or an image,label CSV (.csv in UTF-8, or
            .xlsx); or a data-set folder holding odir_annotations.xlsx/.csv,
            idrid_grading.csv or labels.csv (the first found, in that order, is checked), such as one
            written by `camcontrast synth fundus`.
        images: for odir/idrid, the image folder (default images/ beside the sheet); for csv, the
            folder relative image paths start from (default the sheet's folder).
        format: "odir" (ODIR-5K sheet), "idrid" (IDRiD disease grading CSV), "csv" (image and label
            columns) or "auto", which picks odir if the header has Left-Fundus, idrid if it has
            Image name, else csv.
        spatial_dims: spatial dimensions every image must have (2 for photographs, 3 for volumes).
        channels: channels every image must have (3 for RGB).
        min_size: smallest allowed side in pixels.
        pixels: read every image (False: only check that the files exist).
    """
    from camcontrast_monai.data.validation import Problem, check_datalist

    if format not in SHEET_FORMATS:
        raise ValueError(f"format must be one of {SHEET_FORMATS}, got {format!r}")
    sheet_path = find_sheet(Path(sheet))
    missing_images: list[tuple[int, str]] = []
    try:
        sheet_format = _detect_format(sheet_path) if format == "auto" else format
        datalist = _read_sheet(sheet_format, sheet_path, images, missing_images)
    except Exception as error:  # whatever a reader raises is reported: reporting is this command's job
        print(f"{sheet_path}: cannot be read")
        _print_report([_problem_from_reader_error(sheet_path, error)])
        return 1

    class_counts = Counter(entry["label"] for entry in datalist)
    print(
        f"{sheet_path} ({sheet_format} sheet): {len(datalist)} entries, "
        f"{class_counts[0]} normal / {class_counts[1]} abnormal"
    )
    problems = [
        Problem(str(sheet_path), f"listed image {image} does not exist", row) for row, image in missing_images
    ]
    # missing images are reported with their sheet rows above; check_datalist checks the others
    missing_paths = {image for _, image in missing_images}
    readable = [entry for entry in datalist if entry["image"] not in missing_paths]
    problems += check_datalist(
        readable,
        spatial_dims=spatial_dims,
        channels=channels,
        min_spatial_size=min_size,
        check_pixels=pixels,
        source=str(sheet_path),
    )
    _print_report(problems)
    return 1 if problems else 0


def find_sheet(path: Path) -> Path:
    """``path`` itself, or for a folder the first of :data:`FOLDER_SHEETS` in it (an error naming them if none)."""
    if not path.is_dir():
        return path
    for name in FOLDER_SHEETS:
        if (path / name).is_file():
            return path / name
    raise SystemExit(f"{path} is a folder without an annotation sheet; expected one of {', '.join(FOLDER_SHEETS)}, or pass the sheet itself")


def _detect_format(sheet_path: Path) -> str:
    from camcontrast_monai.data import readers

    columns = readers.read_table(sheet_path, "annotation sheet").columns
    if "Left-Fundus" in columns:
        return "odir"
    if "Image name" in columns:
        return "idrid"
    return "csv"


def _read_sheet(sheet_format: str, sheet_path: Path, images: str | None, missing: list[tuple[int, str]]) -> list[dict]:
    """The sheet's datalist; listed images that do not exist go to ``missing``, so the others are still checked."""
    from camcontrast_monai.data import readers

    if sheet_format == "csv":
        return readers.read_image_label_csv(sheet_path, base_dir=images, collect_missing=missing)
    image_dir = images if images is not None else sheet_path.parent / "images"
    if sheet_format == "odir":
        return readers.read_odir_annotations(sheet_path, image_dir, collect_missing=missing)
    return readers.read_idrid_grading(sheet_path, image_dir, collect_missing=missing)


def _problem_from_reader_error(sheet_path: Path, error: Exception) -> Problem:
    """The readers' messages start with "<sheet>, row N: " or "<sheet>: "; keep that as the Problem's place."""
    from camcontrast_monai.data.validation import Problem

    message = str(error)
    place = re.match(rf"{re.escape(str(sheet_path))}(?:, row (\d+))?: (.*)", message, re.DOTALL)
    if place is None:
        return Problem(str(sheet_path), f"{type(error).__name__}: {message}")
    row, what = place.groups()
    return Problem(str(sheet_path), what, int(row) if row else None)


def _print_report(problems: list[Problem]) -> None:
    for problem in problems:
        print(problem)
    files = {problem.path for problem in problems}
    print(f"{len(problems)} problem(s) in {len(files)} file(s)" if problems else "no problems found")
