"""Random crops cut at the same place from an image and its (coarser) heatmap: the "random" cropping ablation."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["CROP_STRATEGIES", "RandPairedCropd", "check_crop_strategy"]

# stage-2 cropping strategies of the paper's Table 3: whole image, one random crop, four corners, four corners + centre
CROP_STRATEGIES = ("none", "random", "four", "five")


def check_crop_strategy(name: str) -> str:
    """``name`` if it is one of :data:`CROP_STRATEGIES`, else a ``ValueError``."""
    if name not in CROP_STRATEGIES:
        raise ValueError(f"unknown crop strategy {name!r}; choose one of {CROP_STRATEGIES}")
    return name


class RandPairedCropd(RandomizableTransform, MapTransform):
    """Crop every key to half its spatial size at one random position shared by all keys (paper Table 3, "Random").

    The offset is drawn on the grid of ``reference_key`` (the heatmap, whose cells each cover an integer
    number of image pixels) and scaled to every other key, so image crop and heatmap crop show the same
    region, as the fixed crops do; only the position is random instead of one of the 4 corners or the
    centre. Crop sizes are ``size // 2`` per spatial axis, as for :func:`~camcontrast_monai.transforms.fixed_crop_boxes`.

    Args:
        keys: channel-first arrays to crop (e.g. image and heatmap).
        reference_key: the key with the coarsest grid; every other key's size must be a multiple of its size.
    """

    def __init__(self, keys: KeysCollection = ("image", "heatmap"), reference_key: str = "heatmap") -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        MapTransform.__init__(self, keys)
        self.reference_key = reference_key
        self._offsets: tuple[int, ...] = ()

    def randomize(self, shape: tuple[int, ...]) -> None:
        self._offsets = tuple(int(self.R.randint(0, size - size // 2 + 1)) for size in shape)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        reference = tuple(int(s) for s in d[self.reference_key].shape[1:])
        if min(reference) < 2:
            raise ValueError(f"'{self.reference_key}' of spatial shape {reference} is too small to crop in half")
        self.randomize(reference)
        for key in self.key_iterator(d):
            shape = tuple(int(s) for s in d[key].shape[1:])
            if len(shape) != len(reference) or any(s % r for s, r in zip(shape, reference, strict=True)):
                raise ValueError(
                    f"'{key}' of spatial shape {shape} is not a whole multiple of '{self.reference_key}' {reference}"
                )
            box = tuple(
                slice(offset * (s // r), offset * (s // r) + (r // 2) * (s // r))
                for offset, s, r in zip(self._offsets, shape, reference, strict=True)
            )
            d[key] = d[key][(slice(None), *box)]
        return d
