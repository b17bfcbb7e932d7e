"""Fixed crops of CAMContrast (paper section 3.2, "Fixed crop training", and section 6 for 3D MRI).

2D ``(H, W)``: five crops of size ``(H // 2, W // 2)`` in the order

    0 "TL" top-left, 1 "TR" top-right, 2 "BL" bottom-left, 3 "BR" bottom-right, 4 "C" centre.

Corner crops are anchored to the image corners, so for an odd size the middle row/column belongs to no
corner crop; the centre crop starts at ``((H - H // 2) // 2, (W - W // 2) // 2)``.

3D ``(D, H, W)``: the first spatial axis is split into two halves, ``[0, D // 2)`` ("h0") and
``[D - D // 2, D)`` ("h1"), and each half gets the five 2D crops on the last two axes: order
``h0-TL, h0-TR, h0-BL, h0-BR, h0-C, h1-TL, ..., h1-C``. An 80x96x80 brain MRI gives 8
non-overlapping octants plus 2 centre sub-volumes, all 40x48x40, as in the paper.

``include_center=False`` drops the centre crops (the paper's "four-crop" ablation): 4 crops in 2D,
8 in 3D, in the same relative order. Crop positions are identified by ``crop_index``, the position of
the crop in this order; :func:`fixed_crop_names` maps indices to names.

The crop boxes depend only on the spatial shape, so a dataset can store whole images and serve one
crop at a time with :class:`SelectFixedCropd` instead of writing every crop to disk.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, SpatialCrop, Transform
from monai.utils import TransformBackends

__all__ = [
    "FIXED_CROP_NAMES_2D",
    "FIXED_CROP_NAMES_3D",
    "HEATMAP_STRIDE_2D",
    "fixed_crop_names",
    "fixed_crop_boxes",
    "paired_crop_boxes",
    "FixedCrops",
    "FixedCropsd",
    "SelectFixedCrop",
    "SelectFixedCropd",
]

FIXED_CROP_NAMES_2D = ("TL", "TR", "BL", "BR", "C")
HEATMAP_STRIDE_2D = 16  # a 2D image's heatmap is its U-Net encoder's feature map: 1/16 of the image per axis
FIXED_CROP_NAMES_3D = tuple(f"h{half}-{name}" for half in (0, 1) for name in FIXED_CROP_NAMES_2D)


def fixed_crop_names(spatial_dims: int, include_center: bool = True) -> tuple[str, ...]:
    """Position names of the fixed crops, indexed by ``crop_index`` (2 or 3 spatial dims)."""
    names = {2: FIXED_CROP_NAMES_2D, 3: FIXED_CROP_NAMES_3D}.get(spatial_dims)
    if names is None:
        raise ValueError(f"fixed crops are defined for 2 or 3 spatial dims, got {spatial_dims}.")
    return tuple(name for name in names if include_center or not name.endswith("C"))


def _halves(size: int) -> tuple[slice, slice]:
    half = size // 2
    return slice(0, half), slice(size - half, size)


def _centre(size: int) -> slice:
    half = size // 2
    start = (size - half) // 2
    return slice(start, start + half)


def fixed_crop_boxes(spatial_shape: Sequence[int], include_center: bool = True) -> list[tuple[slice, ...]]:
    """Boxes (one slice per spatial axis, channel axis excluded) of the fixed crops, in crop order.

    Args:
        spatial_shape: ``(H, W)`` or ``(D, H, W)``; every size must be at least 2.
        include_center: add the centre crop(s); ``False`` gives the "four-crop" variant.

    Raises:
        ValueError: for a shape that is not 2D/3D or has a size below 2.
    """
    shape = tuple(int(size) for size in spatial_shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"fixed crops need 2 or 3 spatial dims, got spatial shape {shape}.")
    if min(shape) < 2:
        raise ValueError(
            f"fixed crops need every spatial size >= 2 (crops are half the size), got spatial shape {shape}."
        )
    *leading, height, width = shape
    top, bottom = _halves(height)
    left, right = _halves(width)
    in_plane = [(top, left), (top, right), (bottom, left), (bottom, right)]
    if include_center:
        in_plane.append((_centre(height), _centre(width)))
    # 2D has no leading axis: product() yields one empty prefix, so both cases share this line
    leading_halves = itertools.product(*(_halves(size) for size in leading))
    return [prefix + plane for prefix in leading_halves for plane in in_plane]


def paired_crop_boxes(
    shapes: Mapping[Hashable, Sequence[int]], include_center: bool = True
) -> dict[Hashable, list[tuple[slice, ...]]]:
    """The fixed crop boxes of several arrays of one sample (an image and its heatmap), cut at the same places.

    The boxes are laid on the grid of the coarsest array (the heatmap) and scaled to every array that is an
    integer multiple of it on each axis, so an image crop covers exactly the pixels of its heatmap crop. Boxes
    from each array's own shape would not: a 96-px image and its 6-cell heatmap put the centre crop at pixel 24
    and at cell 1 (pixel 16). On that grid the centre crop sits at most half a heatmap cell from the image's
    true centre. On an odd grid (a 5-cell heatmap axis) the image crops are the regions of their 2-cell heatmap
    crops, smaller than half the image, rather than half-image crops that reach past their heatmaps. An array that
    is not such a multiple gets the boxes of its own shape, which line up only approximately.
    """
    if not shapes:
        return {}
    grid_key = min(shapes, key=lambda key: math.prod(shapes[key]))
    grid = tuple(int(size) for size in shapes[grid_key])
    grid_boxes = fixed_crop_boxes(grid, include_center)
    boxes = {}
    for key, shape in shapes.items():
        shape = tuple(int(size) for size in shape)
        factors = [size // cells for size, cells in zip(shape, grid, strict=True)]
        if all(size == factor * cells for size, factor, cells in zip(shape, factors, grid, strict=True)):
            boxes[key] = [tuple(slice(s.start * f, s.stop * f) for s, f in zip(box, factors, strict=True)) for box in grid_boxes]
        else:
            boxes[key] = fixed_crop_boxes(shape, include_center)
    return boxes


def _crop(img: NdarrayOrTensor, box: tuple[slice, ...]) -> NdarrayOrTensor:
    # SpatialCrop updates a MetaTensor's affine and records the crop; plain arrays are just sliced
    if isinstance(img, MetaTensor):
        return SpatialCrop(roi_slices=box)(img)
    return img[(slice(None), *box)]


def _check_channel_first(img: NdarrayOrTensor) -> None:
    if img.ndim not in (3, 4):
        raise ValueError(
            f"fixed crops expect a channel-first 2D or 3D array (C, H, W) or (C, D, H, W), got shape {tuple(img.shape)}."
        )


class FixedCrops(Transform):
    """Split a channel-first image ``(C, *spatial)`` into its fixed crops (see module docstring).

    Returns a list of crops (channel axis kept) ordered by ``crop_index``: 5 in 2D, 10 in 3D, or 4/8
    with ``include_center=False``. Numpy arrays and tensors are sliced (the crops are views);
    MetaTensors are cropped with :class:`monai.transforms.SpatialCrop` so their affine follows.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, include_center: bool = True) -> None:
        self.include_center = include_center

    def __call__(self, img: NdarrayOrTensor) -> list[NdarrayOrTensor]:
        _check_channel_first(img)
        return [_crop(img, box) for box in fixed_crop_boxes(img.shape[1:], self.include_center)]


