import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from camcontrast_monai.report import (
    heatmap_mask_auc,
    localisation_summary,
    markdown_table,
    pointing_game,
    roc_auc,
    save_bar_chart,
    save_curves,
    save_heatmap_overlays,
    upsample_heatmaps,
    write_json,
)


def quadrant_case():
    """Two 32x32 images with 2x2 heatmaps pointing top-left; lesions top-left (hit) and bottom-right (miss)."""
    heatmaps = torch.tensor([[0.9, 0.1], [0.2, 0.3]]).expand(2, 1, 2, 2).clone()
    lesions = torch.zeros(2, 32, 32, dtype=torch.bool)
    lesions[0, 3:6, 10:12] = True
    lesions[1, 20:25, 28:30] = True
    return heatmaps, lesions


def brute_force_auc(scores, labels):
    positives, negatives = scores[labels], scores[~labels]
    difference = positives[:, None] - negatives[None, :]
    return float(((difference > 0).double() + 0.5 * (difference == 0).double()).mean())


# --- pointing game -------------------------------------------------------------------------------


def test_pointing_game_hit_and_miss():
    heatmaps, lesions = quadrant_case()
    assert pointing_game(heatmaps, lesions) == 0.5
    assert pointing_game(heatmaps, lesions[:, None]) == 0.5  # (N, 1, H, W) masks too


def test_pointing_game_ignores_images_without_lesions_and_is_nan_without_any():
    heatmaps, lesions = quadrant_case()
    heatmaps = torch.cat([heatmaps, torch.rand(1, 1, 2, 2)])
    lesions = torch.cat([lesions, torch.zeros(1, 32, 32, dtype=torch.bool)])
    assert pointing_game(heatmaps, lesions) == 0.5
    assert math.isnan(pointing_game(heatmaps, torch.zeros_like(lesions)))


def test_pointing_game_cell_footprint_uses_proportional_mapping():
    # 3 cells over 10 pixels: cell 1 spans pixels floor(10/3)=3 .. floor(20/3)=6 (exclusive)
    heatmap = torch.zeros(1, 1, 3, 3)
    heatmap[0, 0, 1, 1] = 1.0
    for row, expected in [(2, 0.0), (3, 1.0), (5, 1.0), (6, 0.0)]:
        lesions = torch.zeros(1, 10, 10, dtype=torch.bool)
        lesions[0, row, 4] = True
        assert pointing_game(heatmap, lesions) == expected, row


def test_pointing_game_ties_take_the_first_cell_and_flat_maps_miss():
    lesions = torch.zeros(1, 32, 32, dtype=torch.bool)
    lesions[0, 20, 20] = True  # bottom-right cell only
    tied = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert pointing_game(tied, lesions) == 0.0
    lesions[0, 0, 0] = True  # now the top-left cell (which a flat map's argmax would pick) holds a lesion too
    assert pointing_game(torch.zeros(1, 1, 2, 2), lesions) == 0.0


def test_pointing_game_3d():
    heatmaps = torch.zeros(2, 1, 2, 2, 2)
    heatmaps[0, 0, 1, 0, 1] = 1.0
    heatmaps[1, 0, 0, 0, 0] = 1.0
    lesions = torch.zeros(2, 16, 16, 16, dtype=torch.bool)
    lesions[:, 12, 3, 9] = True  # inside depth cell 1, row cell 0, column cell 1
    assert pointing_game(heatmaps, lesions) == 0.5


# --- AUC -----------------------------------------------------------------------------------------


def test_auc_perfect_inverted_and_constant():
    torch.manual_seed(0)
    lesions = torch.rand(3, 16, 16) > 0.8
    perfect = lesions[:, None].float()
    assert heatmap_mask_auc(perfect, lesions) == 1.0
    assert heatmap_mask_auc(1.0 - perfect, lesions) == 0.0
    assert heatmap_mask_auc(torch.full_like(perfect, 0.3), lesions) == 0.5


def test_auc_with_ties_matches_a_hand_count():
    # positives 0.5, 0.9; negatives 0.1, 0.5, 0.5: pairs won 1 + 0 + 0 + 1 + 1 + 1 = 4, tied 2 -> (4 + 1) / 6
    scores = torch.tensor([0.5, 0.9, 0.1, 0.5, 0.5])
    labels = torch.tensor([True, True, False, False, False])
    assert roc_auc(scores, labels) == pytest.approx(5 / 6)


