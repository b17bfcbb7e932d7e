"""Readers for the real data sets' own annotation formats, producing MONAI datalists.

Every reader returns a list of dicts (``{"image": absolute path, "label": int, ...}``) that can go
straight into ``monai.data.Dataset``. Annotation files come from hospitals and challenge sites and
are often edited by hand, so the readers validate everything before returning and every error names
the file, the 1-based row (the header is row 1, as a spreadsheet shows it) and what was expected.

Sheets may be ``.csv`` (UTF-8, as Excel's "CSV UTF-8" writes it) or ``.xlsx`` (needs ``openpyxl``);
both give identical results.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ODIR_NORMAL_KEYWORD = "normal fundus"
# Keywords the ODIR graders used for the photograph itself, not the eye: they neither make an eye
# abnormal nor confirm it is normal, so they are left out when labelling.
ODIR_QUALITY_KEYWORDS = frozenset(
    {
        "lens dust",
        "low image quality",
        "image offset",
        "optic disk photographically invisible",
        "optic disc photographically invisible",
        "anterior segment image",
        "no fundus image",
    }
)
# Any keyword containing this phrase ("low image quality", "poor image quality", ...) is about quality.
ODIR_QUALITY_PHRASE = "image quality"

IDRID_DR_GRADES = range(5)
IDRID_DME_RISKS = range(3)
IDRID_IMAGE_EXTENSIONS = (".jpg", ".JPG", ".png", ".tif")
# REFUGE: Training400 sorts its photographs into these two folders; the validation and test sets list
# them in Glaucoma_label_and_Fovea_location.xlsx ("ImgName" with extension, "Glaucoma Label" 0/1)
REFUGE_CLASS_FOLDERS = {"Glaucoma": 1, "Non-Glaucoma": 0}
REFUGE_IMAGE_EXTENSIONS = (".jpg", ".JPG", ".png", ".bmp")

MAX_MISSING_IMAGES_REPORTED = 10


@dataclass
class _Table:
    """A sheet's header and non-empty rows, each row kept with its spreadsheet row number."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]

    def require_columns(self, required: Sequence[str]) -> None:
        missing = [column for column in required if column not in self.columns]
        if missing:
            raise ValueError(
                f"{self.path}: missing required column(s) {missing} in the header (row 1); "
                f"expected {list(required)}, found columns {self.columns}"
            )

    def error(self, row_number: int, message: str) -> ValueError:
        return ValueError(f"{self.path}, row {row_number}: {message}")

    def required_cell(self, row_number: int, row: dict[str, str], column: str) -> str:
        text = row[column]
        if not text:
            raise self.error(row_number, f"column {column!r} is empty; expected a value")
        return text

    def integer_cell(
        self, row_number: int, row: dict[str, str], column: str, allowed: range | None = None
    ) -> int:
        text = row[column]
        value = _parse_integer(text)
        if value is None or (allowed is not None and value not in allowed):
            expected = "an integer" if allowed is None else f"an integer from {allowed[0]} to {allowed[-1]}"
            raise self.error(row_number, f"column {column!r} is {text!r}; expected {expected}")
        return value

    def claim_unique(self, first_rows: dict[str, int], key: str, row_number: int, what: str) -> None:
        """Record ``key`` as seen on ``row_number``; a second sighting is an error naming both rows."""
        if key in first_rows:
            raise self.error(row_number, f"duplicate {what} {key!r} (first listed on row {first_rows[key]})")
        first_rows[key] = row_number