class FixedCropsd(MapTransform):
    """Dictionary version of :class:`FixedCrops`: one sample -> a list of samples, one per crop.

    The keys are cropped at the same places (:func:`paired_crop_boxes`): the boxes are laid on the grid of
    the coarsest key and scaled to the others, so a full-resolution image crop covers exactly the pixels of
    its feature-map-resolution heatmap crop (e.g. 224x224 and 14x14). A key whose size is not an integer
    multiple of the coarsest one gets boxes of its own shape, which line up only approximately. The keys
    must have the same number of spatial dims, hence the same number of crops.

    Every other entry (image id, label, ...) is passed through unchanged to each crop's dictionary;
    such values are shared between the crops, not copied. ``crop_index_key`` receives the crop position
    index as an ``int``.

    Args:
        keys: keys to crop.
        include_center: see :class:`FixedCrops`.
        crop_index_key: key that receives the crop position index.
        allow_missing_keys: do not raise if some key is missing (at least one must be present).
    """

    backend = FixedCrops.backend

    def __init__(
        self,
        keys: KeysCollection = ("image", "heatmap"),
        include_center: bool = True,
        crop_index_key: str = "crop_index",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.include_center = include_center
        self.crop_index_key = crop_index_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict[Hashable, NdarrayOrTensor]]:
        keys = list(self.key_iterator(data))
        if not keys:
            raise ValueError(f"none of the keys {self.keys} is in the data; nothing to crop.")
        boxes = _paired_boxes(data, keys, self.include_center)
        crops = {key: [_crop(data[key], box) for box in key_boxes] for key, key_boxes in boxes.items()}
        samples = []
        for crop_index in range(len(next(iter(boxes.values())))):
            sample = dict(data)
            sample.update({key: key_crops[crop_index] for key, key_crops in crops.items()})
            sample[self.crop_index_key] = crop_index
            samples.append(sample)
        return samples


