"""``camcontrast check-data``: read an annotation sheet and every image it lists, report all problems.

The check reads only; it never writes a file. It runs the same reader and the same image loading as
training, so a clean report means stage 1 will not stop on bad input.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from camcontrast_monai.data import readers
from camcontrast_monai.data.validation import Problem, check_datalist

SHEET_FORMATS = ("auto", "odir", "idrid", "csv")


def check_data_command(
    sheet: str,
    images: str | None = None,
    format: str = "auto",
    spatial_dims: int = 2,
    channels: int = 3,
    min_size: int = 16,
    pixels: bool = True,
) -> int:
    """Check an annotation sheet and its images; print every problem; return 0 if clean, 1 if not.

    Args:
        sheet: the annotation sheet, ``.csv`` (UTF-8) or ``.xlsx``.
        images: for ``odir``/``idrid``, the image folder (default: ``images`` beside the sheet); for
            ``csv``, the folder relative image paths start from (default: the sheet's folder).
        format: ``odir`` (ODIR-5K sheet), ``idrid`` (IDRiD disease grading CSV), ``csv`` (``image``
            and ``label`` columns) or ``auto``: ``odir`` if the header has ``Left-Fundus``, ``idrid``
            if it has ``Image name``, else ``csv``.
        spatial_dims: spatial dimensions every image must have (2 for photographs).
        channels: channels every image must have (3 for RGB).
        min_size: smallest allowed side in pixels.
        pixels: read every image (False: only check that the files exist).
    """
    if format not in SHEET_FORMATS:
        raise ValueError(f"format must be one of {SHEET_FORMATS}, got {format!r}")
    sheet_path = Path(sheet)
    missing_images: list[tuple[int, str]] = []
    try:
        sheet_format = _detect_format(sheet_path) if format == "auto" else format
        with _readers_collect_missing_images(missing_images):
            datalist = _read_sheet(sheet_format, sheet_path, images)
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


def _detect_format(sheet_path: Path) -> str:
    columns = readers._read_table(sheet_path, "annotation sheet").columns
    if "Left-Fundus" in columns:
        return "odir"
    if "Image name" in columns:
        return "idrid"
    return "csv"


def _read_sheet(sheet_format: str, sheet_path: Path, images: str | None) -> list[dict]:
    if sheet_format == "csv":
        return readers.read_image_label_csv(sheet_path, base_dir=images)
    image_dir = images if images is not None else sheet_path.parent / "images"
    if sheet_format == "odir":
        return readers.read_odir_annotations(sheet_path, image_dir)
    return readers.read_idrid_grading(sheet_path, image_dir)


@contextlib.contextmanager
def _readers_collect_missing_images(missing_images: list[tuple[int, str]]) -> Iterator[None]:
    """Have the readers return their datalist even when listed images are missing, collecting the
    ``(row, path)`` pairs instead of raising, so that the other images are still checked in this run.

    The readers raise for missing images only after validating every row, so nothing else is skipped.
    Replace with a reader option once the readers have one.
    """
    with mock.patch.object(readers, "_raise_if_images_missing", lambda _, rows: missing_images.extend(rows)):
        yield


def _problem_from_reader_error(sheet_path: Path, error: Exception) -> Problem:
    """The readers' messages start with "<sheet>, row N: " or "<sheet>: "; keep that as the Problem's place."""
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
