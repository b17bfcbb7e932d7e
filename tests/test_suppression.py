import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from camcontrast_monai.transforms.suppression import (
    BackgroundSuppression,
    BackgroundSuppressiond,
    NegativeSuppression,
    NegativeSuppressiond,
)


def half_bright_image(columns_on=range(4, 8), value=200.0, size=8, channels=3):
    image = torch.zeros(channels, size, size)
    image[:, :, list(columns_on)] = value
    return image


def test_background_left_half_zeroed():
    out = BackgroundSuppression()(torch.ones(1, 4, 4), half_bright_image())
    expected = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(1, 4, 4)
    torch.testing.assert_close(out, expected)


def test_background_cell_straddling_boundary_gets_foreground_fraction():
    # foreground starts at column 3: heatmap column 1 covers image columns 2 and 3 -> half foreground
    out = BackgroundSuppression()(torch.full((1, 4, 4), 0.8), half_bright_image(columns_on=range(3, 8)))
    torch.testing.assert_close(out[0, :, 1], torch.full((4,), 0.4))
    torch.testing.assert_close(out[0, 0], torch.tensor([0.0, 0.4, 0.8, 0.8]))


def test_background_threshold_on_channel_mean_is_strict():
    image = torch.zeros(3, 4, 4)
    image[0] = 45.0  # channel mean 15: not above the threshold
    assert BackgroundSuppression()(torch.ones(1, 4, 4), image).sum() == 0
    image[0] = 46.0  # channel mean 15.33
    assert BackgroundSuppression()(torch.ones(1, 4, 4), image).sum() == 16


def test_background_unit_scale_images():
    image = half_bright_image(value=200 / 255)
    out = BackgroundSuppression(intensity_max=1.0)(torch.ones(1, 2, 2), image)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]))
    dim = half_bright_image(value=10 / 255)  # below 15/255 -> background everywhere
    assert BackgroundSuppression(intensity_max=1.0)(torch.ones(1, 2, 2), dim).sum() == 0


def test_background_3d_and_non_multiple_sizes():
    image = torch.zeros(1, 6, 6, 6)
    image[:, :3] = 100.0  # first half of the first axis is foreground
    out = BackgroundSuppression()(torch.ones(1, 2, 3, 3), image)
    torch.testing.assert_close(out[0, 0], torch.ones(3, 3))
    torch.testing.assert_close(out[0, 1], torch.zeros(3, 3))
    # 5 columns onto 2 heatmap cells: adaptive pooling windows [0, 3) and [2, 5)
    image_2d = torch.zeros(1, 5, 5)
    image_2d[:, :, 2:] = 100.0
    out_2d = BackgroundSuppression()(torch.ones(1, 1, 2), image_2d)
    torch.testing.assert_close(out_2d, torch.tensor([[[1 / 3, 1.0]]]))


def test_background_keeps_input_types():
    out = BackgroundSuppression()(
        np.ones((1, 2, 2), dtype=np.float32), half_bright_image().numpy().astype(np.uint8)
    )
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, [[[0.0, 1.0], [0.0, 1.0]]])
    meta = MetaTensor(torch.ones(1, 2, 2), meta={"filename_or_obj": "h.nii"})
    out_meta = BackgroundSuppression()(meta, half_bright_image())
    assert isinstance(out_meta, MetaTensor) and out_meta.meta["filename_or_obj"] == "h.nii"


def test_background_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="spatial dims"):
        BackgroundSuppression()(torch.ones(1, 2, 2, 2), half_bright_image())


def test_background_dict():
    data = {"image": half_bright_image(), "heatmap": torch.ones(1, 4, 4), "label": 1}
    out = BackgroundSuppressiond()(data)
    torch.testing.assert_close(out["heatmap"][0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert out["image"] is data["image"] and out["label"] == 1


@pytest.mark.parametrize(
    "label, zeroed",
    [
        (0, True),
        (1, False),
        (torch.tensor(0), True),
        (torch.tensor([1]), False),
        (np.array(0), True),
        (torch.tensor([0, 0, 0, 0, 0]), True),
        (torch.tensor([0, 1, 0, 0, 1]), False),
        (np.array([0.0, 0.0, 1.0]), False),
    ],
)
def test_negative_suppression(label, zeroed):
    heatmap = torch.rand(1, 3, 3) + 0.1
    out = NegativeSuppression()(heatmap, label)
    assert out.shape == heatmap.shape and out.dtype == heatmap.dtype
    if zeroed:
        assert torch.count_nonzero(out) == 0
    else:
        torch.testing.assert_close(out, heatmap)


def test_negative_suppression_numpy_and_dict():
    heatmap = np.full((1, 2, 2, 2), 0.5, dtype=np.float16)
    out = NegativeSuppression()(heatmap, 0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float16 and not out.any()
    samples = [{"heatmap": torch.ones(1, 2, 2), "label": label} for label in (0, 1)]
    normal, abnormal = (NegativeSuppressiond()(s) for s in samples)
    assert normal["heatmap"].sum() == 0 and normal["label"] == 0
    assert abnormal["heatmap"].sum() == 4