class SelectFixedCrop(Transform):
    """Return only fixed crop number ``crop_index`` of a channel-first image: ``select(img, crop_index)``.

    Equal to ``FixedCrops(include_center)(img)[crop_index]`` without cutting the other crops.

    Raises:
        IndexError: when ``crop_index`` is not a valid position for this image's spatial dims.
    """

    backend = FixedCrops.backend

    def __init__(self, include_center: bool = True) -> None:
        self.include_center = include_center

    def __call__(self, img: NdarrayOrTensor, crop_index: int) -> NdarrayOrTensor:
        _check_channel_first(img)
        return _crop(img, _box_at(fixed_crop_boxes(img.shape[1:], self.include_center), int(crop_index), img))


class SelectFixedCropd(MapTransform):
    """Dictionary version of :class:`SelectFixedCrop`: crop ``keys`` to the crop named by ``data[crop_index_key]``.

    Serves crops lazily from whole images (e.g. a datalist with one entry per image and crop index, over
    a cache of whole images), giving the same arrays as :class:`FixedCropsd` for that index: the keys are
    cut at the same places (:func:`paired_crop_boxes`); other entries pass through unchanged.

    Args:
        keys: keys to crop.
        crop_index_key: key holding the crop position index.
        include_center: must match the setting the crop indices were made with.
        allow_missing_keys: do not raise if a key is missing.
    """

    backend = FixedCrops.backend

    def __init__(
        self,
        keys: KeysCollection = ("image", "heatmap"),
        crop_index_key: str = "crop_index",
        include_center: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.crop_index_key = crop_index_key
        self.include_center = include_center

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        index = int(d[self.crop_index_key])
        for key, key_boxes in _paired_boxes(d, keys, self.include_center).items():
            d[key] = _crop(d[key], _box_at(key_boxes, index, d[key]))
        return d


def _box_at(boxes: Sequence[tuple[slice, ...]], index: int, img: NdarrayOrTensor) -> tuple[slice, ...]:
    """Box ``index`` of ``img``'s fixed crops; an IndexError that names the image's shape when there is none."""
    if not 0 <= index < len(boxes):
        raise IndexError(f"crop_index {index} out of range: an image of shape {tuple(img.shape)} has {len(boxes)} fixed crops.")
    return boxes[index]


def _paired_boxes(
    data: Mapping[Hashable, NdarrayOrTensor], keys: Sequence[Hashable], include_center: bool
) -> dict[Hashable, list[tuple[slice, ...]]]:
    """:func:`paired_crop_boxes` of the channel-first arrays under ``keys``; refuses keys of different spatial dims."""
    for key in keys:
        _check_channel_first(data[key])
    shapes = {key: tuple(data[key].shape[1:]) for key in keys}
    if len({len(shape) for shape in shapes.values()}) > 1:
        raise ValueError(f"keys give different numbers of fixed crops for shapes {shapes}.")
    return paired_crop_boxes(shapes, include_center)