def test_auc_matches_brute_force_pairwise_count():
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        scores = torch.randint(0, 12, (300,), generator=generator).float() / 11  # plenty of ties
        labels = torch.rand(300, generator=generator) < 0.3
        assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)


def test_auc_upsamples_heatmaps_bilinearly_and_pools_lesion_images_only():
    generator = torch.Generator().manual_seed(2)
    heatmaps = torch.rand(3, 1, 4, 4, generator=generator)
    lesions = torch.rand(3, 20, 20, generator=generator) > 0.7
    lesions[2] = False  # contributes nothing, even though its heatmap is random
    upsampled = F.interpolate(heatmaps[:2], size=(20, 20), mode="bilinear", align_corners=False)
    expected = brute_force_auc(upsampled.flatten(), lesions[:2].flatten())
    assert heatmap_mask_auc(heatmaps, lesions) == pytest.approx(expected, abs=1e-12)


def test_auc_restricted_to_field_of_view():
    # inside the FOV the heatmap ranks lesions perfectly; outside it is high on background pixels
    heatmap = torch.zeros(1, 1, 8, 8)
    lesions = torch.zeros(1, 8, 8, dtype=torch.bool)
    lesions[0, 2:4, 2:4] = True
    heatmap[0, 0, 2:4, 2:4] = 0.8
    heatmap[0, 0, :, 6:] = 1.0
    fov = torch.ones(1, 8, 8, dtype=torch.bool)
    fov[0, :, 6:] = False
    assert heatmap_mask_auc(heatmap, lesions, fov) == 1.0
    assert heatmap_mask_auc(heatmap, lesions) == pytest.approx(
        brute_force_auc(heatmap.flatten(), lesions.flatten())
    )
    assert heatmap_mask_auc(heatmap, lesions) < 1.0


def test_auc_3d_and_nan_when_one_class_is_missing():
    lesions = torch.zeros(1, 6, 6, 6, dtype=torch.bool)
    lesions[0, :3] = True
    heatmap = torch.zeros(1, 1, 2, 2, 2)
    heatmap[0, 0, 0] = 1.0
    assert heatmap_mask_auc(heatmap, lesions) == 1.0
    assert math.isnan(heatmap_mask_auc(heatmap, torch.ones_like(lesions)))
    assert math.isnan(heatmap_mask_auc(heatmap, torch.zeros_like(lesions)))


def test_upsample_keeps_range_and_shape():
    heatmaps = torch.rand(2, 1, 3, 5)
    up = upsample_heatmaps(heatmaps, (48, 80))
    assert up.shape == (2, 1, 48, 80)
    assert heatmaps.min() <= up.min() and up.max() <= heatmaps.max()
    assert torch.equal(upsample_heatmaps(heatmaps, (3, 5)), heatmaps)


def test_localisation_summary_counts():
    heatmaps, lesions = quadrant_case()
    heatmaps = torch.cat([heatmaps, torch.rand(1, 1, 2, 2)])
    lesions = torch.cat([lesions, torch.zeros(1, 32, 32, dtype=torch.bool)])
    summary = localisation_summary(heatmaps.numpy(), lesions.numpy())
    assert summary["pointing_game"] == 0.5
    assert summary["n_images"] == 3 and summary["n_images_with_lesions"] == 2
    assert 0.0 <= summary["heatmap_mask_auc"] <= 1.0


# --- figures -------------------------------------------------------------------------------------


def assert_png(path, min_side=200):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side
        image.load()
        return np.asarray(image.convert("RGB"))


