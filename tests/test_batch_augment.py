import math

import pytest
import torch
import torch.nn.functional as F

from camcontrast_monai.transforms.augment import (
    RandResizedCrop,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    rgb_to_luminance,
)
from camcontrast_monai.transforms.batch_augment import BatchStage2Augmentation, resized_crop_flip_rotate_grid

PER_SAMPLE_JITTER = {
    "brightness": adjust_brightness,
    "contrast": adjust_contrast,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
}
NAMES = ("brightness", "contrast", "saturation", "hue")


def _grid(start, size, flip, angle, input_size, output_size):
    as64 = lambda values: torch.tensor([values], dtype=torch.float64)  # noqa: E731
    return resized_crop_flip_rotate_grid(
        as64(start), as64(size), torch.tensor([flip]), torch.tensor([angle], dtype=torch.float64), input_size, output_size
    )


def _sample(images, grid):
    return F.grid_sample(images, grid.float(), mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_region_resize_equals_rand_resized_crop(seed):
    images = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(seed))
    cropper = RandResizedCrop(spatial_size=(16, 14))
    cropper.set_random_state(seed)
    cropper.randomize((12, 10))
    expected = cropper(images[0], randomize=False)
    grid, _ = _grid(list(cropper.roi_start), list(cropper.roi_size), False, 0.0, (12, 10), (16, 14))
    torch.testing.assert_close(_sample(images, grid)[0], expected, atol=1e-5, rtol=0)


def test_flip_and_quarter_turn_move_known_pixels():
    images = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    grid, in_crop = _grid([0, 0], [8, 8], True, 0.0, (8, 8), (8, 8))
    torch.testing.assert_close(_sample(images, grid), images.flip(-1))
    grid, in_crop = _grid([0, 0], [8, 8], False, math.pi / 2, (8, 8), (8, 8))
    rotated = _sample(images, grid)
    torch.testing.assert_close(rotated, torch.rot90(images, -1, dims=(-2, -1)), atol=1e-4, rtol=0)
    assert rotated[0, 0, 0, 7] == images[0, 0, 0, 0]  # the top-left pixel goes to the top-right
    assert in_crop.abs().max() <= 1 + 1e-9  # a quarter turn of a square keeps every pixel inside


def test_rotation_zeroes_outside_the_crop_and_keeps_the_centre():
    augment = BatchStage2Augmentation(scale=(1, 1), ratio=(1, 1), flip_prob=0, rotate_degrees=45, rotate_prob=1,
                                      jitter_prob=0, grayscale_prob=0)  # fmt: skip
    images = torch.ones(4, 1, 32, 32)
    params = augment.draw(4, (32, 32), augment.generator(0, torch.device("cpu")))
    out = augment.apply(images, params)
    for sample, angle in zip(out[:, 0], params["angle"], strict=True):
        # a corner pixel leaves the crop once the rotation exceeds ~1.8 degrees; the centre stays
        assert sample[15:17, 15:17].min() == pytest.approx(1.0)
        if abs(angle) > math.radians(5):
            assert sample[0, 0] == 0 and sample[-1, -1] == 0


@pytest.mark.parametrize("channels", [3, 1])
def test_colour_matches_the_per_sample_operations_in_each_samples_order(channels):
    augment = BatchStage2Augmentation(scale=(1, 1), ratio=(1, 1), flip_prob=0, rotate_prob=0, jitter_prob=0.7,
                                      grayscale_prob=0.4)  # fmt: skip
    images = torch.rand(16, channels, 6, 6, generator=torch.Generator().manual_seed(1))
    params = augment.draw(16, (6, 6), augment.generator(7, torch.device("cpu")))
    out = augment.apply(images, params)
    assert params["jitter"].any() and not params["jitter"].all()
    assert len({tuple(order.tolist()) for order in params["order"][params["jitter"]]}) > 1
    for b in range(16):
        expected = images[b]
        if params["jitter"][b]:
            for index in params["order"][b].tolist():
                name = NAMES[index]
                if channels == 3 or name in ("brightness", "contrast"):
                    expected = PER_SAMPLE_JITTER[name](expected, float(params[name][b]))
        if channels == 3 and params["grayscale"][b]:
            expected = rgb_to_luminance(expected).expand(3, -1, -1)
        torch.testing.assert_close(out[b], expected, atol=1e-5, rtol=0)


def test_draws_follow_the_configured_distributions():
    augment = BatchStage2Augmentation()
    params = augment.draw(4000, (96, 96), augment.generator(0, torch.device("cpu")))
    area = params["roi_size"].prod(dim=1) / 96**2
    aspect = params["roi_size"][:, 1] / params["roi_size"][:, 0]
    assert 0.78 <= float(area.min()) and float(area.max()) <= 1.0
    assert 0.70 <= float(aspect.min()) and float(aspect.max()) <= 1.36
    assert (params["roi_start"] >= 0).all() and (params["roi_start"] + params["roi_size"] <= 96).all()
    for key, prob in (("flip", 0.5), ("rotate", 0.5), ("jitter", 0.8), ("grayscale", 0.2)):
        assert float(params[key].float().mean()) == pytest.approx(prob, abs=0.03)
    assert float(params["angle"].abs().max()) <= math.radians(30)
    assert (params["angle"][~params["rotate"]] == 0).all()
    assert float(params["brightness"].min()) >= 0.6 and float(params["brightness"].max()) <= 1.4
    assert float(params["hue"].abs().max()) <= 0.1


def test_seeded_by_seed_and_step_only():
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    first = BatchStage2Augmentation(seed=5)
    assert torch.equal(first(images, 3), BatchStage2Augmentation(seed=5)(images, 3))
    assert not torch.equal(first(images, 3), first(images, 4))
    assert not torch.equal(first(images, 3), BatchStage2Augmentation(seed=6)(images, 3))


def test_3d_output_size_range_and_in_plane_flip():
    volumes = torch.rand(2, 1, 6, 8, 10, generator=torch.Generator().manual_seed(0))
    out = BatchStage2Augmentation(spatial_size=(4, 6, 8))(volumes, 0)
    assert out.shape == (2, 1, 4, 6, 8) and 0 <= out.min() and out.max() <= 1
    grid, _ = _grid([0, 0, 0], [6, 8, 10], True, 0.0, (6, 8, 10), (6, 8, 10))
    torch.testing.assert_close(_sample(volumes[:1], grid), volumes[:1].flip(-1))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="batch"):
        BatchStage2Augmentation()(torch.rand(3, 8, 8), 0)
    with pytest.raises(ValueError, match="spatial_size"):
        BatchStage2Augmentation(spatial_size=(8, 8))(torch.rand(1, 1, 4, 8, 8), 0)
    with pytest.raises(ValueError, match="flip_prob"):
        BatchStage2Augmentation(flip_prob=1.5)
