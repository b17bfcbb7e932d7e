"""Stage-2 image augmentation of CAMContrast, for 2D and 3D crops.

The paper (section 3.2 and section 4.1) applies "random cropping, random horizontal flipping, rotation,
color jittering and random grayscaling" to every image crop, and no random augmentation to the heatmap
crop, but gives no parameters for stage 2. The defaults of :func:`stage2_image_augmentation` are:

* random resized crop, area scale [0.8, 1.0] and aspect ratio [3/4, 4/3]: Table 2 of the paper
  (chest X-ray / fundus classification downstream); the authors' public stage-2 code uses the same values;
* horizontal flip p = 0.5: Table 2;
* rotation uniform in [-30, 30] degrees: Table 2 (chest X-ray). Applied with p = 0.5, our choice;
  torchvision's ``RandomRotation`` (used by the authors for X-rays) rotates every sample. The authors'
  fundus stage 2 uses no rotation at all: pass ``rotate_prob=0`` to reproduce that;
* colour jitter (brightness 0.4, contrast 0.4, saturation 0.4, hue 0.1) with p = 0.8 and grayscale with
  p = 0.2: the authors' public fundus stage-2 code (the SimCLR/MoCo-v2 recipe). Their X-ray code uses no
  colour augmentation (``jitter_prob=0, grayscale_prob=0``); for 1-channel images saturation, hue and
  grayscale are no-ops anyway.

Images are expected channel-first with intensities in [0, 1]. Colour transforms treat a 3-channel image
as RGB (also in 3D). In 3D the aspect ratio and the rotation act in the plane of the last two axes.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import (
    Compose,
    CopyItemsd,
    EnsureTyped,
    MapTransform,
    RandFlipd,
    RandomizableTransform,
    RandRotated,
    Resize,
    SpatialCrop,
)
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = [
    "augmented_views",
    "LUMA_WEIGHTS",
    "rgb_to_luminance",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "hue_shift_matrices",
    "RandColorJitter",
    "RandColorJitterd",
    "RandGrayscale",
    "RandGrayscaled",
    "RandResizedCrop",
    "RandResizedCropd",
    "stage2_image_augmentation",
]

# RandResizedCrop modes run as torch.nn.functional.interpolate, by spatial dims
_TORCH_MODES = {
    "bilinear": {2: "bilinear", 3: "trilinear"},
    "trilinear": {2: "bilinear", 3: "trilinear"},
    "nearest": {2: "nearest", 3: "nearest"},
}

# ITU-R BT.601 luma, the weights torchvision's rgb_to_grayscale uses
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor(
    [
        LUMA_WEIGHTS,
        [0.596, -0.274, -0.322],
        [0.211, -0.523, 0.312],
    ],
    dtype=torch.float64,
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _as_float_tensor(img: NdarrayOrTensor) -> torch.Tensor:
    img_t = convert_to_tensor(img, track_meta=False)
    return img_t if img_t.is_floating_point() else img_t.float()


def _channel_weights(weights: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Reshape per-channel weights to broadcast over the spatial dims of ``img``."""
    return weights.to(img).reshape(-1, *([1] * (img.ndim - 1)))


def rgb_to_luminance(img: torch.Tensor) -> torch.Tensor:
    """Luminance ``0.299 R + 0.587 G + 0.114 B`` of a channel-first RGB image, shape ``(1, *spatial)``."""
    return (img * _channel_weights(torch.tensor(LUMA_WEIGHTS), img)).sum(dim=0, keepdim=True)


def _gray(img: torch.Tensor) -> torch.Tensor:
    # luminance for RGB; other channel counts have no colour model, so their channel mean stands in
    return rgb_to_luminance(img) if img.shape[0] == 3 else img.mean(dim=0, keepdim=True)


