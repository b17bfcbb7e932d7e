"""Crop-level data for stage 2, served from a cache of whole images instead of crop files on disk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monai.data import CacheDataset
from monai.transforms import apply_transform
from torch.utils.data import Dataset

from camcontrast_monai.transforms.crops import SelectFixedCropd, fixed_crop_names

__all__ = ["FixedCropDataset"]


class FixedCropDataset(Dataset):
    """Every fixed crop of every image as its own sample: ``len = n_images * n_crops``.

    Item ``i`` is crop ``i % n_crops`` of image ``i // n_crops``. The deterministic ``image_transform``
    (load, resize, ...) runs once per image and its result is cached in memory (``cache_rate``); the
    crop is cut from the cached image and heatmap on the fly by :class:`SelectFixedCropd`, and then
    ``crop_transform`` (intensity scaling, random augmentation of the image) runs per sample. So the
    crop set costs no disk space beyond the source images and their small heatmap files, where the
    public reference writes five crop files plus five heatmap files per image.

    Each sample keeps every key of its datalist entry (id, label, ...) plus ``crop_index``.
    """

    def __init__(
        self,
        data: Sequence[dict[str, Any]],
        image_transform: Callable,
        crop_transform: Callable | None = None,
        spatial_dims: int = 2,
        include_center: bool = True,
        crop_keys: Sequence[str] = ("image", "heatmap"),
        cache_rate: float = 1.0,
        num_workers: int | None = 1,
        progress: bool = True,
    ) -> None:
        if len(data) == 0:
            raise ValueError("FixedCropDataset got an empty datalist: there is nothing to pretrain on")
        self.images = CacheDataset(
            data, image_transform, cache_rate=cache_rate, num_workers=num_workers, progress=progress
        )
        self.n_crops = len(fixed_crop_names(spatial_dims, include_center))
        self.select_crop = SelectFixedCropd(crop_keys, include_center=include_center)
        self.crop_transform = crop_transform

    def __len__(self) -> int:
        return len(self.images) * self.n_crops

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_index, crop_index = divmod(index, self.n_crops)
        sample = dict(self.images[image_index])
        sample["crop_index"] = crop_index
        sample = self.select_crop(sample)
        return apply_transform(self.crop_transform, sample) if self.crop_transform is not None else sample
