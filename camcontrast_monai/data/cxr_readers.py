"""Readers for the chest X-ray data sets' own formats: ChestX-ray14 and SIIM-ACR, producing MONAI datalists.

ChestX-ray14 (NIH): ``Data_Entry_2017.csv`` with one row per image; its header is, verbatim,
``Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,
OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]`` (the commas inside the brackets split
those two names into four CSV columns, and some releases end every line with a comma). ``Finding
Labels`` is ``No Finding`` or disease names joined by ``|``. The official split is two plain-text
lists of image names, ``train_val_list.txt`` and ``test_list.txt``, patient-disjoint.

SIIM-ACR pneumothorax: DICOM images ``<anything>/<ImageId>.dcm`` and ``train-rle.csv`` with header
``ImageId, EncodedPixels``; ``-1`` means no pneumothorax, and an image with several pneumothorax
regions has one row per region (the rows are unioned). The run-length code is the challenge's: pairs
``start length`` where each start is counted from the end of the previous run (the first from pixel
0), over the pixels in column-major order (down the first column, then the next).

Every error names the file and its 1-based row (the header is row 1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from camcontrast_monai.data.datalists import subsample_by_patient
from camcontrast_monai.data.readers import (
    existing_folder,
    read_table,
    report_missing_images,
    split_by_patient,
)
from camcontrast_monai.utils.rle import SIIM_EMPTY_MASK, rle_decode, rle_encode

__all__ = [
    "CHESTXRAY14_LABELS",
    "CHESTXRAY14_NO_FINDING",
    "SIIM_EMPTY_MASK",
    "chestxray14_splits",
    "read_chestxray14",
    "read_image_list",
    "read_siim_acr",
    "read_siim_rle",
    "rle_decode",
    "rle_encode",
]

logger = logging.getLogger(__name__)

# ChestX-ray14's fourteen disease labels, spelled as in Data_Entry_2017.csv, in the paper's Table B.2 order
CHESTXRAY14_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
CHESTXRAY14_NO_FINDING = "No Finding"


def read_image_list(path: str | os.PathLike) -> list[str]:
    """Image names of an official split list (``train_val_list.txt`` / ``test_list.txt``), one per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image list not found: {path}")
    names, first_line = [], {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in first_line:
            raise ValueError(f"{path}, line {line_number}: {name!r} is listed twice (first on line {first_line[name]})")
        first_line[name] = line_number
        names.append(name)
    if not names:
        raise ValueError(f"{path}: the list is empty; expected one image name per line")
    return names


def read_chestxray14(
    csv_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    image_list: str | os.PathLike | Sequence[str] | None = None,
) -> list[dict]:
    """Read ``Data_Entry_2017.csv`` into a datalist with the coarse and the fine labels of each image.

    Entries are ``{"image", "label", "targets", "findings", "patient_id", "follow_up"}``: ``label`` is
    the paper's coarse label (0 for ``No Finding``, 1 for any disease), ``targets`` the fourteen
    disease indicators as float32 in :data:`CHESTXRAY14_LABELS` order, ``findings`` the disease names.
    ``image_list`` (a split list file or a sequence of names) keeps only those images; each listed
    image must be in the CSV. Unknown disease names, ``No Finding`` mixed with diseases, duplicated
    images and listed images missing from ``image_dir`` are errors naming the row.
    """
    table = read_table(csv_path, "ChestX-ray14 Data_Entry CSV")
    table.require_columns(["Image Index", "Finding Labels", "Patient ID"])
    image_folder = existing_folder(image_dir, "ChestX-ray14 image folder")
    wanted: set[str] | None = None
    if image_list is not None:
        names = read_image_list(image_list) if isinstance(image_list, (str, os.PathLike)) else list(image_list)
        wanted = set(names)

    datalist: list[dict] = []
    missing_images: list[tuple[int, str]] = []
    first_row_of_image: dict[str, int] = {}
    for row_number, row in table.rows:
        name = table.required_cell(row_number, row, "Image Index")
        table.claim_unique(first_row_of_image, name, row_number, "image")
        findings = _chestxray14_findings(table, row_number, row)
        patient_id = table.required_cell(row_number, row, "Patient ID")
        if wanted is not None and name not in wanted:
            continue
        follow_up = table.integer_cell(row_number, row, "Follow-up #") if "Follow-up #" in table.columns else 0
        path = os.path.join(image_folder, name)
        if not os.path.isfile(path):
            missing_images.append((row_number, path))
        targets = np.array([label in findings for label in CHESTXRAY14_LABELS], dtype=np.float32)
        datalist.append(
            {
                "image": path,
                "label": int(bool(findings)),
                "targets": targets,
                "findings": findings,
                "patient_id": patient_id,
                "follow_up": follow_up,
            }
        )
    if wanted is not None:
        absent = sorted(wanted - set(first_row_of_image))
        if absent:
            raise ValueError(
                f"{image_list}: {len(absent)} listed image(s) are not in {table.path}, e.g. {absent[:5]}"
            )
    report_missing_images(table.path, missing_images)
    return datalist


def chestxray14_splits(
    csv_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    train_val_list: str | os.PathLike,
    test_list: str | os.PathLike,
    val_fraction: float = 0.2,
    seed: int = 0,
    label_fraction: float = 1.0,
) -> dict[str, list[dict]]:
    """The official split: ``test`` from ``test_list.txt``; ``train_val_list.txt`` split by patient, seeded,
    into ``train`` and ``val`` (``val_fraction``, the paper's 20%), then ``label_fraction`` of ``train``
    kept, whole patients at a time (the paper's 1/5/25/50/100% settings).

    An image on both lists, or a patient with images on both, is an error: the official lists are
    patient-disjoint and a shared patient would leak into the test score.
    """
    train_val_names, test_names = read_image_list(train_val_list), read_image_list(test_list)
    both = sorted(set(train_val_names) & set(test_names))
    if both:
        raise ValueError(f"{len(both)} image(s) are on both {train_val_list} and {test_list}, e.g. {both[:5]}")
    train_val = read_chestxray14(csv_path, image_dir, train_val_names)
    test = read_chestxray14(csv_path, image_dir, test_names)
    shared = sorted({d["patient_id"] for d in train_val} & {d["patient_id"] for d in test})
    if shared:
        raise ValueError(
            f"{len(shared)} patient(s) have images on both {train_val_list} and {test_list}, e.g. {shared[:5]}"
        )
    train, val = split_by_patient(train_val, (1 - val_fraction, val_fraction), seed=seed)
    return {"train": subsample_by_patient(train, label_fraction, seed + 1), "val": val, "test": test}


def read_siim_rle(csv_path: str | os.PathLike) -> dict[str, list[str]]:
    """``train-rle.csv`` -> ``{ImageId: [run-length code, ...]}`` (an empty list for ``-1``), in file order.

    Each code is checked to be well formed (pairs of non-negative integers). An image listed both
    with ``-1`` and with a mask is an error naming both rows.
    """
    table = read_table(csv_path, "SIIM-ACR run-length CSV")  # the real header is "ImageId, EncodedPixels"
    table.require_columns(["ImageId", "EncodedPixels"])
    codes: dict[str, list[str]] = {}
    empty_row: dict[str, int] = {}
    mask_row: dict[str, int] = {}
    for row_number, row in table.rows:
        image_id = table.required_cell(row_number, row, "ImageId")
        code = table.required_cell(row_number, row, "EncodedPixels")
        codes.setdefault(image_id, [])
        if code == SIIM_EMPTY_MASK:
            empty_row.setdefault(image_id, row_number)
        else:
            numbers = code.split()
            if len(numbers) % 2 or not all(token.isdigit() for token in numbers):
                raise table.error(row_number, f"EncodedPixels {code[:40]!r} is not '-1' or pairs of non-negative integers")
            mask_row.setdefault(image_id, row_number)
            codes[image_id].append(code)
        if image_id in empty_row and image_id in mask_row:
            raise table.error(
                row_number,
                f"image {image_id} is listed as empty (-1, row {empty_row[image_id]}) and with a mask "
                f"(row {mask_row[image_id]})",
            )
    return codes


def read_siim_acr(csv_path: str | os.PathLike, dicom_dir: str | os.PathLike) -> list[dict]:
    """SIIM-ACR datalist: ``{"image": <ImageId>.dcm path, "rle": [codes], "patient_id": ImageId}`` per CSV image.

    DICOM files are found anywhere under ``dicom_dir`` (the challenge nests them as
    ``<study>/<series>/<ImageId>.dcm``). A CSV image without its DICOM is an error; DICOM files the
    CSV does not list are skipped with a warning. Masks are decoded later, at the image's own size,
    by :class:`camcontrast_monai.transforms.RLEMaskd`. SIIM-ACR has one image per patient, so the
    ImageId serves as the patient id for splitting.
    """
    codes = read_siim_rle(csv_path)
    folder = Path(existing_folder(dicom_dir, "SIIM-ACR DICOM folder"))
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.dcm")):
        if path.stem in files:
            raise ValueError(f"two DICOM files for image {path.stem}: {files[path.stem]} and {path}")
        files[path.stem] = path
    missing = [image_id for image_id in codes if image_id not in files]
    if missing:
        raise FileNotFoundError(
            f"{csv_path}: {len(missing)} listed image(s) have no <ImageId>.dcm under {folder}, e.g. {missing[:5]}"
        )
    unlisted = len(files) - len(codes)
    if unlisted:
        logger.warning("%d DICOM file(s) under %s are not in %s; skipped", unlisted, folder, csv_path)
    return [{"image": str(files[image_id]), "rle": runs, "patient_id": image_id} for image_id, runs in codes.items()]


def _chestxray14_findings(table, row_number: int, row: dict[str, str]) -> list[str]:
    cell = table.required_cell(row_number, row, "Finding Labels")
    names = [name.strip() for name in cell.split("|")]
    if names == [CHESTXRAY14_NO_FINDING]:
        return []
    if CHESTXRAY14_NO_FINDING in names:
        raise table.error(row_number, f"Finding Labels {cell!r} mixes 'No Finding' with diseases")
    unknown = [name for name in names if name not in CHESTXRAY14_LABELS]
    if unknown:
        raise table.error(
            row_number, f"Finding Labels {cell!r} has unknown label(s) {unknown}; expected {list(CHESTXRAY14_LABELS)}"
        )
    return names
