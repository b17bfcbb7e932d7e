"""The stage-2 image augmentation applied to a whole batch at once, on the training device.

:func:`~camcontrast_monai.transforms.stage2_image_augmentation` augments one crop at a time in the
DataLoader workers, where every crop costs host CPU time: at the paper's 224-px crops more than two
workers on a 2-core machine can hide, and on a GPU the host must deliver thousands of augmented crops per
second. :class:`BatchStage2Augmentation`
draws the same random parameters per sample, from the same distributions, and applies them with a few
batched tensor operations:

* random resized crop, horizontal flip and in-plane rotation fused into one affine sampling grid and one
  ``grid_sample`` call (bilinear). The per-sample chain interpolates twice (resize, then
  rotate); this interpolates once, so it blurs slightly less. What lies outside the rotated crop is zero,
  as with the per-sample rotation;
* colour jitter (brightness, contrast, saturation, hue, each sample in its own random order) and
  grayscale as per-sample factors and masks over the batch.

Randomness comes from a ``torch.Generator`` seeded with ``(seed, step)``, so a training run is
reproducible and a resumed run draws what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from copy import copy as shallow_copy

import torch
import torch.nn.functional as F

from camcontrast_monai.transforms.augment import (
    JITTER_OPERATIONS,
    LUMA_WEIGHTS,
    RandResizedCrop,
    check_region_ranges,
    hue_shift_matrices,
    jitter_ranges,
)
from camcontrast_monai.transforms.batch_affine import BatchAffineIntensityAugmentation
from camcontrast_monai.utils.switches import as_switch

__all__ = [
    "BatchStage2Augmentation",
    "resized_crop_flip_rotate_grid",
    "resolve_batched_augmentation",
    "stage2_batch_augmentation",
]

logger = logging.getLogger(__name__)

_JITTER_NAMES = tuple(JITTER_OPERATIONS)  # the per-sample jitter's names, in the same order


def resized_crop_flip_rotate_grid(
    roi_start: torch.Tensor,
    roi_size: torch.Tensor,
    flip: torch.Tensor,
    angle: torch.Tensor,
    input_size: Sequence[int],
    output_size: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling grids of "crop ``roi``, resize to ``output_size``, flip the last axis, rotate in-plane".

    Args:
        roi_start, roi_size: ``(B, D)`` region of each input (voxel units, ``D`` spatial dims), as
            :class:`~camcontrast_monai.transforms.RandResizedCrop` draws it.
        flip: ``(B,)`` bool, flip the last axis after the resize.
        angle: ``(B,)`` rotation in radians in the plane of the last two axes, about the output's centre,
            applied last (pixel units, so non-square planes rotate rigidly).
        input_size, output_size: spatial sizes of the input batch and of the result.

    Returns:
        ``grid`` ``(B, *output_size, D)`` in ``grid_sample``'s normalised input coordinates
        (``align_corners=False``, last coordinate first), and ``in_crop`` ``(B, *output_size, D)``: the
        normalised coordinates in the resized, flipped crop before rotation; positions where it leaves
        ``[-1, 1]`` lie outside the rotated crop and must read as zero. ``grid`` is clamped to the
        region's outer pixel centres, as resizing the cropped region on its own clamps.
    """
    dims = len(output_size)
    batch = roi_start.shape[0]
    dtype, device = roi_start.dtype, roi_start.device
    axes = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n, dtype=dtype, device=device) for n in output_size]
    out_norm = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*out, D), axis order
    half_out = torch.tensor(output_size, dtype=dtype, device=device) / 2
    pixels = (out_norm * half_out).expand(batch, *output_size, dims)  # output pixel units about the centre
    # undo the rotation: rotate output positions by -angle in the plane (axis -2, axis -1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cos, sin = (t.reshape(batch, *([1] * dims)) for t in (cos, sin))
    rows, cols = pixels[..., -2], pixels[..., -1]
    unrotated = pixels.clone()
    unrotated[..., -2] = cos * rows - sin * cols
    unrotated[..., -1] = sin * rows + cos * cols
    in_crop = unrotated / half_out
    sign = torch.where(flip, -1.0, 1.0).to(dtype).reshape(batch, *([1] * dims))
    in_crop[..., -1] = in_crop[..., -1] * sign
    # resized crop, align_corners=False: source = (2 start + size) / S_in - 1 + v * size / S_in
    size_in = torch.tensor(input_size, dtype=dtype, device=device)
    centre = ((2 * roi_start + roi_size) / size_in - 1).reshape(batch, *([1] * dims), dims)
    half_width = (roi_size / size_in).reshape(batch, *([1] * dims), dims)
    # clamp to the region's outer pixel centres, as resizing the cropped region alone does
    edge = 1 / size_in
    grid = torch.maximum(torch.minimum(centre + half_width * in_crop, centre + half_width - edge), centre - half_width + edge)
    return grid.flip(-1), in_crop


