"""Heatmap generation between the stages: run the frozen stage-1 classifier once over every image."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from tqdm.auto import tqdm

from camcontrast_monai.networks.cam_classifier import CAMClassifier
from camcontrast_monai.networks.heatmaps import cam_heatmaps, positive_class_heatmaps, unweighted_heatmaps
from camcontrast_monai.transforms.suppression import BackgroundSuppression, NegativeSuppression
from camcontrast_monai.utils.io import atomic_path
from camcontrast_monai.utils.tensors import plain_tensor

__all__ = ["generate_heatmaps", "heatmap_id"]

logger = logging.getLogger(__name__)


def heatmap_id(entry: dict[str, Any], image_key: str = "image") -> str:
    """File stem used for an image's heatmap: the entry's ``id`` if it has one, else the image's file stem."""
    return str(entry.get("id") or Path(str(entry[image_key])).stem)


def _json_value(value: Any) -> Any:
    """Arrays (e.g. multilabel targets) as lists, anything else JSON cannot write as its text."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic, torch.Tensor)) else str(value)


def generate_heatmaps(
    classifier: CAMClassifier,
    datalist: Sequence[dict[str, Any]],
    transform: Callable,
    output_dir: str,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    background_suppression: bool = True,
    background_threshold: float = 15.0,
    intensity_max: float = 1.0,
    negative_suppression: bool = True,
    image_key: str = "image",
    label_key: str = "label",
    datalist_name: str = "heatmap_datalist.json",
    multilabel: bool = False,
    unweighted: bool = False,
) -> list[dict[str, Any]]:
    """Write one heatmap per image and a datalist that pairs each image with its heatmap.

    Each heatmap is the abnormal-class CAM (Eq. 1) min-max normalised per image, at feature-map
    resolution, then background-suppressed (foreground = the transformed image above
    ``background_threshold`` on the 0-255 scale, ``intensity_max`` being the image's full scale after
    ``transform``) and negative-suppressed (normal images get an all-zero heatmap). Heatmaps are stored
    losslessly as float32 ``.npy`` files ``output_dir/heatmaps/<id>.npy`` of shape ``(*feature_spatial)``
    (no channel axis; MONAI's ``LoadImaged(ensure_channel_first=True)`` adds it back), each written
    atomically. The returned datalist (also written to ``output_dir/datalist_name``) is ``datalist``
    with a ``heatmap`` path added to every entry; the crops are cut from image and heatmap later, so no
    crop is ever written to disk.

    ``transform`` must turn an entry into a channel-first image tensor the classifier accepts (the
    stage-1 validation transform) and must keep ``label_key``.

    ``multilabel=True`` (section 4.6): ``label_key`` holds each image's 0/1 vector over the classifier's
    K classes, and the heatmap is the average of the CAMs of its positive classes
    (:func:`~camcontrast_monai.networks.heatmaps.positive_class_heatmaps`) instead of the abnormal-class CAM.

    ``unweighted=True`` is the "unweighted heatmaps" ablation (Table 4): the sum of the feature maps
    (:func:`~camcontrast_monai.networks.heatmaps.unweighted_heatmaps`) replaces the CAM.
    """
    ids = [heatmap_id(entry, image_key) for entry in datalist]
    duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise ValueError(f"heatmap ids must be unique (they name the files); duplicated: {duplicates[:10]}")
    heatmap_dir = Path(output_dir) / "heatmaps"
    heatmap_dir.mkdir(parents=True, exist_ok=True)
    background = BackgroundSuppression(background_threshold, intensity_max)
    negative = NegativeSuppression()

    indexed = [{"index": i, image_key: entry[image_key], label_key: entry[label_key]} for i, entry in enumerate(datalist)]
    loader = DataLoader(Dataset(indexed, transform), batch_size=batch_size, num_workers=num_workers, shuffle=False)
    classifier = classifier.to(device)
    paired: list[dict[str, Any]] = [dict(entry) for entry in datalist]
    for batch in tqdm(loader, desc="heatmaps", unit="batch"):
        images = plain_tensor(batch[image_key]).to(device)
        if unweighted:
            heatmaps = unweighted_heatmaps(classifier, images).cpu()
        elif multilabel:
            heatmaps = positive_class_heatmaps(classifier, images, torch.as_tensor(batch[label_key]).to(device)).cpu()
        else:
            heatmaps = cam_heatmaps(classifier, images).cpu()
        for heatmap, image, label, index in zip(heatmaps, images.cpu(), batch[label_key], batch["index"], strict=True):
            if background_suppression:
                heatmap = background(heatmap, image)
            if negative_suppression:
                heatmap = negative(heatmap, label)
            path = heatmap_dir / f"{ids[int(index)]}.npy"
            with atomic_path(path) as temporary:
                np.save(temporary, heatmap[0].numpy().astype(np.float32))
            paired[int(index)]["heatmap"] = str(path)
    with atomic_path(Path(output_dir) / datalist_name) as temporary:
        temporary.write_text(json.dumps(paired, indent=1, default=_json_value))
    logger.info("wrote %d heatmaps to %s", len(paired), heatmap_dir)
    return paired