def test_overlays_grey_and_rgb(tmp_path):
    torch.manual_seed(0)
    grey = torch.rand(3, 1, 64, 64)
    heatmaps = torch.rand(3, 1, 4, 4)
    lesions = torch.zeros(3, 64, 64, dtype=torch.bool)
    lesions[:, 10:20, 30:40] = True
    path = save_heatmap_overlays(
        grey, heatmaps, tmp_path / "nested" / "grey.png", ncols=2, lesion_masks=lesions
    )
    assert_png(path)
    rgb = np.random.default_rng(0).random((2, 3, 48, 80))
    path = save_heatmap_overlays(
        rgb, heatmaps[:2], tmp_path / "rgb.png", titles=["abnormal p=0.93", "normal p=0.08"]
    )
    assert_png(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nested", "rgb.png"]  # no temporary files left


def test_overlay_keeps_row_zero_at_the_top(tmp_path):
    # black image with a pure red square in its top-left corner, heatmap hot in the same corner
    image = np.zeros((1, 3, 64, 64))
    image[0, 0, :16, :16] = 1.0
    heatmap = np.zeros((1, 1, 4, 4))
    heatmap[0, 0, 0, 0] = 1.0
    pixels = assert_png(save_heatmap_overlays(image, heatmap, tmp_path / "orientation.png", titles=[""]), 150)
    left_half = pixels[:, : pixels.shape[1] // 2].astype(int)
    red = (left_half[..., 0] > 200) & (left_half[..., 1] < 40) & (left_half[..., 2] < 40)
    black = left_half.max(axis=-1) < 20
    panel_rows, panel_cols = np.nonzero(red | black)
    red_rows, red_cols = np.nonzero(red)
    panel_height = panel_rows.max() - panel_rows.min()
    panel_width = panel_cols.max() - panel_cols.min()
    assert red_rows.max() - panel_rows.min() < 0.3 * panel_height
    assert red_cols.max() - panel_cols.min() < 0.3 * panel_width


def test_curves_single_panel_and_panels(tmp_path):
    rng = np.random.default_rng(0)
    loss = [(i, 2.0 * math.exp(-i / 200) + 0.2 * rng.random()) for i in range(600)]
    path = save_curves(
        {"loss": loss, "cross-entropy": [(i, y * 0.7) for i, y in loss]}, tmp_path / "one.png", "stage 1"
    )
    assert_png(path)
    panels = {
        "stage 1": {"loss": loss, "val AUC": [(100 * e, 0.5 + 0.04 * e) for e in range(6)]},
        "stage 2": {"NT-Xent": [4.0 - 0.01 * i + 0.3 * rng.random() for i in range(300)]},
    }
    ylabels = {"stage 1": "loss / AUC", "stage 2": "NT-Xent"}
    path = save_curves(
        panels, tmp_path / "panels.png", "CAMContrast training", ylabel=ylabels, smoothing_window=10
    )
    assert_png(path)


def test_bar_chart_with_errors_and_gaps(tmp_path):
    results = {
        "joint accuracy": {"random": 0.41, "CAMContrast": 0.52},
        "Dice": {"random": 0.61, "CAMContrast": 0.66, "SimCLR": float("nan")},
    }
    errors = {"joint accuracy": {"random": 0.02, "CAMContrast": 0.01}, "Dice": {"random": 0.03}}
    assert_png(save_bar_chart(results, tmp_path / "bars.png", "downstream", errors=errors, ylabel="score"))


# --- tables --------------------------------------------------------------------------------------


def test_markdown_table_exact():
    rows = [
        {"method": "random", "accuracy": (0.5123, 0.0312), "auc": np.float32(0.75), "seeds": 3},
        {"method": "CAM|Contrast", "accuracy": (0.6, float("nan")), "auc": float("nan")},
    ]
    assert markdown_table(rows) == (
        "| method | accuracy | auc | seeds |\n"
        "| --- | --- | --- | --- |\n"
        "| random | 0.512 ± 0.031 | 0.750 | 3 |\n"
        "| CAM\\|Contrast | 0.600 | n/a |  |\n"
    )
    assert (
        markdown_table(rows, columns=["auc", "method"], float_format="{:.1f}").splitlines()[2]
        == "| 0.8 | random |"
    )


def test_write_json_converts_nan_and_numpy(tmp_path):
    path = write_json(
        {
            "b": float("nan"),
            "a": np.float64(0.25),
            "n": np.int64(3),
            "t": torch.tensor([1.5, 2.0]),
            "s": (1, 2),
        },
        tmp_path / "out" / "metrics.json",
    )
    text = path.read_text()
    assert json.loads(text) == {"a": 0.25, "b": None, "n": 3, "s": [1, 2], "t": [1.5, 2.0]}
    assert text.index('"a"') < text.index('"b"') and "\n  " in text
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_umap_keeps_two_separated_clusters_apart_and_is_seeded():
    from camcontrast_monai.report.embedding_map import umap_embedding

    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (20, 16)), rng.normal(12, 1, (20, 16))])
    points = umap_embedding(features, seed=3)
    assert points.shape == (40, 2) and points.dtype == np.float32
    # every point's nearest 2-D neighbour is from its own cluster
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(40) * 1e9
    assert ((distances.argmin(axis=1) < 20) == (np.arange(40) < 20)).all()
    np.testing.assert_array_equal(points, umap_embedding(features, seed=3))
    with pytest.raises(ValueError, match="at least 4 points"):
        umap_embedding(features[:3])