class BatchStage2Augmentation:
    """Stage-2 augmentation of a batch ``(B, C, *spatial)`` of image crops in [0, 1], 2D or 3D.

    The parameters and their defaults are those of
    :func:`~camcontrast_monai.transforms.stage2_image_augmentation` (see that module for their sources);
    ``spatial_size`` is the output crop size (default: the input's). Call it as ``augment(images, step)``:
    the draws depend only on ``seed`` and ``step`` (use the global iteration).
    """

    max_attempts = RandResizedCrop.max_attempts

    # a deliberate mirror of stage2_image_augmentation's parameters and defaults: a bundle switches
    # between the two with one flag (batched_augmentation), so both must take the same values
    def __init__(
        self,
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
        seed: int = 0,
    ) -> None:
        check_region_ranges(scale, ratio)
        for name, prob in (("flip_prob", flip_prob), ("rotate_prob", rotate_prob), ("jitter_prob", jitter_prob),
                           ("grayscale_prob", grayscale_prob)):  # fmt: skip
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {prob}.")
        self.spatial_size = None if spatial_size is None else tuple(int(s) for s in spatial_size)
        self.scale, self.log_ratio = scale, (math.log(ratio[0]), math.log(ratio[1]))
        self.flip_prob, self.rotate_prob = flip_prob, rotate_prob
        self.max_angle = math.radians(rotate_degrees)
        self.jitter_prob, self.grayscale_prob = jitter_prob, grayscale_prob
        self.ranges = jitter_ranges(brightness, contrast, saturation, hue)
        self.seed = seed

    def geometry_only(self) -> BatchStage2Augmentation:
        """A copy that draws the same crops, flips and rotations and leaves colours alone (no jitter, no
        grayscale): what a pixel check of crop alignment can read."""
        geometric = shallow_copy(self)
        geometric.jitter_prob = geometric.grayscale_prob = 0.0
        return geometric

    def generator(self, step: int, device: torch.device) -> torch.Generator:
        """The generator of ``step``: a function of ``(seed, step)`` only."""
        generator = torch.Generator(device=device)
        generator.manual_seed((self.seed * 1_000_003 + step) % (2**63))
        return generator

    def __call__(self, images: torch.Tensor, step: int) -> torch.Tensor:
        if images.ndim not in (4, 5):
            raise ValueError(f"expected a batch (B, C, H, W) or (B, C, D, H, W), got shape {tuple(images.shape)}")
        params = self.draw(images.shape[0], tuple(images.shape[2:]), self.generator(step, images.device))
        return self.apply(images.float(), params)

    def draw(self, batch: int, input_size: Sequence[int], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Every sample's random parameters: region, flip, rotation angle (0 if not rotated), jitter mask,
        jitter factors, jitter order (``order[b, k]``: index into brightness/contrast/saturation/hue of
        sample b's k-th operation) and grayscale mask."""
        device = generator.device
        start, size = self._regions(batch, input_size, generator)
        flip = torch.rand(batch, generator=generator, device=device) < self.flip_prob
        rotate = torch.rand(batch, generator=generator, device=device) < self.rotate_prob
        angle = self._uniform(generator, batch, -self.max_angle, self.max_angle) * rotate
        jitter = torch.rand(batch, generator=generator, device=device) < self.jitter_prob
        factors = {name: self._uniform(generator, batch, low, high) for name, (low, high) in self.ranges.items()}
        order = torch.argsort(torch.rand((batch, 4), generator=generator, device=device), dim=1)
        grayscale = torch.rand(batch, generator=generator, device=device) < self.grayscale_prob
        return {"roi_start": start, "roi_size": size, "flip": flip, "rotate": rotate, "angle": angle.double(),
                "jitter": jitter, **factors, "order": order, "grayscale": grayscale}  # fmt: skip

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply drawn parameters to a float batch: resized crop + flip + rotation, then colour."""
        return self._colour(self._spatial(images, params), params)

    @staticmethod
    def _uniform(generator: torch.Generator, batch: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator, device=generator.device)

    def _regions(self, batch: int, input_size: Sequence[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """RandResizedCrop's region draw for every sample: up to 10 tries, else the whole input."""
        dims, device = len(input_size), generator.device
        shape = torch.tensor(input_size, dtype=torch.float64, device=device)
        tries = torch.rand((2, batch, self.max_attempts), generator=generator, device=device).double()
        fraction = self.scale[0] + (self.scale[1] - self.scale[0]) * tries[0]
        aspect = torch.exp(self.log_ratio[0] + (self.log_ratio[1] - self.log_ratio[0]) * tries[1])
        candidate = shape * fraction[..., None] ** (1.0 / dims)
        plane_area = fraction ** (2.0 / dims) * shape[-2] * shape[-1]
        candidate[..., -2] = torch.sqrt(plane_area / aspect)
        candidate[..., -1] = torch.sqrt(plane_area * aspect)
        candidate = torch.round(candidate)
        fits = ((candidate >= 1) & (candidate <= shape)).all(dim=-1)
        first = fits.float().argmax(dim=1)  # the first try that fits
        size = torch.where(fits.any(dim=1)[:, None], candidate[torch.arange(batch, device=device), first], shape)
        start = torch.floor(torch.rand((batch, dims), generator=generator, device=device).double() * (shape - size + 1))
        return start, size

    def _spatial(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        batch, device = images.shape[0], images.device
        input_size = tuple(images.shape[2:])
        output_size = self.spatial_size or input_size
        if len(output_size) != len(input_size):
            raise ValueError(f"spatial_size {output_size} does not match the batch's spatial dims {input_size}")
        grid, in_crop = resized_crop_flip_rotate_grid(
            params["roi_start"], params["roi_size"], params["flip"], params["angle"], input_size, output_size
        )
        out = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)
        rotate = params["rotate"]
        if not bool(rotate.any()):
            return out
        # zero outside the rotated crop, with the soft edge a rotation of the resized crop would have
        coverage = F.grid_sample(
            torch.ones((batch, 1, *output_size), dtype=images.dtype, device=device),
            in_crop.flip(-1).to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False,
        )  # fmt: skip
        return out * torch.where(rotate.reshape(batch, *([1] * (images.ndim - 1))), coverage, 1.0)

    def _colour(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        is_rgb = images.shape[1] == 3
        active = [
            (position, name) for position, name in enumerate(_JITTER_NAMES)
            if self.ranges[name][0] != self.ranges[name][1] and (is_rgb or name in ("brightness", "contrast"))
        ]  # fmt: skip
        shape = (images.shape[0], *([1] * (images.ndim - 1)))
        for slot in range(len(_JITTER_NAMES)):  # each sample applies its own slot-th operation
            for position, name in active:
                chosen = (params["jitter"] & (params["order"][:, slot] == position)).reshape(shape)
                if bool(chosen.any()):
                    factor = params[name].to(images.dtype)
                    images = torch.where(chosen, _BATCH_JITTER[name](images, factor), images)
        if is_rgb and bool(params["grayscale"].any()):
            images = torch.where(params["grayscale"].reshape(shape), _luminance(images).expand_as(images), images)
        return images


def stage2_batch_augmentation(
    enabled: bool,
    spatial_size: Sequence[int] | None = None,
    seed: int = 0,
    per_sample: Sequence | None = None,
    scale: tuple[float, float] = (0.8, 1.0),
) -> BatchStage2Augmentation | BatchAffineIntensityAugmentation | None:
    """The stage-2 trainer's batched augmentation when ``enabled``; None where the data loader augments each sample.

    The 2D bundles' is :class:`BatchStage2Augmentation` (output ``spatial_size``, resized-crop ``scale``:
    the baselines without fixed crops draw from a wider range). A bundle that augments
    with MONAI's affine and intensity transforms (the 3D bundle) passes that list as ``per_sample`` and
    gets its batched twin, :meth:`BatchAffineIntensityAugmentation.from_transforms`.
    """
    if not enabled:
        return None
    if per_sample is not None:
        return BatchAffineIntensityAugmentation.from_transforms(per_sample, seed=seed)
    return BatchStage2Augmentation(spatial_size=spatial_size, scale=scale, seed=seed)


def resolve_batched_augmentation(value: object, device: torch.device | str, num_workers: int) -> bool:
    """The ``batched_augmentation`` switch, with ``"auto"`` resolved for ``device`` and the loader's ``num_workers``.

    ``"auto"`` augments in batches on a GPU, where the host could not feed it crop by crop, and where the
    data loader has no workers, since then each crop would be augmented in the training process anyway;
    on a CPU with workers, each crop is augmented in the workers, beside the training step. On 2 cores
    at width 64 that is 0.95 of compute against 0.84 batched at 96 px, and 0.91 against 0.88 at 224 px
    (docs/performance.md). True or False (any spelling :func:`as_switch` takes) is used as it is.
    """
    if value != "auto":
        return as_switch(value, "batched_augmentation")
    batched = torch.device(device).type == "cuda" or num_workers == 0
    where = "in batches in the trainer" if batched else "crop by crop in the data loader workers"
    logger.info("batched_augmentation auto -> %s: augmenting %s (%s, %d workers)", batched, where, device, num_workers)
    return batched


def _luminance(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    return torch.einsum("c,bc...->b...", weights, images).unsqueeze(1)


def _per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (images.ndim - 1)))


def _gray_mean(images: torch.Tensor) -> torch.Tensor:
    gray = _luminance(images) if images.shape[1] == 3 else images.mean(dim=1, keepdim=True)
    return gray.flatten(1).mean(dim=1)


def _brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * _per_sample(factor, images)).clamp(0.0, 1.0)


def _contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor, mean = _per_sample(factor, images), _per_sample(_gray_mean(images), images)
    return (factor * images + (1.0 - factor) * mean).clamp(0.0, 1.0)


def _saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = _per_sample(factor, images)
    return (factor * images + (1.0 - factor) * _luminance(images)).clamp(0.0, 1.0)


def _hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    matrices = hue_shift_matrices(shift).to(images.dtype)
    return torch.einsum("bij,bj...->bi...", matrices, images).clamp(0.0, 1.0)


_BATCH_JITTER = {"brightness": _brightness, "contrast": _contrast, "saturation": _saturation, "hue": _hue}
