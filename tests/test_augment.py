import numpy as np
import pytest
import torch

from camcontrast_monai.transforms.augment import (
    RandColorJitter,
    RandColorJitterd,
    RandGrayscale,
    RandGrayscaled,
    RandResizedCrop,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    rgb_to_luminance,
    stage2_image_augmentation,
)


def run_chain(data, seed, **kwargs):
    chain = stage2_image_augmentation(**kwargs)
    chain.set_random_state(seed)
    return chain(data)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 16, 16, 16)])
def test_chain_shape_range_and_seeding(shape):
    image = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    first = run_chain({"image": image}, seed=3)["image"]
    assert first.shape == shape
    assert first.min() >= 0 and first.max() <= 1
    again = run_chain({"image": image}, seed=3)["image"]
    torch.testing.assert_close(first.as_tensor(), again.as_tensor(), rtol=0, atol=0)
    other = run_chain({"image": image}, seed=4)["image"]
    assert not torch.equal(first.as_tensor(), other.as_tensor())


def test_chain_output_size_and_heatmap_untouched():
    image = torch.rand(3, 20, 24)
    heatmap = torch.rand(1, 5, 6)
    out = run_chain({"image": image, "heatmap": heatmap, "crop_index": 2}, seed=0)
    assert out["image"].shape == (3, 20, 24)
    assert out["heatmap"] is heatmap and out["crop_index"] == 2
    resized = run_chain({"image": image}, seed=0, spatial_size=(16, 16))
    assert resized["image"].shape == (3, 16, 16)


def test_rand_resized_crop_area_and_aspect():
    cropper = RandResizedCrop(scale=(0.25, 0.25), ratio=(4.0, 4.0)).set_random_state(0)
    cropper.randomize((40, 40))
    # area fraction 1/4 of 1600 = 400 px, width / height = 4 -> 10 x 40
    np.testing.assert_array_equal(cropper.roi_size, [10, 40])
    cube = RandResizedCrop(scale=(0.125, 0.125), ratio=(1.0, 1.0)).set_random_state(0)
    cube.randomize((16, 16, 16))
    np.testing.assert_array_equal(cube.roi_size, [8, 8, 8])
    # nothing fits -> whole image
    never_fits = RandResizedCrop(scale=(1.0, 1.0), ratio=(2.0, 3.0)).set_random_state(0)
    never_fits.randomize((10, 10))
    np.testing.assert_array_equal(never_fits.roi_size, [10, 10])
    np.testing.assert_array_equal(never_fits.roi_start, [0, 0])


def test_grayscale_luminance():
    rgb = torch.rand(3, 5, 5)
    gray = RandGrayscale(prob=1.0)(rgb)
    expected = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    for channel in gray:
        torch.testing.assert_close(channel, expected)
    single = torch.rand(1, 5, 5)
    assert RandGrayscale(prob=1.0)(single) is single
    assert RandGrayscale(prob=0.0)(rgb) is rgb
    numpy_gray = RandGrayscaled(prob=1.0)({"image": rgb.numpy()})["image"]
    assert isinstance(numpy_gray, np.ndarray)
    np.testing.assert_allclose(numpy_gray[1], expected.numpy(), rtol=1e-6)


def test_deterministic_colour_operations():
    img = torch.tensor([0.1, 0.4, 0.8]).reshape(1, 3, 1)
    torch.testing.assert_close(adjust_brightness(img, 1.5), torch.tensor([0.15, 0.6, 1.0]).reshape(1, 3, 1))
    # contrast blends with the mean 13/30
    torch.testing.assert_close(adjust_contrast(img, 0.5), (0.5 * img + 0.5 * 13 / 30))
    torch.testing.assert_close(adjust_contrast(img, 0.0), torch.full_like(img, 13 / 30))
    rgb = torch.tensor([0.9, 0.2, 0.1]).reshape(3, 1, 1)
    torch.testing.assert_close(adjust_saturation(rgb, 0.0), rgb_to_luminance(rgb).expand(3, 1, 1))
    torch.testing.assert_close(adjust_hue(rgb, 0.0), rgb)
    reddish = torch.tensor([0.4, 0.3, 0.3]).reshape(3, 1, 1)
    shifted = adjust_hue(reddish, 0.25)
    # a hue shift keeps luminance (no clamping needed here) and changes the colour
    torch.testing.assert_close(rgb_to_luminance(shifted), rgb_to_luminance(reddish))
    assert shifted[1, 0, 0] > 0.3  # red-ish moves towards green for a positive shift


def test_colour_jitter_brightness_only_uses_drawn_factor():
    jitter = RandColorJitter(prob=1.0, brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0)
    jitter.set_random_state(5)
    img = torch.rand(3, 4, 4) * 0.5
    out = jitter(img)
    factor = jitter.factors["brightness"]
    assert 0.6 <= factor <= 1.4
    torch.testing.assert_close(out, (img * factor).clamp(0, 1))


def test_colour_jitter_single_channel_skips_colour_parts_and_stays_in_range():
    jitter = RandColorJitter(prob=1.0, brightness=0.0, contrast=0.0, saturation=0.9, hue=0.5)
    img = torch.rand(1, 8, 8)
    torch.testing.assert_close(jitter(img), img)
    strong = RandColorJitter(
        prob=1.0, brightness=0.9, contrast=0.9, saturation=0.9, hue=0.5
    ).set_random_state(1)
    for _ in range(5):
        out = strong(torch.rand(3, 6, 6))
        assert out.min() >= 0 and out.max() <= 1


def test_colour_jitter_dict_prob_and_keys():
    data = {"image": torch.rand(3, 4, 4), "heatmap": torch.rand(1, 2, 2)}
    assert RandColorJitterd(prob=0.0)(data)["image"] is data["image"]
    out = RandColorJitterd(prob=1.0).set_random_state(0)(data)
    assert not torch.equal(out["image"], data["image"])
    assert out["heatmap"] is data["heatmap"]


def test_rand_resized_crop_matches_monai_spatial_crop_and_resize():
    """The tensor fast path cuts and resizes exactly as MONAI's SpatialCrop + Resize (bilinear/trilinear) would."""
    from monai.transforms import Resize, SpatialCrop

    for shape in ((3, 48, 40), (1, 20, 24, 20)):
        image = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        size = [s // 2 for s in shape[1:]]
        cropper = RandResizedCrop(spatial_size=size).set_random_state(3)
        out = cropper(image)
        box = SpatialCrop(roi_start=cropper.roi_start, roi_end=cropper.roi_start + cropper.roi_size)(image)
        expected = Resize(spatial_size=size, mode="bilinear")(box)
        assert out.shape == (shape[0], *size)
        assert torch.allclose(out, torch.as_tensor(expected), atol=1e-6)