def read_odir_annotations(
    sheet_path: str | os.PathLike, image_dir: str | os.PathLike, collect_missing: list[tuple[int, str]] | None = None
) -> list[dict]:
    """Read the ODIR-5K annotation sheet (``.xlsx`` or ``.csv``) into a per-eye, binary-labelled datalist.

    Each patient row gives up to two entries, left eye first:
    ``{"image", "label", "patient_id", "eye", "keywords"}``. As in the CAMContrast paper every abnormal
    eye, whatever the disease, is class 1 and "normal fundus" is class 0. The label comes from that
    eye's own diagnostic keywords (the patient-level N..O columns mix both eyes), ignoring keywords
    that only describe image quality. An eye whose keywords are all about quality cannot be labelled
    and is skipped with a warning; an empty fundus cell (one eye photographed) is skipped silently.
    Listed images that do not exist raise one error naming their rows; with ``collect_missing`` (a list)
    they are appended to it as ``(row, path)`` instead of raising.
    """
    table = read_table(sheet_path, "ODIR annotation sheet")
    table.require_columns(
        ["ID", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords", "Right-Diagnostic Keywords"]
    )
    image_folder = existing_folder(image_dir, "ODIR image folder")

    datalist: list[dict] = []
    missing_images: list[tuple[int, str]] = []
    first_row_of_patient: dict[str, int] = {}
    first_row_of_image: dict[str, int] = {}
    for row_number, row in table.rows:
        patient_id = table.required_cell(row_number, row, "ID")
        table.claim_unique(first_row_of_patient, patient_id, row_number, "patient ID")
        for eye in ("left", "right"):
            side = eye.capitalize()
            file_name = row[f"{side}-Fundus"]
            if not file_name:
                continue
            table.claim_unique(first_row_of_image, file_name, row_number, "fundus image")
            keywords_column = f"{side}-Diagnostic Keywords"
            keywords = _split_odir_keywords(row[keywords_column])
            if not keywords:
                raise table.error(
                    row_number,
                    f"'{side}-Fundus' is {file_name!r} but {keywords_column!r} is empty; "
                    "expected that eye's diagnostic keywords",
                )
            label = _odir_binary_label(keywords)
            if label is None:
                logger.warning(
                    "%s, row %d: skipping %s: its keywords %s only describe image quality, "
                    "so it cannot be labelled normal or abnormal",
                    table.path,
                    row_number,
                    file_name,
                    keywords,
                )
                continue
            image_path = os.path.abspath(os.path.join(image_folder, file_name))
            if not os.path.isfile(image_path):
                missing_images.append((row_number, image_path))
            datalist.append(
                {
                    "image": image_path,
                    "label": label,
                    "patient_id": patient_id,
                    "eye": eye,
                    "keywords": keywords,
                }
            )
    report_missing_images(table.path, missing_images, collect_missing)
    return datalist


def read_idrid_grading(
    csv_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    image_ext: str | None = None,
    collect_missing: list[tuple[int, str]] | None = None,
) -> list[dict]:
    """Read an IDRiD "B. Disease Grading" ground-truth CSV into a datalist.

    Entries are ``{"image", "dr_grade", "dme_risk", "joint_label", "label"}`` where ``joint_label``
    (``dr_grade * 3 + dme_risk``, 0-14) is the single class for joint DR/DME grading and ``label`` is
    1 for any retinopathy or macular-edema risk. ``Image name`` holds a file stem; the image is looked
    up in ``image_dir`` with ``image_ext`` when given, otherwise with .jpg, .JPG, .png then .tif.
    Listed images that do not exist raise one error naming their rows; with ``collect_missing`` (a list)
    they are appended to it as ``(row, path)`` instead of raising.
    """
    table = read_table(csv_path, "IDRiD grading CSV")
    table.require_columns(["Image name", "Retinopathy grade", "Risk of macular edema"])
    image_folder = existing_folder(image_dir, "IDRiD image folder")
    if image_ext:
        extensions: Sequence[str] = (image_ext if image_ext.startswith(".") else f".{image_ext}",)
    else:
        extensions = IDRID_IMAGE_EXTENSIONS

    datalist: list[dict] = []
    missing_images: list[tuple[int, str]] = []
    first_row_of_image: dict[str, int] = {}
    for row_number, row in table.rows:
        stem = table.required_cell(row_number, row, "Image name")
        table.claim_unique(first_row_of_image, stem, row_number, "image name")
        dr_grade = table.integer_cell(row_number, row, "Retinopathy grade", IDRID_DR_GRADES)
        dme_risk = table.integer_cell(row_number, row, "Risk of macular edema", IDRID_DME_RISKS)
        image_path = _find_image(image_folder, stem, extensions)
        if image_path is None:
            tried = "|".join(extensions)
            missing_images.append((row_number, f"{os.path.join(image_folder, stem)}({tried})"))
            continue
        datalist.append(
            {
                "image": image_path,
                "dr_grade": dr_grade,
                "dme_risk": dme_risk,
                "joint_label": dr_grade * len(IDRID_DME_RISKS) + dme_risk,
                "label": int(dr_grade > 0 or dme_risk > 0),
            }
        )
    report_missing_images(table.path, missing_images, collect_missing)
    return datalist


def read_image_label_csv(
    csv_path: str | os.PathLike,
    base_dir: str | os.PathLike | None = None,
    image_column: str = "image",
    label_column: str = "label",
    collect_missing: list[tuple[int, str]] | None = None,
) -> list[dict]:
    """Read a generic image/label table into ``{"image": absolute path, "label": int, ...}`` entries.

    Relative image paths are resolved against ``base_dir`` (default: the CSV's folder). Any other
    columns are carried through as strings under their header names.
    Listed images that do not exist raise one error naming their rows; with ``collect_missing`` (a list)
    they are appended to it as ``(row, path)`` instead of raising.
    """
    table = read_table(csv_path, "image/label CSV")
    table.require_columns([image_column, label_column])
    extra_columns = [column for column in table.columns if column not in (image_column, label_column)]
    clashing = [column for column in extra_columns if column in ("image", "label")]
    if clashing:
        raise ValueError(
            f"{table.path}: column(s) {clashing} would be overwritten by the image/label read from "
            f"{image_column!r}/{label_column!r}; rename them"
        )
    base_folder = table.path.parent if base_dir is None else Path(base_dir)

    datalist: list[dict] = []
    missing_images: list[tuple[int, str]] = []
    first_row_of_image: dict[str, int] = {}
    for row_number, row in table.rows:
        listed_path = table.required_cell(row_number, row, image_column)
        # os.path.join keeps a listed absolute path as it is
        image_path = os.path.abspath(os.path.join(base_folder, listed_path))
        table.claim_unique(first_row_of_image, image_path, row_number, "image")
        label = table.integer_cell(row_number, row, label_column)
        if not os.path.isfile(image_path):
            missing_images.append((row_number, image_path))
        entry = {"image": image_path, "label": label}
        entry.update((column, row[column]) for column in extra_columns)
        datalist.append(entry)
    report_missing_images(table.path, missing_images, collect_missing)
    return datalist


def read_refuge_glaucoma(
    image_dir: str | os.PathLike,
    labels_sheet: str | os.PathLike | None = None,
    collect_missing: list[tuple[int, str]] | None = None,
) -> list[dict]:
    """Read REFUGE glaucoma labels into ``{"image", "label" (1: glaucoma), "patient_id"}`` entries.

    Without ``labels_sheet``, ``image_dir`` is laid out as REFUGE's Training400: photographs in
    ``Glaucoma/`` (label 1) and ``Non-Glaucoma/`` (label 0). With it, ``image_dir`` holds the photographs
    and the sheet (the validation and test sets' ``Glaucoma_label_and_Fovea_location.xlsx``, or a CSV
    export of it) lists them: ``ImgName`` (a file name) and ``Glaucoma Label`` (0 or 1). REFUGE has one
    photograph per patient, so ``patient_id`` is the file stem. Entries are sorted by file name.
    """
    folder = existing_folder(image_dir, "REFUGE image folder")
    if labels_sheet is not None:
        return _refuge_from_sheet(folder, labels_sheet, collect_missing)
    present = [name for name in REFUGE_CLASS_FOLDERS if os.path.isdir(os.path.join(folder, name))]
    if not present:
        raise FileNotFoundError(
            f"{folder}: neither of REFUGE Training400's class folders {list(REFUGE_CLASS_FOLDERS)} is there; "
            "pass labels_sheet for the validation or test layout (one folder and a label sheet)"
        )
    datalist = [
        {"image": str(path), "label": REFUGE_CLASS_FOLDERS[name], "patient_id": path.stem}
        for name in present
        for path in Path(folder, name).resolve().iterdir()
        if path.suffix in REFUGE_IMAGE_EXTENSIONS
    ]
    if not datalist:
        raise FileNotFoundError(f"{folder}: no {'/'.join(REFUGE_IMAGE_EXTENSIONS)} photographs in {present}")
    return sorted(datalist, key=lambda entry: Path(entry["image"]).name)


def _refuge_from_sheet(folder: str, labels_sheet: str | os.PathLike, collect_missing: list[tuple[int, str]] | None) -> list[dict]:
    table = read_table(labels_sheet, "REFUGE glaucoma label sheet")
    table.require_columns(["ImgName", "Glaucoma Label"])
    datalist, missing_images, first_row_of_image = [], [], {}
    for row_number, row in table.rows:
        name = table.required_cell(row_number, row, "ImgName")
        table.claim_unique(first_row_of_image, name, row_number, "image name")
        label = table.integer_cell(row_number, row, "Glaucoma Label", range(2))
        path = os.path.abspath(os.path.join(folder, name))
        if not os.path.isfile(path):
            missing_images.append((row_number, path))
            continue
        datalist.append({"image": path, "label": label, "patient_id": Path(name).stem})
    report_missing_images(table.path, missing_images, collect_missing)
    return sorted(datalist, key=lambda entry: Path(entry["image"]).name)


def split_by_patient(
    datalist: Sequence[dict],
    fractions: Sequence[float] = (0.8, 0.2),
    seed: int = 0,
    patient_key: str = "patient_id",
    stratify_key: str | None = None,
) -> list[list[dict]]:
    """Split a datalist so that no patient appears in two splits.

    Entries are grouped by ``entry[patient_key]``; an entry without it is a group of its own (keyed by
    its image path). Groups are shuffled with ``seed`` and each goes to the split furthest below its
    share of entries, so split sizes follow ``fractions`` (normalised to sum to 1) as closely as
    whole patients allow. With ``stratify_key`` this is done within each value of that label (a
    patient's is their first entry's), so every split gets each class in about its overall share: a
    small test split of a rare class then still holds positives. Within a split, entries keep their
    datalist order.
    """
    if not fractions or any(fraction <= 0 for fraction in fractions):
        raise ValueError(f"fractions must be one or more positive numbers, got {list(fractions)}")

    groups: dict[tuple, list[int]] = {}
    for index, entry in enumerate(datalist):
        patient = entry.get(patient_key)
        # tagged keys so that a patient id can never collide with an image path
        key = ("patient", patient) if patient is not None else ("image", entry.get("image", index))
        groups.setdefault(key, []).append(index)

    ordered_groups = list(groups.values())
    random.Random(seed).shuffle(ordered_groups)
    strata: dict[Any, list[list[int]]] = {}
    for group in ordered_groups:
        label = None if stratify_key is None else tuple(np.asarray(datalist[group[0]][stratify_key]).ravel().tolist())
        strata.setdefault(label, []).append(group)
    split_indices: list[list[int]] = [[] for _ in fractions]
    for stratum_groups in strata.values():
        for split, indices in enumerate(_assign_groups(stratum_groups, fractions)):
            split_indices[split].extend(indices)
    return [[datalist[index] for index in sorted(indices)] for indices in split_indices]


def _assign_groups(groups: list[list[int]], fractions: Sequence[float]) -> list[list[int]]:
    """Each group (largest first; the shuffled order among equal sizes) to the split furthest below its share."""
    # largest groups first (a stable sort keeps the shuffle among equal sizes): the small ones placed
    # last then even out the split sizes
    groups = sorted(groups, key=len, reverse=True)
    total_fraction = sum(fractions)
    targets = [fraction / total_fraction * sum(map(len, groups)) for fraction in fractions]
    split_indices: list[list[int]] = [[] for _ in fractions]
    for group in groups:
        neediest = max(range(len(targets)), key=lambda split: targets[split] - len(split_indices[split]))
        split_indices[neediest].extend(group)
    return split_indices


def _split_odir_keywords(cell: str) -> list[str]:
    # The real sheet separates keywords with the full-width comma "，"; CSV exports and hand edits use ","
    parts = cell.replace("，", ",").split(",")
    return [keyword for keyword in (part.strip().lower() for part in parts) if keyword]


def _is_quality_keyword(keyword: str) -> bool:
    return keyword in ODIR_QUALITY_KEYWORDS or ODIR_QUALITY_PHRASE in keyword


def _odir_binary_label(keywords: list[str]) -> int | None:
    """0 for a normal fundus, 1 for any disease keyword, None when only image quality is described."""
    diagnostic = {keyword for keyword in keywords if not _is_quality_keyword(keyword)}
    if not diagnostic:
        return None
    return 0 if diagnostic == {ODIR_NORMAL_KEYWORD} else 1


def _find_image(image_folder: str, stem: str, extensions: Sequence[str]) -> str | None:
    for extension in extensions:
        candidate = os.path.abspath(os.path.join(image_folder, stem + extension))
        if os.path.isfile(candidate):
            return candidate
    return None


def existing_folder(path: str | os.PathLike, description: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{description} not found: {path}")
    return os.path.abspath(path)


def report_missing_images(
    table_path: Path, missing_images: list[tuple[int, str]], collect_missing: list[tuple[int, str]] | None = None
) -> None:
    """Raise one FileNotFoundError listing the ``(row, path)`` of images a sheet lists but that do not exist.

    With a ``collect_missing`` list the pairs are appended to it instead, so that a report (``camcontrast
    check-data``) can name them beside every other problem of the data set.
    """
    if not missing_images:
        return
    if collect_missing is not None:
        collect_missing.extend(missing_images)
        return
    shown = "; ".join(
        f"row {row_number}: {path}" for row_number, path in missing_images[:MAX_MISSING_IMAGES_REPORTED]
    )
    not_shown = len(missing_images) - MAX_MISSING_IMAGES_REPORTED
    more = f"; and {not_shown} more" if not_shown > 0 else ""
    raise FileNotFoundError(
        f"{table_path}: {len(missing_images)} listed image file(s) do not exist: {shown}{more}"
    )


def _parse_integer(text: str) -> int | None:
    """Parse "3" or "3.0" (spreadsheets often write integers as floats); anything else gives None."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def read_table(path: str | os.PathLike, description: str) -> _Table:
    """Read a ``.csv`` or ``.xlsx`` sheet whose first row is the header.

    Header names and cells are stripped (the real IDRiD header ends in a space), fully empty rows are
    dropped, and columns without a header are dropped as long as they hold no values (real files end
    in several empty columns).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{description} not found: {path}")
    raw_rows = _read_xlsx_rows(path) if path.suffix.lower() == ".xlsx" else _read_csv_rows(path)
    if not raw_rows:
        raise ValueError(f"{path}: the file is empty; expected a header row")

    header = [name.strip() for name in raw_rows[0]]
    named_positions = [position for position, name in enumerate(header) if name]
    columns = [header[position] for position in named_positions]
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}, row 1: column(s) {repeated} appear more than once in the header")

    rows: list[tuple[int, dict[str, str]]] = []
    for row_number, raw_cells in enumerate(raw_rows[1:], start=2):
        cells = [cell.strip() for cell in raw_cells]
        if not any(cells):
            continue
        for position, cell in enumerate(cells):
            if cell and (position >= len(header) or not header[position]):
                raise ValueError(
                    f"{path}, row {row_number}: value {cell!r} in column {position + 1} has no header; "
                    f"expected values only under the columns {columns}"
                )
        rows.append(
            (
                row_number,
                {
                    header[position]: cells[position] if position < len(cells) else ""
                    for position in named_positions
                },
            )
        )
    return _Table(path=path, columns=columns, rows=rows)


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        # utf-8-sig drops the byte-order mark Excel puts at the start of "CSV UTF-8" files
        with path.open(newline="", encoding="utf-8-sig") as file:
            return list(csv.reader(file))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error}); save it as 'CSV UTF-8' or .xlsx") from error
    except csv.Error as error:
        raise ValueError(f"{path}: not a readable CSV file ({error})") from error


def _read_xlsx_rows(path: Path) -> list[list[str]]:
    """Cells of the workbook's first sheet as text, from row 1 so that row numbers match Excel's."""
    try:
        import openpyxl
    except ImportError as error:
        raise ImportError(
            f"Reading {path} needs openpyxl: pip install openpyxl (or export the sheet to CSV UTF-8)"
        ) from error
    try:
        # data_only: formula cells give their last computed value, as Excel shows them
        workbook = openpyxl.load_workbook(path, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            return [
                [_xlsx_cell_text(value) for value in row]
                for row in sheet.iter_rows(min_row=1, min_col=1, values_only=True)
            ]
        finally:
            workbook.close()
    except Exception as error:  # a damaged zip/XML fails in zlib, zipfile, the XML parser or openpyxl alike
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a readable .xlsx workbook ({reason})") from error


def _xlsx_cell_text(value: object) -> str:
    """Render a cell as the CSV export would: empty for blanks, integral floats without ".0"."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
