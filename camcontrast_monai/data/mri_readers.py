"""Readers for brain MRI cohorts in the Clinica / ClinicaDL layout (ADNI), returning MONAI datalists.

ClinicaDL describes a cohort with a tab-separated table of one row per scan (``participant_id``,
``session_id``, ``diagnosis``, often ``age``, ``sex``, ...). The images are NIfTI files found either in
an ``image`` / ``path`` column or, as Clinica's CAPS folders store them, by a path template such as
``subjects/{participant_id}/{session_id}/t1_linear/{participant_id}_{session_id}_T1w.nii.gz``.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

__all__ = ["CAPS_T1_TEMPLATE", "DIAGNOSIS_CLASSES", "read_clinica_tsv"]

CAPS_T1_TEMPLATE = "subjects/{participant_id}/{session_id}/t1_linear/{participant_id}_{session_id}_T1w.nii.gz"
# the paper's 3-way task: class index per diagnosis; the coarse pretraining label is CN (0) vs MCI or AD (1)
DIAGNOSIS_CLASSES = {"CN": 0, "MCI": 1, "AD": 2}
# spellings found in ADNI / ClinicaDL tables for the same three groups
_DIAGNOSIS_ALIASES = {
    "cn": "CN", "nl": "CN", "normal": "CN",
    "mci": "MCI", "smci": "MCI", "pmci": "MCI", "emci": "MCI", "lmci": "MCI",
    "ad": "AD", "dementia": "AD",
}  # fmt: skip
_REQUIRED_COLUMNS = ("participant_id", "session_id", "diagnosis")
_PATH_COLUMNS = ("image", "path")
_PROBLEMS_SHOWN = 20


def read_clinica_tsv(
    tsv_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    path_template: str = CAPS_T1_TEMPLATE,
    label: str = "binary",
) -> list[dict]:
    """Datalist of a ClinicaDL-style TSV: one entry per (participant, session).

    Each entry has ``image`` (absolute path), ``label``, ``diagnosis`` (CN/MCI/AD), ``class_index``
    (0/1/2), ``patient_id`` (the participant, so splits keep a subject's sessions together),
    ``session_id`` and ``id`` (``<participant>_<session>``, unique, used to name heatmaps), plus every
    other column of the table as text.

    Args:
        tsv_path: tab-separated table with ``participant_id``, ``session_id``, ``diagnosis``.
        image_root: folder that relative image paths and ``path_template`` start from (default: the
            TSV's folder).
        path_template: where a row's image is when the table has no ``image``/``path`` column.
        label: ``"binary"``: ``label`` = 0 for CN, 1 for MCI or AD (the coarse pretraining label);
            ``"diagnosis"``: ``label`` = the class index (the downstream 3-way task).

    Raises:
        ValueError: listing every problem of the table at once (missing columns, unknown diagnoses,
            duplicated scans, empty table).
        FileNotFoundError: listing every image that does not exist.
    """
    if label not in ("binary", "diagnosis"):
        raise ValueError(f"label must be 'binary' or 'diagnosis', got {label!r}")
    path = Path(tsv_path)
    if not path.is_file():
        raise FileNotFoundError(f"no TSV at {path}")
    root = Path(image_root) if image_root is not None else path.parent
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    columns = list(rows[0]) if rows else _header(path)
    missing_columns = [column for column in _REQUIRED_COLUMNS if column not in columns]
    if missing_columns:
        raise ValueError(
            f"{path}: missing column(s) {missing_columns}; found {columns}. A ClinicaDL table is tab-separated "
            "with participant_id, session_id and diagnosis."
        )
    if not rows:
        raise ValueError(f"{path}: the table has a header but no rows")
    path_column = next((column for column in _PATH_COLUMNS if column in columns), None)

    problems: list[str] = []
    datalist, missing_images = [], []
    scans = Counter((row["participant_id"].strip(), row["session_id"].strip()) for row in rows)
    for row_number, row in enumerate(rows, start=2):  # row 1 is the header
        participant, session = row["participant_id"].strip(), row["session_id"].strip()
        if not participant or not session:
            problems.append(f"row {row_number}: empty participant_id or session_id")
            continue
        diagnosis = _DIAGNOSIS_ALIASES.get(row["diagnosis"].strip().lower())
        if diagnosis is None:
            problems.append(f"row {row_number}: unknown diagnosis {row['diagnosis']!r} (expected CN, MCI or AD)")
            continue
        if scans[(participant, session)] > 1:
            problems.append(f"row {row_number}: {participant} {session} appears {scans[(participant, session)]} times")
            continue
        relative = row[path_column].strip() if path_column else path_template.format(participant_id=participant, session_id=session)
        image = (root / relative).resolve()
        if not image.is_file():
            missing_images.append(f"row {row_number}: {image}")
        class_index = DIAGNOSIS_CLASSES[diagnosis]
        entry = {key: value for key, value in row.items() if key not in _PATH_COLUMNS and key is not None}
        entry.update(
            image=str(image),
            diagnosis=diagnosis,
            class_index=class_index,
            label=int(class_index > 0) if label == "binary" else class_index,
            patient_id=participant,
            session_id=session,
            id=f"{participant}_{session}",
        )
        datalist.append(entry)
    if problems:
        raise ValueError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(_first(problems)))
    if missing_images:
        raise FileNotFoundError(
            f"{path}: {len(missing_images)} image(s) not found:\n  " + "\n  ".join(_first(missing_images))
        )
    return datalist


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle, delimiter="\t"), [])


def _first(lines: list[str]) -> list[str]:
    more = [f"... and {len(lines) - _PROBLEMS_SHOWN} more"] if len(lines) > _PROBLEMS_SHOWN else []
    return lines[:_PROBLEMS_SHOWN] + more
