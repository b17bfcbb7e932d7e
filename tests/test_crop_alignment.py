"""Image/heatmap crop alignment through stage 2's dataset and batched augmentation, checked on pixels in 2D and 3D.

Every pixel of a position-coded image stores its own coordinates (channels 1..n, scaled by a last "valid" channel
that zero padding empties). After the fixed crop and the batched augmentation (its geometry only: colour
operations would rewrite the code), every valid pixel of an image crop must come from that crop's region of the
image, and the heatmap crop must be exactly the same region of the heatmap. A mix-up of crops, images or
heatmaps, or an augmentation that reaches outside its crop, fails here.
"""

import pytest
import torch

from camcontrast_monai.data import stage2_dataset
from camcontrast_monai.transforms import (
    BatchAffineIntensityAugmentation,
    BatchStage2Augmentation,
    fixed_crop_names,
)


def _coded(shape: tuple[int, ...], image_id: int) -> torch.Tensor:
    """``(n + 2, *shape)``: the image's id, each axis's coordinate (in pixels), and a channel of ones."""
    grids = torch.meshgrid(*[torch.arange(size, dtype=torch.float32) for size in shape], indexing="ij")
    return torch.stack([torch.full(shape, float(image_id)), *grids, torch.ones(shape)])


def _decoded(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per valid pixel (valid channel above 0.999): ``(image ids, coordinates (P, n))`` of a batch of coded crops."""
    valid = crops[:, -1] > 0.999
    values = crops[:, :-1] / crops[:, -1:].clamp_min(1e-6)
    return valid, values


def _check(dataset, augment, image_shape, heatmap_shape, names):
    batch = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([torch.as_tensor(sample["image"]) for sample in batch])
    augmented = augment(images, step=3)
    valid, values = _decoded(augmented)
    assert valid.float().mean() > 0.5, "most of each augmented crop should come from the image, not padding"
    scale = [i // h for i, h in zip(image_shape, heatmap_shape, strict=True)]
    for b, sample in enumerate(batch):
        image_id, crop = sample["image_id"], names[sample["crop_index"]]
        # the heatmap crop: exactly its own image's heatmap, over the region of the same position
        heatmap = torch.as_tensor(sample["heatmap"])
        assert torch.all(heatmap[0] == image_id)
        low = [int(heatmap[1 + axis].min()) * scale[axis] for axis in range(len(image_shape))]
        high = [(int(heatmap[1 + axis].max()) + 1) * scale[axis] for axis in range(len(image_shape))]
        assert [h - lo for lo, h in zip(low, high, strict=True)] == [s // 2 for s in image_shape], crop
        # every valid augmented pixel: this image, inside that region (bilinear blends stay inside it)
        pixels = values[b][:, valid[b]]
        assert torch.allclose(pixels[0], torch.full_like(pixels[0], float(image_id)), atol=1e-3), crop
        for axis in range(len(image_shape)):
            assert pixels[1 + axis].min() >= low[axis] - 1e-3 and pixels[1 + axis].max() <= high[axis] - 1 + 1e-3, (crop, axis)
    return batch


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_augmented_image_crops_stay_inside_the_region_of_their_heatmap_crop(spatial_dims):
    image_shape = (64, 64) if spatial_dims == 2 else (32, 32, 32)
    heatmap_shape = tuple(size // (16 if spatial_dims == 2 else 8) for size in image_shape)
    data = [{"image": _coded(image_shape, k), "heatmap": _coded(heatmap_shape, k)[:-1], "image_id": k} for k in range(3)]
    dataset = stage2_dataset(data, lambda entry: entry, spatial_dims=spatial_dims, num_workers=0, progress=False)
    names = fixed_crop_names(spatial_dims)
    assert len(dataset) == 3 * len(names)
    if spatial_dims == 2:
        augment = BatchStage2Augmentation(jitter_prob=0.0, grayscale_prob=0.0, rotate_prob=1.0, seed=1)
    else:
        augment = BatchAffineIntensityAugmentation(
            rotate_range=(0.3, 0.3, 0.3), scale_range=(0.1, 0.1, 0.1), translate_range=(2, 2, 2), affine_prob=1.0, seed=1
        )
    batch = _check(dataset, augment, image_shape, heatmap_shape, names)
    # and the crops sit where their names say: the first starts at the origin, the last bottom-right one ends at the far corner
    far_name = "BR" if spatial_dims == 2 else "h1-BR"
    first = torch.as_tensor(batch[0]["image"]).flatten(1)[1:-1, 0]
    far = torch.as_tensor(next(s for s in batch if names[s["crop_index"]] == far_name)["image"]).flatten(1)[1:-1, -1]
    assert names[batch[0]["crop_index"]] in ("TL", "h0-TL") and first.tolist() == [0.0] * spatial_dims
    assert far.tolist() == [size - 1.0 for size in image_shape]


def test_a_swapped_heatmap_is_caught():
    image_shape, heatmap_shape = (64, 64), (4, 4)
    data = [{"image": _coded(image_shape, k), "heatmap": _coded(heatmap_shape, 1 - k)[:-1], "image_id": k} for k in range(2)]
    dataset = stage2_dataset(data, lambda entry: entry, num_workers=0, progress=False)
    with pytest.raises(AssertionError):
        _check(dataset, BatchStage2Augmentation(jitter_prob=0.0, grayscale_prob=0.0, seed=1), image_shape, heatmap_shape, fixed_crop_names(2))
