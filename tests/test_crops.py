import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from camcontrast_monai.transforms.crops import (
    FIXED_CROP_NAMES_2D,
    FIXED_CROP_NAMES_3D,
    FixedCrops,
    FixedCropsd,
    SelectFixedCrop,
    SelectFixedCropd,
    fixed_crop_boxes,
    fixed_crop_names,
)


def index_image(*spatial_shape):
    """Channel-first image whose value at each pixel is its flat index."""
    return torch.arange(int(np.prod(spatial_shape))).reshape(1, *spatial_shape)


def test_2d_even_crops_exact_positions():
    img = index_image(8, 8)
    tl, tr, bl, br, c = FixedCrops()(img)
    for crop in (tl, tr, bl, br, c):
        assert crop.shape == (1, 4, 4)
    assert tl[0, 0, 0] == 0 and tl[0, -1, -1] == 3 * 8 + 3
    assert tr[0, 0, 0] == 4 and tr[0, -1, -1] == 3 * 8 + 7
    assert bl[0, 0, 0] == 4 * 8 and bl[0, -1, -1] == 7 * 8 + 3
    assert br[0, 0, 0] == 4 * 8 + 4 and br[0, -1, -1] == 63
    assert c[0, 0, 0] == 2 * 8 + 2 and c[0, -1, -1] == 5 * 8 + 5
    torch.testing.assert_close(c, img[:, 2:6, 2:6])


def test_2d_odd_crops_anchor_corners_and_skip_middle_line():
    img = index_image(9, 7)
    tl, tr, bl, br, c = FixedCrops()(img)
    for crop in (tl, tr, bl, br, c):
        assert crop.shape == (1, 4, 3)
    assert tl[0, 0, 0] == 0
    assert tr[0, 0, -1] == 6  # top-right pixel of the image
    assert bl[0, -1, 0] == 8 * 7  # bottom-left pixel
    assert br[0, -1, -1] == 9 * 7 - 1  # last pixel
    assert br[0, 0, 0] == 5 * 7 + 4  # corners anchored: BR starts at (9 - 4, 7 - 3)
    # centre starts at ((9 - 4) // 2, (7 - 3) // 2) = (2, 2)
    assert c[0, 0, 0] == 2 * 7 + 2
    corner_values = torch.cat([crop.flatten() for crop in (tl, tr, bl, br)])
    middle_row = img[0, 4, :]
    middle_column = img[0, :, 3]
    assert not torch.isin(middle_row, corner_values).any()
    assert not torch.isin(middle_column, corner_values).any()
    assert len(torch.unique(corner_values)) == 4 * 4 * 3  # corners do not overlap


def test_3d_brain_volume_octants_cover_once_and_centres():
    shape = (80, 96, 80)
    img = index_image(*shape)
    crops = FixedCrops()(img)
    assert len(crops) == 10
    assert all(crop.shape == (1, 40, 48, 40) for crop in crops)

    coverage = torch.zeros(int(np.prod(shape)), dtype=torch.int32)
    octants = [crop for name, crop in zip(FIXED_CROP_NAMES_3D, crops, strict=True) if not name.endswith("C")]
    assert len(octants) == 8
    for crop in octants:
        coverage[crop.flatten()] += 1
    assert torch.all(coverage == 1)

    boxes = fixed_crop_boxes(shape)
    assert boxes[4] == (slice(0, 40), slice(24, 72), slice(20, 60))
    assert boxes[9] == (slice(40, 80), slice(24, 72), slice(20, 60))
    torch.testing.assert_close(crops[9], img[:, 40:80, 24:72, 20:60])
    # order: half 0 (TL, TR, BL, BR, C) then half 1
    assert crops[0][0, 0, 0, 0] == 0
    assert crops[6][0, 0, 0, 0] == img[0, 40, 0, 40]  # h1-TR


def test_3d_small_odd_volume():
    img = index_image(5, 6, 4)
    crops = FixedCrops()(img)
    assert all(crop.shape == (1, 2, 3, 2) for crop in crops)
    assert crops[5][0, 0, 0, 0] == img[0, 3, 0, 0]  # second half starts at 5 - 2
    assert crops[9][0, -1, -1, -1] == img[0, 4, 3, 2]  # h1-C ends at (4, 1 + 3 - 1, 1 + 2 - 1)


def test_four_crop_variant():
    assert len(FixedCrops(include_center=False)(index_image(8, 8))) == 4
    assert len(FixedCrops(include_center=False)(index_image(4, 6, 6))) == 8
    assert fixed_crop_names(2, include_center=False) == ("TL", "TR", "BL", "BR")
    assert fixed_crop_names(2) == FIXED_CROP_NAMES_2D
    assert len(fixed_crop_names(3, include_center=False)) == 8