def adjust_brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply intensities by ``factor`` and clamp to [0, 1]."""
    return (img * factor).clamp(0.0, 1.0)


def adjust_contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the mean gray level of the whole image: ``factor * img + (1 - factor) * mean``, clamped."""
    mean = _gray(img).mean()
    return (factor * img + (1.0 - factor) * mean).clamp(0.0, 1.0)


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend an RGB image with its luminance: ``factor * img + (1 - factor) * gray``, clamped."""
    return (factor * img + (1.0 - factor) * rgb_to_luminance(img)).clamp(0.0, 1.0)


def adjust_hue(img: torch.Tensor, shift: float) -> torch.Tensor:
    """Shift the hue of an RGB image by ``shift`` turns (in [-0.5, 0.5]), clamped to [0, 1].

    The hue shift is a rotation of the chroma plane (I, Q) of YIQ space, which keeps the luminance Y.
    The rotation is clockwise for a positive shift so that, as for an HSV hue shift, red moves towards
    green.
    """
    matrix = hue_shift_matrices(torch.tensor([shift], dtype=torch.float64))[0].to(img)
    return torch.einsum("ij,j...->i...", matrix, img).clamp(0.0, 1.0)


def hue_shift_matrices(shifts: torch.Tensor) -> torch.Tensor:
    """The RGB -> RGB matrices ``(N, 3, 3)`` (float64) of :func:`adjust_hue` for ``N`` hue shifts (turns)."""
    angle = -2.0 * math.pi * shifts.double()
    rotation = torch.zeros((angle.shape[0], 3, 3), dtype=torch.float64, device=angle.device)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rotation[:, 2, 1], rotation[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    return _YIQ_TO_RGB.to(angle.device) @ rotation @ _RGB_TO_YIQ.to(angle.device)


JITTER_OPERATIONS = {
    "brightness": adjust_brightness,
    "contrast": adjust_contrast,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
}


def jitter_ranges(brightness: float, contrast: float, saturation: float, hue: float) -> dict[str, tuple[float, float]]:
    """Colour-jitter draw ranges, keyed in the order of ``JITTER_OPERATIONS``: factors for brightness,
    contrast and saturation, a shift in turns for hue."""
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}.")
    return {
        "brightness": _factor_range(brightness, "brightness"),
        "contrast": _factor_range(contrast, "contrast"),
        "saturation": _factor_range(saturation, "saturation"),
        "hue": (-hue, hue),
    }


def check_region_ranges(scale: tuple[float, float], ratio: tuple[float, float]) -> None:
    """Validate RandResizedCrop's area-fraction and aspect-ratio ranges."""
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}.")
    if not 0.0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < low <= high, got {ratio}.")


def _factor_range(strength: float, name: str) -> tuple[float, float]:
    if strength < 0:
        raise ValueError(f"{name} must be non-negative, got {strength}.")
    return max(0.0, 1.0 - strength), 1.0 + strength


class RandColorJitter(RandomizableTransform):
    """Randomly change brightness, contrast, saturation and hue, in a random order (as torchvision's ColorJitter).

    With probability ``prob`` the image gets all four changes; factors are drawn uniformly from
    ``[max(0, 1 - s), 1 + s]`` for brightness, contrast and saturation (``s`` the given strength), and the
    hue shift from ``[-hue, hue]`` turns. Saturation and hue apply to 3-channel (RGB) images only and are
    skipped for other channel counts. A strength of 0 disables that change. Intensities are expected in
    [0, 1]; the result is clamped to [0, 1] after every change. See :func:`adjust_brightness`,
    :func:`adjust_contrast`, :func:`adjust_saturation` and :func:`adjust_hue` for the deterministic
    operations.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        prob: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.ranges = jitter_ranges(brightness, contrast, saturation, hue)
        self.factors: dict[str, float] = {}
        self.order: list[str] = []

    def randomize(self, data=None) -> None:
        """Draw whether to apply, the four factors and their order."""
        super().randomize(None)
        if not self._do_transform:
            return
        self.factors = {name: self.R.uniform(low, high) for name, (low, high) in self.ranges.items()}
        names = list(self.ranges)
        self.order = [names[i] for i in self.R.permutation(len(names))]

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        img_t = _as_float_tensor(img)
        is_rgb = img_t.shape[0] == 3
        for name in self.order:
            low, high = self.ranges[name]
            if low == high or (name in ("saturation", "hue") and not is_rgb):
                continue
            img_t = JITTER_OPERATIONS[name](img_t, self.factors[name])
        out, *_ = convert_to_dst_type(img_t, img, dtype=img_t.dtype)
        return out


class RandColorJitterd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandColorJitter`; all ``keys`` get the same factors.

    Args:
        keys: image keys to jitter (never the heatmap in CAMContrast).
        prob, brightness, contrast, saturation, hue: see :class:`RandColorJitter`.
        allow_missing_keys: do not raise if a key is missing.
    """

    backend = RandColorJitter.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        # the inner transform always applies; this wrapper draws whether to apply it
        self.jitter = RandColorJitter(
            prob=1.0, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue
        )

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandColorJitterd:
        super().set_random_state(seed, state)
        self.jitter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.jitter.randomize()
        for key in self.key_iterator(d):
            d[key] = self.jitter(d[key], randomize=False)
        return d


