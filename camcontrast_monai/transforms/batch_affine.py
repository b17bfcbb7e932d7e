"""The 3D bundle's stage-2 augmentation on a whole batch of sub-volumes, in the trainer, on the training device.

The 3D bundle augments each image sub-volume with MONAI's ``RandAffined``, ``RandScaleIntensityd``,
``RandShiftIntensityd`` and ``RandGaussianNoised`` in the data loader workers.
:class:`BatchAffineIntensityAugmentation` applies the same random transforms, with the same parameter
distributions, to a ``(B, C, *spatial)`` batch at once: one batched ``grid_sample`` for the affine part,
elementwise operations for the intensity part. It is built from the bundle's own list of those transforms
(:meth:`BatchAffineIntensityAugmentation.from_transforms`), so the two forms cannot drift apart, and a
transform it does not mirror is refused by name. The affine matrices are MONAI's own
(``create_rotate``, ``create_translate``, ``create_scale``, composed as ``AffineGrid`` does), so a sample
resampled here equals ``monai.transforms.Affine`` with the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import copy as shallow_copy
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import RandAffined, RandGaussianNoised, RandScaleIntensityd, RandShiftIntensityd
from monai.transforms.utils import create_rotate, create_scale, create_translate

__all__ = ["BatchAffineIntensityAugmentation"]


def _ranges(values: Sequence | None, spatial_dims: int) -> list[tuple[float, float]]:
    """MONAI's range convention, per axis: a number r is (-r, r), a pair is (min, max), None is no change."""
    values = list(values or [])
    values += [None] * (spatial_dims - len(values))
    return [(0.0, 0.0) if v is None else (float(v[0]), float(v[1])) if isinstance(v, Sequence) else (-float(v), float(v)) for v in values]


def _uniform(generator: torch.Generator, low_high: Sequence[tuple[float, float]], batch: int) -> torch.Tensor:
    """``(batch, len(low_high))`` uniform draws, column i in ``low_high[i]``."""
    bounds = torch.tensor(low_high, dtype=torch.float64)
    return bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * torch.rand(batch, len(low_high), generator=generator, dtype=torch.float64)


