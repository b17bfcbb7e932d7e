"""Bring every volume to the grid the 3D networks were built for (80x96x80 in the paper, section 4.7)."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Resize, ResizeWithPadOrCrop, Transform
from monai.utils import TransformBackends

__all__ = ["FitVolume", "FitVolumed"]

logger = logging.getLogger(__name__)


def _source_name(img: torch.Tensor) -> str:
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", "a volume"))
    return "a volume"


class FitVolume(Transform):
    """Channel-first volume ``(C, D, H, W)`` -> ``(C, *spatial_size)``; a volume of that size passes unchanged.

    Any other size is zoomed by ONE factor on all axes (so anatomy keeps its proportions), the largest
    that fits every axis inside ``spatial_size``, then symmetrically padded with zeros (or cropped where
    rounding overshoots) to exactly ``spatial_size``. Each such volume logs a warning naming its file:
    a size mismatch usually means the data did not go through the expected preprocessing (e.g. Clinica
    ``t1-linear`` then downsampling), and the result is only as good as that guess.

    Raises:
        ValueError: when the volume does not have ``len(spatial_size)`` spatial axes (a 2D slice, or a
            4D series), naming the file.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, spatial_size: Sequence[int] = (80, 96, 80), mode: str = "trilinear") -> None:
        self.spatial_size = tuple(int(size) for size in spatial_size)
        self.mode = mode

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        spatial = tuple(int(size) for size in img.shape[1:])
        if len(spatial) != len(self.spatial_size):
            raise ValueError(
                f"{_source_name(img)}: expected a channel-first volume with {len(self.spatial_size)} spatial axes "
                f"{self.spatial_size}, got shape {tuple(img.shape)} ({len(spatial)} spatial axes)"
            )
        if spatial == self.spatial_size:
            return img
        factor = min(target / size for target, size in zip(self.spatial_size, spatial, strict=True))
        zoomed_size = tuple(max(1, round(size * factor)) for size in spatial)
        logger.warning(
            "%s has spatial size %s, not %s: zoomed by %.3f to %s and padded/cropped to %s",
            _source_name(img), spatial, self.spatial_size, factor, zoomed_size, self.spatial_size,
        )  # fmt: skip
        zoomed = Resize(zoomed_size, mode=self.mode)(img) if zoomed_size != spatial else img
        return ResizeWithPadOrCrop(self.spatial_size)(zoomed)


class FitVolumed(MapTransform):
    """Dictionary twin of :class:`FitVolume`."""

    backend = FitVolume.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] = (80, 96, 80),
        mode: str = "trilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.fit = FitVolume(spatial_size, mode)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.fit(d[key])
        return d
