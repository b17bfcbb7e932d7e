"""The 3D bundle's batched stage-2 augmentation against MONAI's per-sample transforms."""

import math

import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import (
    Affine,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from camcontrast_monai.apps.bundle import bundle_path
from camcontrast_monai.transforms import BatchAffineIntensityAugmentation, stage2_batch_augmentation

F64 = torch.float64


@pytest.mark.parametrize(
    ("shape", "rotate", "scale", "translate"),
    [((10, 12, 9), [0.1, -0.15, 0.05], [1.05, 0.93, 1.1], [1.5, -2.0, 0.5]), ((10, 12), [0.2, 0.0, 0.0], [1.1, 0.9], [1.0, -1.5])],
)
def test_resampling_equals_monai_affine_with_the_same_parameters(shape, rotate, scale, translate):
    image = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    dims = len(shape)
    expected = Affine(
        rotate_params=rotate[:1] if dims == 2 else rotate, scale_params=scale, translate_params=translate,
        mode="bilinear", padding_mode="zeros", image_only=True,
    )(image)  # fmt: skip
    augment = BatchAffineIntensityAugmentation()
    matrices = augment.affine_matrices(torch.tensor([rotate], dtype=F64), torch.tensor([scale], dtype=F64), torch.tensor([translate], dtype=F64))
    torch.testing.assert_close(augment.resample(image[None], matrices)[0], torch.as_tensor(expected), atol=1e-5, rtol=0)


def the_bundles_augmentation():
    parser = ConfigParser()
    parser.read_config([str(bundle_path("mri3d") / "configs" / name) for name in ("common.json", "pretrain.json")])
    return parser.get_parsed_content("train#augmentation")


def test_it_is_built_from_the_3d_bundles_own_transforms():
    augment = stage2_batch_augmentation(True, seed=5, per_sample=the_bundles_augmentation())
    assert isinstance(augment, BatchAffineIntensityAugmentation) and augment.seed == 5
    assert augment.rotate_range == (0.1745,) * 3 and augment.scale_range == (0.1,) * 3 and augment.translate_range == (2,) * 3
    assert (augment.affine_prob, augment.scale_prob, augment.shift_prob, augment.noise_prob) == (0.5, 0.8, 0.8, 0.2)
    assert augment.intensity_factors == (-0.2, 0.2) and augment.intensity_offsets == (-0.1, 0.1)
    assert augment.noise_std == 0.02 and augment.sample_noise_std
    assert stage2_batch_augmentation(False, per_sample=the_bundles_augmentation()) is None


def test_a_transform_it_does_not_mirror_is_refused_by_name():
    with pytest.raises(ValueError, match="RandFlipd.*batched_augmentation false"):
        BatchAffineIntensityAugmentation.from_transforms([RandFlipd("image", prob=0.5)])
    with pytest.raises(ValueError, match="in that order"):
        BatchAffineIntensityAugmentation.from_transforms([RandShiftIntensityd("image", offsets=0.1), RandScaleIntensityd("image", factors=0.1)])
    with pytest.raises(ValueError, match="padding zeros"):
        BatchAffineIntensityAugmentation.from_transforms([RandAffined("image", prob=1.0, rotate_range=0.1, padding_mode="border")])


def test_each_intensity_draw_has_monais_distribution():
    """Constant images, one transform at a time: the fraction changed and the spread of the change."""
    images = torch.ones(20000, 1, 2, 2, 2)
    scale = BatchAffineIntensityAugmentation.from_transforms([RandScaleIntensityd("image", factors=0.2, prob=0.8)])(images, 0)
    factor = scale[:, 0, 0, 0, 0] - 1  # 1 * (1 + f), f uniform in (-0.2, 0.2), the same over the volume
    assert (scale == scale[:, :, :1, :1, :1]).all()
    changed = factor != 0
    assert changed.double().mean().item() == pytest.approx(0.8, abs=0.02)
    assert factor[changed].abs().max() <= 0.2 and factor[changed].std().item() == pytest.approx(0.2 / math.sqrt(3), rel=0.05)
    shift = BatchAffineIntensityAugmentation.from_transforms([RandShiftIntensityd("image", offsets=0.1, prob=0.8)])(images, 0)
    offset = shift[:, 0, 0, 0, 0] - 1
    assert offset[offset != 0].std().item() == pytest.approx(0.1 / math.sqrt(3), rel=0.05)
    noisy = BatchAffineIntensityAugmentation.from_transforms([RandGaussianNoised("image", prob=0.2, std=0.02)])(images, 0)
    noise = (noisy - 1).flatten(1)
    with_noise = (noise != 0).any(dim=1)
    assert with_noise.double().mean().item() == pytest.approx(0.2, abs=0.02)
    # the std is itself uniform in (0, 0.02), as RandGaussianNoise(sample_std=True) draws it: E[s^2] = 0.02^2 / 3
    assert noise[with_noise].pow(2).mean().sqrt().item() == pytest.approx(0.02 / math.sqrt(3), rel=0.05)


def test_affine_draws_apply_to_half_the_samples_and_depend_on_seed_and_step_only():
    images = torch.rand(400, 1, 6, 6, 6, generator=torch.Generator().manual_seed(1))
    augment = BatchAffineIntensityAugmentation(rotate_range=[0.3] * 3, scale_range=[0.1] * 3, translate_range=[1] * 3, affine_prob=0.5, seed=2)
    first = augment(images, step=7)
    changed = (first != images).flatten(1).any(dim=1)
    assert changed.double().mean().item() == pytest.approx(0.5, abs=0.08)
    torch.testing.assert_close(augment(images, step=7), first)
    assert not torch.equal(augment(images, step=8), first)
    assert not torch.equal(BatchAffineIntensityAugmentation(**{**vars(augment), "seed": 3})(images, step=7), first)
