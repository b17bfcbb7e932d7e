"""Crop-level data for stage 2, served from a cache of whole images instead of crop files on disk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monai.data import CacheDataset
from monai.transforms import Compose, apply_transform
from torch.utils.data import Dataset

from camcontrast_monai.transforms.crops import SelectFixedCropd, fixed_crop_names
from camcontrast_monai.transforms.paired_crops import RandPairedCropd, check_crop_strategy

__all__ = ["FixedCropDataset", "stage2_dataset"]


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


def stage2_dataset(
    data: Sequence[dict[str, Any]],
    image_transform: Callable,
    crop_transform: Callable | None = None,
    crop_strategy: str = "five",
    spatial_dims: int = 2,
    crop_keys: Sequence[str] = ("image", "heatmap"),
    num_workers: int | None = 1,
    progress: bool = True,
) -> Dataset:
    """Stage 2's samples for one of the crop strategies of the paper's Table 3.

    - ``"five"`` / ``"four"``: every fixed crop of every image, with or without the centre crop
      (:class:`FixedCropDataset`; in 3D, the 8 octants plus 2 centre sub-volumes, or the octants alone);
    - ``"random"``: one half-size crop per image and epoch at a random position shared by ``crop_keys``
      (:class:`~camcontrast_monai.transforms.RandPairedCropd`, on the grid of the last key: the heatmap);
    - ``"none"``: the whole image.

    ``image_transform`` (loading, resizing) is cached per image; ``crop_transform`` (augmentation, float
    conversion) runs on each sample. The bundles' ``stage2_epochs`` scales the epochs of the last two
    strategies by the number of fixed crops, so every strategy takes the same number of steps.
    """
    strategy = check_crop_strategy(crop_strategy)
    if strategy in ("four", "five"):
        return FixedCropDataset(
            data, image_transform, crop_transform, spatial_dims=spatial_dims, include_center=strategy == "five",
            crop_keys=crop_keys, num_workers=num_workers, progress=progress,
        )  # fmt: skip
    steps = [image_transform, *([RandPairedCropd(list(crop_keys), reference_key=crop_keys[-1])] if strategy == "random" else [])]
    steps += [crop_transform] if crop_transform is not None else []
    return CacheDataset(data, Compose(steps), num_workers=num_workers, progress=progress)
