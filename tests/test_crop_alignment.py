"""Image/heatmap crop alignment through stage 2's dataset and batched augmentation, checked on pixels in 2D and 3D
(:mod:`camcontrast_monai.report.alignment`, which ``camcontrast diagnose`` runs on a bundle's own augmentation)."""

import pytest
import torch

from camcontrast_monai.data import stage2_dataset
from camcontrast_monai.report.alignment import check_crop_alignment, coded_image, crop_alignment_problems
from camcontrast_monai.transforms import (
    BatchAffineIntensityAugmentation,
    BatchStage2Augmentation,
    fixed_crop_names,
)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_augmented_image_crops_stay_inside_the_region_of_their_heatmap_crop(spatial_dims):
    image_shape = (64, 64) if spatial_dims == 2 else (32, 32, 32)
    heatmap_shape = tuple(size // (16 if spatial_dims == 2 else 8) for size in image_shape)
    if spatial_dims == 2:  # colour operations on too: geometry_only() leaves the crops and rotations alone
        augment = BatchStage2Augmentation(rotate_prob=1.0, seed=1).geometry_only()
    else:
        augment = BatchAffineIntensityAugmentation(
            rotate_range=(0.3, 0.3, 0.3), scale_range=(0.1, 0.1, 0.1), translate_range=(2, 2, 2), affine_prob=1.0,
            scale_prob=1.0, intensity_factors=(0.1, 0.1), noise_prob=1.0, noise_std=0.1, seed=1,
        ).geometry_only()  # fmt: skip
    result = check_crop_alignment(augment, image_shape, heatmap_shape)
    assert result["crops"] == 3 * len(fixed_crop_names(spatial_dims))
    assert result["problems"] == [] and result["image_pixel_fraction"] > 0.5


def test_intensity_operations_rewrite_the_code_so_the_check_needs_geometry_only():
    noisy = BatchAffineIntensityAugmentation(noise_prob=1.0, noise_std=5.0, seed=1)
    assert check_crop_alignment(noisy, (32, 32, 32), (4, 4, 4))["problems"]
    assert check_crop_alignment(noisy.geometry_only(), (32, 32, 32), (4, 4, 4))["problems"] == []


def test_the_fixed_crops_sit_where_their_names_say():
    for spatial_dims, image_shape in ((2, (64, 64)), (3, (32, 32, 32))):
        data = [{"image": coded_image(image_shape, 0), "heatmap": coded_image((4,) * spatial_dims, 0)[:-1], "image_id": 0}]
        dataset = stage2_dataset(data, lambda entry: entry, spatial_dims=spatial_dims, num_workers=0, progress=False)
        names = fixed_crop_names(spatial_dims)
        samples = [dataset[i] for i in range(len(dataset))]
        first = torch.as_tensor(samples[0]["image"]).flatten(1)[1:-1, 0]
        far = torch.as_tensor(next(s for s in samples if names[s["crop_index"]] in ("BR", "h1-BR"))["image"]).flatten(1)[1:-1, -1]
        assert names[samples[0]["crop_index"]] in ("TL", "h0-TL") and first.tolist() == [0.0] * spatial_dims
        assert far.tolist() == [size - 1.0 for size in image_shape]


def test_a_swapped_heatmap_and_a_crop_from_elsewhere_are_caught():
    image_shape, heatmap_shape = (64, 64), (4, 4)
    data = [{"image": coded_image(image_shape, k), "heatmap": coded_image(heatmap_shape, 1 - k)[:-1], "image_id": k} for k in range(2)]
    dataset = stage2_dataset(data, lambda entry: entry, num_workers=0, progress=False)
    samples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([torch.as_tensor(s["image"]) for s in samples])
    problems = crop_alignment_problems(samples, images, image_shape, heatmap_shape)
    assert len(problems) == len(samples) and "another image's heatmap" in problems[0]
    # the right heatmaps, but every image crop replaced by the first one (top-left): the other crops reach outside
    data = [{"image": coded_image(image_shape, 0), "heatmap": coded_image(heatmap_shape, 0)[:-1], "image_id": 0}]
    samples = [stage2_dataset(data, lambda entry: entry, num_workers=0, progress=False)[i] for i in range(5)]
    top_left = torch.stack([torch.as_tensor(samples[0]["image"])] * 5)
    problems = crop_alignment_problems(samples, top_left, image_shape, heatmap_shape)
    assert len(problems) >= 4 and all("outside the heatmap crop's region" in p for p in problems)