class BatchAffineIntensityAugmentation:
    """Random affine (``affine_prob``), intensity scale (``scale_prob``), intensity shift (``shift_prob``) and
    Gaussian noise (``noise_prob``), each drawn per sample; call as ``augment(images, step)``.

    Ranges follow MONAI (a number r per axis means uniform in (-r, r); scale factors are ``1 + draw``;
    translations in voxels; the noise's std is uniform in (0, ``noise_std``) when ``sample_noise_std``,
    as ``RandGaussianNoise`` draws it). Resampling is trilinear (bilinear in 2D) with zero padding about
    the volume centre, as ``RandAffine(mode="bilinear", padding_mode="zeros")``. The draws depend only on
    ``seed`` and ``step`` (use the global iteration), as for
    :class:`~camcontrast_monai.transforms.BatchStage2Augmentation`.
    """

    def __init__(
        self,
        rotate_range: Sequence | None = None,
        scale_range: Sequence | None = None,
        translate_range: Sequence | None = None,
        affine_prob: float = 0.0,
        intensity_factors: tuple[float, float] = (0.0, 0.0),
        scale_prob: float = 0.0,
        intensity_offsets: tuple[float, float] = (0.0, 0.0),
        shift_prob: float = 0.0,
        noise_mean: float = 0.0,
        noise_std: float = 0.0,
        sample_noise_std: bool = True,
        noise_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.rotate_range, self.scale_range, self.translate_range = rotate_range, scale_range, translate_range
        self.affine_prob, self.scale_prob, self.shift_prob, self.noise_prob = affine_prob, scale_prob, shift_prob, noise_prob
        self.intensity_factors, self.intensity_offsets = tuple(intensity_factors), tuple(intensity_offsets)
        self.noise_mean, self.noise_std, self.sample_noise_std = noise_mean, noise_std, sample_noise_std
        self.seed = seed

    def geometry_only(self) -> BatchAffineIntensityAugmentation:
        """A copy that draws the same affine transforms and leaves intensities alone (no scaling, shifting or
        noise): what a pixel check of crop alignment can read."""
        geometric = shallow_copy(self)
        geometric.scale_prob = geometric.shift_prob = geometric.noise_prob = 0.0
        return geometric

    @classmethod
    def from_transforms(cls, transforms: Sequence[Any], seed: int = 0) -> BatchAffineIntensityAugmentation:
        """The batched twin of a list of ``RandAffined`` / ``RandScaleIntensityd`` / ``RandShiftIntensityd`` /
        ``RandGaussianNoised`` on the image (each at most once, in that order); anything else is refused."""
        options: dict[str, Any] = {"seed": seed}
        mirrored = (RandAffined, RandScaleIntensityd, RandShiftIntensityd, RandGaussianNoised)
        position = -1
        for transform in transforms:
            kind = next((k for k in mirrored if isinstance(transform, k)), None)
            if kind is None or mirrored.index(kind) <= position:
                raise ValueError(
                    f"batched augmentation mirrors {', '.join(k.__name__ for k in mirrored)} (each once, in that order); "
                    f"got {type(transform).__name__}: set batched_augmentation false to augment each sample instead"
                )
            position = mirrored.index(kind)
            if kind is RandAffined:
                grid = transform.rand_affine.rand_affine_grid
                if set(transform.mode) != {"bilinear"} or set(transform.padding_mode) != {"zeros"} or any(grid.shear_range):
                    raise ValueError("batched augmentation mirrors RandAffined with mode bilinear, padding zeros and no shear")
                options.update(rotate_range=grid.rotate_range, scale_range=grid.scale_range, translate_range=grid.translate_range, affine_prob=transform.prob)
            elif kind is RandScaleIntensityd:
                options.update(intensity_factors=transform.scaler.factors, scale_prob=transform.prob)
            elif kind is RandShiftIntensityd:
                options.update(intensity_offsets=transform.shifter.offsets, shift_prob=transform.prob)
            else:
                noise = transform.rand_gaussian_noise
                options.update(noise_mean=noise.mean, noise_std=noise.std, sample_noise_std=noise.sample_std, noise_prob=transform.prob)
        return cls(**options)

    def affine_matrices(self, rotate: torch.Tensor, scale: torch.Tensor, translate: torch.Tensor) -> torch.Tensor:
        """``(B, d + 1, d + 1)`` matrices from output to input voxel coordinates about the centre, as ``AffineGrid``
        composes them (rotation, then translation, then scaling)."""
        spatial_dims = scale.shape[1]
        angles = rotate if spatial_dims == 3 else rotate[:, :1]
        matrices = [
            torch.as_tensor(create_rotate(spatial_dims, a.tolist(), backend="torch"), dtype=torch.float64)
            @ torch.as_tensor(create_translate(spatial_dims, t.tolist(), backend="torch"), dtype=torch.float64)
            @ torch.as_tensor(create_scale(spatial_dims, s.tolist(), backend="torch"), dtype=torch.float64)
            for a, t, s in zip(angles, translate, scale, strict=True)
        ]
        return torch.stack(matrices)

    def resample(self, images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        """Each image sampled at ``matrices[i]`` applied to its centred voxel grid (zeros outside)."""
        shape = images.shape[2:]
        axes = [torch.arange(size, dtype=torch.float64) - (size - 1) / 2 for size in shape]
        grid = torch.stack([*torch.meshgrid(*axes, indexing="ij"), torch.ones(shape, dtype=torch.float64)]).reshape(len(shape) + 1, -1)
        coords = (matrices @ grid)[:, : len(shape)]  # (B, d, N) input voxel coordinates about the centre
        half = torch.tensor([max(size - 1, 1) / 2 for size in shape], dtype=torch.float64)
        normalised = (coords / half[:, None]).transpose(1, 2).flip(-1)  # grid_sample wants (x, y, z) = last axis first
        normalised = normalised.reshape(images.shape[0], *shape, len(shape)).to(images.device, images.dtype)
        return F.grid_sample(images, normalised, mode="bilinear", padding_mode="zeros", align_corners=True)

    def __call__(self, images: torch.Tensor, step: int) -> torch.Tensor:
        batch, spatial_dims = images.shape[0], images.ndim - 2
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(step))
        chosen = torch.rand(batch, 4, generator=generator) < torch.tensor([self.affine_prob, self.scale_prob, self.shift_prob, self.noise_prob])
        rotate = _uniform(generator, _ranges(self.rotate_range, 3), batch)
        scale = 1 + _uniform(generator, _ranges(self.scale_range, spatial_dims), batch)
        translate = _uniform(generator, _ranges(self.translate_range, spatial_dims), batch)
        factor = _uniform(generator, [self.intensity_factors], batch)[:, 0]
        offset = _uniform(generator, [self.intensity_offsets], batch)[:, 0]
        noise_std = _uniform(generator, [(0.0, self.noise_std)], batch)[:, 0] if self.sample_noise_std else torch.full((batch,), float(self.noise_std), dtype=torch.float64)
        noise = torch.randn(images.shape, generator=generator).to(images.device, images.dtype)
        shape = (batch, *([1] * (images.ndim - 1)))
        applies = chosen.reshape(batch, 4, *shape[1:]).to(images.device)  # applies[:, k]: broadcastable per-sample masks

        def per_sample(values: torch.Tensor) -> torch.Tensor:
            return values.reshape(shape).to(images.device, images.dtype)

        out = images
        if bool(chosen[:, 0].any()):
            affine = chosen[:, 0]
            out = out.clone()
            out[affine] = self.resample(images[affine], self.affine_matrices(rotate[affine], scale[affine], translate[affine]))
        out = torch.where(applies[:, 1], out * (1 + per_sample(factor)), out)
        out = torch.where(applies[:, 2], out + per_sample(offset), out)
        return torch.where(applies[:, 3], out + self.noise_mean + per_sample(noise_std) * noise, out)
