"""Reporting: how well heatmaps localise lesions, figures people would rather look at, tables and JSON."""

from camcontrast_monai.report.figures import save_bar_chart, save_curves, save_heatmap_overlays
from camcontrast_monai.report.localisation import (
    heatmap_mask_auc,
    localisation_summary,
    pointing_game,
    roc_auc,
    upsample_heatmaps,
)
from camcontrast_monai.report.tables import markdown_table, write_json

__all__ = [
    "heatmap_mask_auc",
    "localisation_summary",
    "markdown_table",
    "pointing_game",
    "roc_auc",
    "save_bar_chart",
    "save_curves",
    "save_heatmap_overlays",
    "upsample_heatmaps",
    "write_json",
]