@pytest.mark.parametrize("shape", [(1, 8), (8, 1), (4, 1, 4)])
def test_size_one_axis_raises(shape):
    with pytest.raises(ValueError, match="spatial shape"):
        fixed_crop_boxes(shape)
    with pytest.raises(ValueError, match="spatial shape"):
        FixedCrops()(torch.zeros(1, *shape))


def test_numpy_in_numpy_out_and_metatensor_affine():
    crops = FixedCrops()(np.arange(64).reshape(1, 8, 8))
    assert isinstance(crops[3], np.ndarray) and crops[3][0, 0, 0] == 36
    meta = MetaTensor(index_image(8, 8).float())
    br = FixedCrops()(meta)[3]
    assert isinstance(br, MetaTensor)
    assert br.affine[0, 3] == 4 and br.affine[1, 3] == 4


def test_fixed_cropsd_pairs_image_and_heatmap():
    image = index_image(16, 16).float().repeat(3, 1, 1)
    heatmap = index_image(4, 4).float()
    samples = FixedCropsd()({"image": image, "heatmap": heatmap, "id": "img-7", "label": 1})
    assert [s["crop_index"] for s in samples] == [0, 1, 2, 3, 4]
    assert all(s["id"] == "img-7" and s["label"] == 1 for s in samples)
    torch.testing.assert_close(samples[0]["heatmap"], heatmap[:, :2, :2])
    torch.testing.assert_close(samples[0]["image"], image[:, :8, :8])
    torch.testing.assert_close(samples[3]["heatmap"], heatmap[:, 2:, 2:])
    torch.testing.assert_close(samples[3]["image"], image[:, 8:, 8:])
    torch.testing.assert_close(samples[4]["heatmap"], heatmap[:, 1:3, 1:3])
    torch.testing.assert_close(samples[4]["image"], image[:, 4:12, 4:12])
    # the same relative position: image crop offset / 4 == heatmap crop offset
    for s in samples:
        image_row, image_col = divmod(int(s["image"][0, 0, 0]), 16)
        heat_row, heat_col = divmod(int(s["heatmap"][0, 0, 0]), 4)
        assert (image_row // 4, image_col // 4) == (heat_row, heat_col)


def test_image_crops_are_cut_on_the_heatmap_grid_where_the_centres_of_their_own_shapes_disagree():
    from camcontrast_monai.transforms import SelectFixedCropd, paired_crop_boxes

    # a 96-px image over a 6-cell heatmap (stride 16): by its own shape the image's centre crop starts at pixel 24,
    # the heatmap's at cell 1 = pixel 16; on the heatmap's grid both start there
    boxes = paired_crop_boxes({"image": (96, 96), "heatmap": (6, 6)})
    assert boxes["heatmap"][4] == (slice(1, 4), slice(1, 4))
    assert boxes["image"][4] == (slice(16, 64), slice(16, 64))
    assert boxes["image"][:4] == fixed_crop_boxes((96, 96))[:4]  # the corners agree either way
    # 3D, the paper's 80x96x80 volume over 10x12x10: the in-plane centre crop on the last axis starts at 16, not 20
    volume = paired_crop_boxes({"image": (80, 96, 80), "heatmap": (10, 12, 10)})["image"]
    assert volume[4] == (slice(0, 40), slice(24, 72), slice(16, 56))
    # an image that is no integer multiple of its heatmap keeps the boxes of its own shape
    assert paired_crop_boxes({"image": (100, 100), "heatmap": (6, 6)})["image"] == fixed_crop_boxes((100, 100))
    sample = {"image": index_image(96, 96).float(), "heatmap": index_image(6, 6).float(), "crop_index": 4}
    cropped = SelectFixedCropd()(sample)
    assert int(cropped["image"][0, 0, 0]) == 16 * 96 + 16 and int(cropped["heatmap"][0, 0, 0]) == 1 * 6 + 1
    assert [c["image"].shape for c in FixedCropsd()(sample)] == [(1, 48, 48)] * 5


def test_fixed_cropsd_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="different numbers"):
        FixedCropsd()({"image": torch.zeros(1, 8, 8, 8), "heatmap": torch.zeros(1, 4, 4)})


def test_select_fixed_crop_returns_crop_k():
    image = index_image(6, 8, 10)
    heatmap = index_image(2, 4, 4)
    all_samples = FixedCropsd()({"image": image, "heatmap": heatmap, "id": "a"})
    for k in range(10):
        one = SelectFixedCropd()({"image": image, "heatmap": heatmap, "id": "a", "crop_index": k})
        torch.testing.assert_close(one["image"], all_samples[k]["image"])
        torch.testing.assert_close(one["heatmap"], all_samples[k]["heatmap"])
        assert one["id"] == "a" and one["crop_index"] == k
    torch.testing.assert_close(
        SelectFixedCrop()(index_image(8, 8), torch.tensor(4)), index_image(8, 8)[:, 2:6, 2:6]
    )
    with pytest.raises(IndexError, match="out of range"):
        SelectFixedCrop(include_center=False)(index_image(8, 8), 4)