class RandGrayscale(RandomizableTransform):
    """With probability ``prob``, replace an RGB image by its luminance repeated in all 3 channels.

    The luminance is ``0.299 R + 0.587 G + 0.114 B`` (:data:`LUMA_WEIGHTS`). Images that do not have
    3 channels (e.g. 1-channel X-ray or MRI) are returned unchanged.
    """

    backend = RandColorJitter.backend

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize(None)
        if not self._do_transform or img.shape[0] != 3:
            return img
        gray = rgb_to_luminance(_as_float_tensor(img)).expand(3, *img.shape[1:]).contiguous()
        out, *_ = convert_to_dst_type(gray, img, dtype=gray.dtype)
        return out


class RandGrayscaled(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandGrayscale`; one draw decides for all ``keys``.

    Args:
        keys: image keys (never the heatmap in CAMContrast).
        prob: probability of converting to grayscale.
        allow_missing_keys: do not raise if a key is missing.
    """

    backend = RandGrayscale.backend

    def __init__(
        self, keys: KeysCollection = "image", prob: float = 0.2, allow_missing_keys: bool = False
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.grayscale = RandGrayscale(prob=1.0)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.grayscale(d[key], randomize=False)
        return d


class RandResizedCrop(RandomizableTransform):
    """Crop a random region and resize it to ``spatial_size`` (torchvision's RandomResizedCrop in 2D and 3D).

    The region covers a fraction of the image area (volume in 3D) drawn uniformly from ``scale``; its
    aspect ratio width/height, drawn log-uniformly from ``ratio``, applies to the last two axes; in 3D
    the first axis is scaled by the cube root of the fraction. Up to 10 draws are made until the region
    fits in the image; if none fits, the whole image is used. The region's position is uniform.

    Args:
        scale: range of the area (volume) fraction.
        ratio: range of the in-plane aspect ratio (last axis / second-to-last axis).
        spatial_size: output spatial size; ``None`` keeps the input's spatial size.
        mode: interpolation mode of :class:`monai.transforms.Resize` (``"bilinear"`` is trilinear in 3D).
    """

    backend = [TransformBackends.TORCH]
    max_attempts = 10

    def __init__(
        self,
        scale: tuple[float, float] = (0.8, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        spatial_size: Sequence[int] | None = None,
        mode: str = "bilinear",
    ) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        check_region_ranges(scale, ratio)
        self.scale = scale
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.spatial_size = spatial_size
        self.mode = mode
        self.roi_start: np.ndarray | None = None
        self.roi_size: np.ndarray | None = None

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the crop region for an image of ``spatial_shape``."""
        shape = np.asarray(spatial_shape, dtype=int)
        size = shape
        for _ in range(self.max_attempts):
            fraction = self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*self.log_ratio))
            candidate = shape * fraction ** (1.0 / len(shape))
            plane_area = fraction ** (2.0 / len(shape)) * shape[-2] * shape[-1]
            candidate[-2] = math.sqrt(plane_area / aspect)
            candidate[-1] = math.sqrt(plane_area * aspect)
            candidate = np.round(candidate).astype(int)
            if np.all(candidate >= 1) and np.all(candidate <= shape):
                size = candidate
                break
        self.roi_size = size
        self.roi_start = np.array(
            [self.R.randint(0, extent - crop + 1) for extent, crop in zip(shape, size, strict=True)]
        )

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> torch.Tensor:
        spatial_shape = tuple(img.shape[1:])
        if randomize:
            self.randomize(spatial_shape)
        output_size = spatial_shape if self.spatial_size is None else tuple(self.spatial_size)
        if self.mode not in _TORCH_MODES:  # MONAI's own modes (e.g. "area"), with metadata tracking
            cropped = SpatialCrop(roi_start=self.roi_start, roi_end=self.roi_start + self.roi_size)(img)
            return Resize(spatial_size=output_size, mode=self.mode)(cropped)
        # the same crop + resize as SpatialCrop + Resize (no anti-aliasing, align_corners=False), as plain
        # tensor ops: MONAI's metadata bookkeeping made this the most expensive step of a stage-2 sample
        box = tuple(slice(int(a), int(a + n)) for a, n in zip(self.roi_start, self.roi_size, strict=True))
        cropped = convert_to_tensor(img, track_meta=False)[(slice(None), *box)]
        mode = _TORCH_MODES[self.mode][len(spatial_shape)]
        resized = torch.nn.functional.interpolate(
            _as_float_tensor(cropped).unsqueeze(0), size=output_size, mode=mode,
            align_corners=None if mode == "nearest" else False,
        )[0]  # fmt: skip
        return resized


class RandResizedCropd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandResizedCrop`; the region is drawn from the first key's shape
    and used for all ``keys``.

    Args:
        keys: image keys (never the heatmap in CAMContrast).
        scale, ratio, spatial_size, mode: see :class:`RandResizedCrop`.
        allow_missing_keys: do not raise if a key is missing.
    """

    backend = RandResizedCrop.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        scale: tuple[float, float] = (0.8, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        spatial_size: Sequence[int] | None = None,
        mode: str = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.cropper = RandResizedCrop(scale=scale, ratio=ratio, spatial_size=spatial_size, mode=mode)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandResizedCropd:
        super().set_random_state(seed, state)
        self.cropper.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        first_key = self.first_key(d)
        if first_key == ():
            return d
        self.cropper.randomize(tuple(d[first_key].shape[1:]))
        for key in self.key_iterator(d):
            d[key] = self.cropper(d[key], randomize=False)
        return d


def stage2_image_augmentation(
    keys: KeysCollection = "image",
    spatial_size: Sequence[int] | None = None,
    scale: tuple[float, float] = (0.8, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    flip_prob: float = 0.5,
    rotate_degrees: float = 30.0,
    rotate_prob: float = 0.5,
    jitter_prob: float = 0.8,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    grayscale_prob: float = 0.2,
    allow_missing_keys: bool = False,
) -> Compose:
    """The stage-2 augmentation chain for image crops, 2D or 3D (read off the data).

    In order: :class:`RandResizedCropd` (``scale``, ``ratio``, output ``spatial_size``, default the
    input crop's size), horizontal flip of the last axis with ``flip_prob``, in-plane rotation (last two
    axes) uniform in ``[-rotate_degrees, rotate_degrees]`` with ``rotate_prob`` (bilinear, zero padding,
    size kept, as torchvision's RandomRotation), :class:`RandColorJitterd` with ``jitter_prob`` and
    :class:`RandGrayscaled` with ``grayscale_prob``. The module docstring gives the source of each
    default. Apply it to the image key only: the heatmap crop is never augmented.

    The result is seedable: ``chain.set_random_state(seed)`` makes its output a function of the seed.
    """
    return Compose(
        [
            RandResizedCropd(
                keys,
                scale=scale,
                ratio=ratio,
                spatial_size=spatial_size,
                allow_missing_keys=allow_missing_keys,
            ),
            RandFlipd(keys, prob=flip_prob, spatial_axis=-1, allow_missing_keys=allow_missing_keys),
            RandRotated(
                keys,
                range_x=math.radians(rotate_degrees),
                prob=rotate_prob,
                keep_size=True,
                mode="bilinear",
                padding_mode="zeros",
                allow_missing_keys=allow_missing_keys,
            ),
            RandColorJitterd(
                keys,
                prob=jitter_prob,
                brightness=brightness,
                contrast=contrast,
                saturation=saturation,
                hue=hue,
                allow_missing_keys=allow_missing_keys,
            ),
            RandGrayscaled(keys, prob=grayscale_prob, allow_missing_keys=allow_missing_keys),
        ]
    )


def augmented_views(
    view_keys: Sequence[str],
    spatial_size: Sequence[int] | None = None,
    scale: tuple[float, float] = (0.8, 1.0),
    batched: bool = False,
) -> list:
    """The baselines' views of one image crop: copies of ``view_keys[0]`` under the other keys, each augmented
    on its own by :func:`stage2_image_augmentation` (``spatial_size``, ``scale``), then float32 tensors.

    One key (SupCE) gives one augmented view; two (SimCLR, SupCon) give the pair that their losses contrast.
    With ``batched`` the crop stays unaugmented under ``view_keys[0]`` alone: the trainer draws every view
    from it, batched (:class:`~camcontrast_monai.engines.MultiViewTrainer` with ``batch_augmentation``).
    """
    keys = list(view_keys)
    if batched:
        return [EnsureTyped(keys=keys[0], dtype=torch.float32, track_meta=False)]
    copies = [CopyItemsd(keys=keys[0], names=keys[1:])] if len(keys) > 1 else []
    views = [stage2_image_augmentation(keys=key, spatial_size=spatial_size, scale=scale) for key in keys]
    return [*copies, *views, EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False)]
