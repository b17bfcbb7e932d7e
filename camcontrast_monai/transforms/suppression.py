"""Heatmap post-processing of CAMContrast (paper section 3.2, "Negative suppression").

* :class:`BackgroundSuppression` zeroes heatmap activations outside the body: a foreground mask is
  obtained by thresholding the full-resolution input image, reduced to the heatmap grid by area
  averaging and multiplied into the heatmap.
* :class:`NegativeSuppression` resets the heatmap of a normal image to all zeros, so that every normal
  image is pulled towards the prototype vector of an empty heatmap in stage 2.

Both work on channel-first arrays in 2D and 3D alike; the number of spatial dimensions is read off the
array.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type, convert_to_tensor

__all__ = [
    "BackgroundSuppression",
    "BackgroundSuppressiond",
    "NegativeSuppression",
    "NegativeSuppressiond",
    "is_normal_label",
]

_ADAPTIVE_AVG_POOL = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


class BackgroundSuppression(Transform):
    """Multiply a heatmap by the foreground fraction of the image region under each heatmap cell.

    Called as ``suppress(heatmap, image)`` with ``heatmap`` of shape ``(1, *heatmap_spatial)`` and
    ``image`` of shape ``(C, *image_spatial)`` at full resolution (same number of spatial dims).
    A pixel is foreground when the mean over the image channels is strictly greater than
    ``threshold / 255 * intensity_max``. The mask is reduced to the heatmap grid by adaptive average
    pooling, so each heatmap cell is scaled by the fraction of foreground pixels it covers (this also
    handles image sizes that are not a multiple of the heatmap size).

    Args:
        threshold: foreground threshold on the 0-255 scale; the paper uses 15 for fundus photographs
            and chest X-rays.
        intensity_max: the value that full intensity has in the images this transform sees: 255 for
            images in the 0-255 range, 1.0 for images already scaled to [0, 1].

    Returns the suppressed heatmap with the type and dtype of ``heatmap``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float = 15.0, intensity_max: float = 255.0) -> None:
        if intensity_max <= 0:
            raise ValueError(f"intensity_max must be positive, got {intensity_max}.")
        self.threshold = threshold
        self.intensity_max = intensity_max

    def foreground_fraction(
        self, image: NdarrayOrTensor, heatmap_spatial_shape: tuple[int, ...]
    ) -> torch.Tensor:
        """Fraction of foreground pixels of ``image`` in each cell of a grid of ``heatmap_spatial_shape``."""
        image_t = convert_to_tensor(image, track_meta=False, dtype=torch.float32)
        spatial_dims = image_t.ndim - 1
        if len(heatmap_spatial_shape) != spatial_dims:
            raise ValueError(
                f"heatmap has {len(heatmap_spatial_shape)} spatial dims but the image of shape "
                f"{tuple(image_t.shape)} has {spatial_dims}; both must be channel-first with the same spatial dims."
            )
        level = self.threshold / 255.0 * self.intensity_max
        mask = (image_t.mean(dim=0, keepdim=True) > level).float()
        return _ADAPTIVE_AVG_POOL[spatial_dims](mask, tuple(heatmap_spatial_shape))

    def __call__(self, heatmap: NdarrayOrTensor, image: NdarrayOrTensor) -> NdarrayOrTensor:
        heatmap_t = convert_to_tensor(heatmap, track_meta=False)
        if not heatmap_t.is_floating_point():
            heatmap_t = heatmap_t.float()
        fraction = self.foreground_fraction(image, tuple(heatmap_t.shape[1:]))
        suppressed = heatmap_t * fraction.to(heatmap_t)
        # a MetaTensor heatmap keeps its metadata: convert_to_dst_type copies it from ``heatmap``
        out, *_ = convert_to_dst_type(suppressed, heatmap, dtype=suppressed.dtype)
        return out


class BackgroundSuppressiond(MapTransform):
    """Dictionary version of :class:`BackgroundSuppression`.

    Args:
        keys: heatmap keys to suppress.
        image_key: key of the full-resolution image the foreground mask is computed from.
        threshold: see :class:`BackgroundSuppression`.
        intensity_max: see :class:`BackgroundSuppression`.
        allow_missing_keys: do not raise if a heatmap key is missing.
    """

    backend = BackgroundSuppression.backend

    def __init__(
        self,
        keys: KeysCollection = "heatmap",
        image_key: str = "image",
        threshold: float = 15.0,
        intensity_max: float = 255.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.suppress = BackgroundSuppression(threshold=threshold, intensity_max=intensity_max)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.suppress(d[key], d[self.image_key])
        return d


def is_normal_label(label) -> bool:
    """True when ``label`` marks a normal image.

    ``label`` is a class index (int, 0-d or one-element array/tensor; 0 = normal) or a multilabel
    vector of disease indicators (normal = no disease = all zeros). A one-hot encoded binary label
    is not supported: ``[1, 0]`` would read as abnormal.
    """
    values, *_ = convert_data_type(label, np.ndarray)
    return not np.any(np.asarray(values) != 0)


class NegativeSuppression(Transform):
    """Replace the heatmap of a normal image by zeros; heatmaps of abnormal images pass unchanged.

    Called as ``suppress(heatmap, label)``; see :func:`is_normal_label` for the accepted labels.
    The zero heatmap has the same shape, dtype and type (numpy, Tensor, MetaTensor) as the input.
    """

    backend = BackgroundSuppression.backend

    def __call__(self, heatmap: NdarrayOrTensor, label) -> NdarrayOrTensor:
        if not is_normal_label(label):
            return heatmap
        if isinstance(heatmap, torch.Tensor):
            return torch.zeros_like(heatmap)
        return np.zeros_like(heatmap)


class NegativeSuppressiond(MapTransform):
    """Dictionary version of :class:`NegativeSuppression`.

    Args:
        keys: heatmap keys to suppress.
        label_key: key of the image-level label (class index or multilabel vector).
        allow_missing_keys: do not raise if a heatmap key is missing.
    """

    backend = NegativeSuppression.backend

    def __init__(
        self, keys: KeysCollection = "heatmap", label_key: str = "label", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key = label_key
        self.suppress = NegativeSuppression()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.suppress(d[key], d[self.label_key])
        return d
