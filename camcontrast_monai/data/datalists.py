"""Downstream datalists: segmentation mask lookup, train/val/test splits and label fractions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from camcontrast_monai.data.readers import split_by_patient
from camcontrast_monai.data.validation import validate_datalist
from camcontrast_monai.transforms.suppression import is_normal_label
from camcontrast_monai.utils import as_switch

__all__ = ["downstream_splits", "find_images", "heatmap_pairs", "read_mask_datalist", "subsample_by_patient", "subsample_class_ratio"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def heatmap_pairs(
    heatmap_datalist: str | Path, spatial_dims: int, channels: int, discard_normal: bool = False
) -> list[dict]:
    """Stage 2's datalist: the ``image``, ``heatmap`` and ``label`` of each entry of the heatmap datalist file.

    Both files of every entry are validated first (the heatmap has one channel, the image ``channels``,
    both ``spatial_dims`` dimensions), and every problem is raised at once, naming the file.
    ``discard_normal`` (paper Table 4) leaves the normal images out.
    """
    source = str(heatmap_datalist)
    entries = json.loads(Path(heatmap_datalist).read_text())
    entries = validate_datalist(entries, image_key="heatmap", spatial_dims=spatial_dims, channels=1, source=source)
    entries = validate_datalist(entries, spatial_dims=spatial_dims, channels=channels, min_spatial_size=16, source=source)
    discard = as_switch(discard_normal, "discard_normal")
    return [
        {key: entry[key] for key in ("image", "heatmap", "label")}
        for entry in entries
        if not (discard and is_normal_label(entry["label"]))
    ]


def find_images(folder: str | Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[str]:
    """Sorted paths of every file in ``folder`` and below whose name ends in one of ``suffixes`` (any case).

    The inference configs' datalist: a folder of photographs, or a Clinica tree of ``.nii.gz`` volumes.
    A missing folder or one without any such file is an error that names the folder, not an empty run.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    endings = tuple(suffix.lower() for suffix in suffixes)
    paths = sorted(str(path) for path in root.rglob("*") if path.is_file() and path.name.lower().endswith(endings))
    if not paths:
        raise ValueError(f"no {'/'.join(endings)} files in {root} or below it")
    return paths


def subsample_by_patient(datalist: Sequence[dict], fraction: float, seed: int = 0, patient_key: str = "patient_id") -> list[dict]:
    """Keep ``fraction`` of the entries, whole patients at a time (the paper's low-label settings)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(datalist)
    kept = split_by_patient(datalist, (fraction, 1 - fraction), seed=seed, patient_key=patient_key)[0]
    if not kept:
        raise ValueError(f"label fraction {fraction} of {len(datalist)} entries keeps no entry")
    return kept


def subsample_class_ratio(
    datalist: Sequence[dict], ratio: float | None, seed: int = 0, label_key: str = "label"
) -> list[dict]:
    """A pretraining set with ``ratio`` = minority count / majority count (paper Table 6), or all of it for None.

    The classes are the binary labels under ``label_key``; the minority is the smaller class of ``datalist``.
    A ratio below the data's own drops minority images, a ratio above it drops majority images; which
    ones is a seeded choice, and the kept entries keep their order.
    """
    if ratio is None:
        return list(datalist)
    if not 0 < ratio <= 1:
        raise ValueError(f"class ratio must be in (0, 1] (minority / majority), got {ratio}")
    by_class: dict[int, list[int]] = {}
    for index, entry in enumerate(datalist):
        by_class.setdefault(int(entry[label_key]), []).append(index)
    if len(by_class) != 2:
        raise ValueError(f"a class ratio needs exactly two classes, got labels {sorted(by_class)}")
    minority, majority = sorted(by_class.values(), key=len)
    if ratio <= len(minority) / len(majority):
        minority = _choose(minority, max(1, round(ratio * len(majority))), seed)
    else:
        majority = _choose(majority, max(1, round(len(minority) / ratio)), seed)
    kept = set(minority) | set(majority)
    return [entry for index, entry in enumerate(datalist) if index in kept]


def _choose(indices: list[int], count: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).choice(indices, size=count, replace=False).tolist()


def downstream_splits(
    datalist: Sequence[dict],
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    label_fraction: float = 1.0,
    patient_key: str = "patient_id",
    stratify_key: str | None = None,
) -> dict[str, list[dict]]:
    """Seeded ``train``/``val``/``test`` split by patient, then ``label_fraction`` of ``train`` kept.

    The test and validation sets depend only on ``seed``, never on the label fraction, so results at
    different fractions and initialisations are measured on the same images. ``stratify_key`` splits
    each class of that label on its own (:func:`~camcontrast_monai.data.split_by_patient`), for a rare
    class that an unstratified small split can miss.
    """
    train, val, test = split_by_patient(datalist, fractions, seed=seed, patient_key=patient_key, stratify_key=stratify_key)
    if not (train and val and test):
        raise ValueError(
            f"{len(datalist)} entries are too few for a train/val/test split of {list(fractions)}: "
            f"got {len(train)}/{len(val)}/{len(test)}"
        )
    return {"train": subsample_by_patient(train, label_fraction, seed + 1, patient_key), "val": val, "test": test}


def read_mask_datalist(image_dir: str, mask_patterns: Mapping[str, str]) -> list[dict]:
    """Pair every image in ``image_dir`` with its masks: ``{"image": path, name: mask path, ...}``.

    ``mask_patterns`` maps a mask name to a path template with ``{stem}`` (the image file name without
    extension), e.g. ``{"MA": "data/masks/MA/{stem}.png"}`` for the synthetic layout or
    ``{"MA": ".../1. Microaneurysms/{stem}_MA.tif"}`` for IDRiD's. Every image must have every mask;
    all missing files are listed in one error.
    """
    folder = Path(image_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    datalist, missing = [], []
    for image in images:
        entry = {"image": str(image)}
        for name, pattern in mask_patterns.items():
            mask = Path(pattern.format(stem=image.stem))
            entry[name] = str(mask)
            if not mask.is_file():
                missing.append(f"{name} mask for {image.name}: {mask}")
        datalist.append(entry)
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(f"{len(missing)} mask files are missing:\n  {shown}{more}")
    return datalist
