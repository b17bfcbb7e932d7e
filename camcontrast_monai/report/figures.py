"""PNG figures for reports: heatmap overlays (as in Fig. 6 of the paper), training curves and bar charts.

Figures are plain ``matplotlib.figure.Figure`` objects saved straight to PNG (matplotlib renders them
with its Agg canvas), so nothing here touches pyplot or the global backend; every file is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from camcontrast_monai.report.localisation import upsample_heatmaps
from camcontrast_monai.utils.io import atomic_path

__all__ = ["save_bar_chart", "save_curves", "save_figure", "save_heatmap_overlays"]

Series = Sequence[tuple[float, float]] | Sequence[float]

_DPI = 100
_PANEL_INCHES = 2.6
_LESION_CONTOUR_COLOUR = "cyan"
# below this many points a curve is drawn as is; above it, automatic smoothing kicks in
_AUTO_SMOOTHING_MIN_POINTS = 50


def save_heatmap_overlays(
    images: torch.Tensor | np.ndarray,
    heatmaps: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    alpha: float = 0.45,
    lesion_masks: torch.Tensor | np.ndarray | None = None,
    cmap: str = "turbo",
) -> Path:
    """Grid of samples, each as two panels: the raw image and the image with its upsampled heatmap on top.

    Args:
        images: ``(N, C, H, W)`` in [0, 1], C = 1 (grey) or 3 (RGB); row 0 is drawn at the top.
        heatmaps: ``(N, 1, h, w)`` in [0, 1], any resolution; upsampled bilinearly to ``(H, W)``.
        path: PNG file to write; parent folders are created.
        titles: one per sample (e.g. "abnormal p=0.93"), shown above its raw panel.
        ncols: samples per row (so the grid has ``2 * ncols`` panel columns).
        alpha: opacity of the heatmap over the image.
        lesion_masks: optional ``(N, H, W)`` or ``(N, 1, H, W)`` ground truth, outlined on the overlay.
        cmap: matplotlib colormap for the heatmap; a shared colour bar shows its 0-1 scale.

    Returns:
        ``path``.
    """
    images = _to_numpy(images).astype(np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3, got {images.shape}")
    n_samples, _, height, width = images.shape
    heatmaps = upsample_heatmaps(heatmaps, (height, width))[:, 0].cpu().numpy()
    if heatmaps.shape[0] != n_samples:
        raise ValueError(f"{n_samples} images but {heatmaps.shape[0]} heatmaps")
    if titles is not None and len(titles) != n_samples:
        raise ValueError(f"{n_samples} images but {len(titles)} titles")
    if lesion_masks is not None:
        lesion_masks = _to_numpy(lesion_masks).astype(bool).reshape(n_samples, height, width)

    ncols = max(1, min(ncols, n_samples))
    nrows = math.ceil(n_samples / ncols)
    figure = Figure(figsize=(2 * ncols * _PANEL_INCHES, nrows * _PANEL_INCHES + 0.6), layout="constrained")
    axes = figure.subplots(nrows, 2 * ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    scale = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap)
    for index in range(n_samples):
        raw_ax, overlay_ax = axes[index // ncols, 2 * (index % ncols) : 2 * (index % ncols) + 2]
        picture = _displayable(images[index])
        raw_ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        raw_ax.set_title(titles[index] if titles is not None else f"image {index}", fontsize=9)
        overlay_ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        overlay_ax.imshow(
            heatmaps[index], cmap=scale.cmap, norm=scale.norm, alpha=alpha, interpolation="nearest"
        )
        overlay_ax.set_title("CAM heatmap", fontsize=9)
        if lesion_masks is not None and lesion_masks[index].any():
            overlay_ax.contour(
                lesion_masks[index].astype(np.float32),
                levels=[0.5],
                colors=_LESION_CONTOUR_COLOUR,
                linewidths=0.8,
            )
    figure.colorbar(scale, ax=axes, orientation="horizontal", fraction=0.04, aspect=60, label="heatmap")
    return save_figure(figure, path)


def save_curves(
    curves: Mapping[str, Series] | Mapping[str, Mapping[str, Series]],
    path: str | os.PathLike,
    title: str,
    xlabel: str = "iteration",
    ylabel: str | Mapping[str, str] = "loss",
    smoothing_window: int | None = None,
) -> Path:
    """Line plot of named series, or one subplot per panel when ``curves`` maps panel names to series.

    A series is a list of ``(x, y)`` points or of bare y values (x = 0, 1, ...). Noisy per-iteration
    losses read better smoothed: with a window > 1 the trailing moving average is drawn bold over the
    faint raw curve. ``smoothing_window=None`` picks ``len // 25`` for series of at least 50 points and
    no smoothing for shorter ones (e.g. one validation score per epoch); 0 or 1 turns it off.
    ``ylabel`` may map panel names to their own labels (a loss panel next to an AUC panel).
    """
    if not curves:
        raise ValueError("no curves to plot")
    is_panelled = all(isinstance(series, Mapping) for series in curves.values())
    panels = curves if is_panelled else {"": curves}
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    figure = Figure(figsize=(5.0 * ncols, 3.6 * nrows), layout="constrained")
    axes = list(figure.subplots(nrows, ncols, squeeze=False).flat)
    for ax, (panel_name, panel) in zip(axes, panels.items(), strict=False):
        for colour_index, (name, series) in enumerate(panel.items()):
            _plot_series(ax, name, series, f"C{colour_index % 10}", smoothing_window)
        ax.set_title(panel_name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel.get(panel_name, "") if isinstance(ylabel, Mapping) else ylabel)
        ax.grid(alpha=0.3)
        if panel:
            ax.legend(fontsize=8)
    for unused_ax in axes[len(panels) :]:
        unused_ax.set_axis_off()
    figure.suptitle(title)
    return save_figure(figure, path)


def save_bar_chart(
    results: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    title: str,
    errors: Mapping[str, Mapping[str, float]] | None = None,
    ylabel: str = "",
    value_format: str = "{:.3f}",
) -> Path:
    """Grouped bars: one group per outer key (e.g. task), one coloured bar per inner key (e.g. init method).

    ``errors`` has the same nesting (e.g. std over seeds) and adds error bars where given. Each bar is labelled with
    its value; missing or NaN values leave a gap rather than a zero-height bar that reads as a result.
    """
    groups = list(results)
    members = list(dict.fromkeys(member for group in results.values() for member in group))
    bar_width = 0.8 / max(len(members), 1)
    figure = Figure(
        figsize=(max(5.0, 1.2 + len(groups) * (0.5 + 0.45 * len(members))), 4.2), layout="constrained"
    )
    ax = figure.subplots()
    centres = np.arange(len(groups), dtype=float)
    for member_index, member in enumerate(members):
        values = np.array([results[group].get(member, math.nan) for group in groups], dtype=float)
        spreads = None
        if errors is not None:
            spreads = np.array([errors.get(group, {}).get(member, math.nan) for group in groups], dtype=float)
        present = ~np.isnan(values)
        if not present.any():
            continue
        offsets = centres[present] + (member_index - (len(members) - 1) / 2) * bar_width
        bars = ax.bar(
            offsets,
            values[present],
            bar_width,
            yerr=None if spreads is None else spreads[present],
            capsize=3,
            label=member,
            color=f"C{member_index % 10}",
        )
        ax.bar_label(bars, labels=[value_format.format(v) for v in values[present]], fontsize=7, padding=2)
    ax.set_xticks(centres, groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    if members:
        ax.legend(fontsize=8)
    return save_figure(figure, path)


def _plot_series(ax, name: str, series: Series, colour: str, smoothing_window: int | None) -> None:
    x, y = _series_arrays(series)
    if y.size == 0:
        return
    window = smoothing_window if smoothing_window is not None else _automatic_window(y.size)
    if window > 1:
        ax.plot(x, y, color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(
            x,
            _trailing_moving_average(y, window),
            color=colour,
            linewidth=2.0,
            label=f"{name} (avg {window})",
        )
    else:
        ax.plot(
            x, y, color=colour, linewidth=1.5, marker="o" if y.size <= 30 else None, markersize=3, label=name
        )


def _series_arrays(series: Series) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(series, dtype=float)
    if points.ndim == 1:
        return np.arange(points.size, dtype=float), points
    if points.ndim == 2 and points.shape[1] == 2:
        return points[:, 0], points[:, 1]
    raise ValueError(f"a series must be y values or (x, y) pairs, got an array of shape {points.shape}")


def _automatic_window(length: int) -> int:
    return length // 25 if length >= _AUTO_SMOOTHING_MIN_POINTS else 1


def _trailing_moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start), so the curve keeps its x."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _displayable(image: np.ndarray) -> np.ndarray:
    """Channel-first [0, 1] image -> what ``imshow`` expects: ``(H, W)`` grey or ``(H, W, 3)`` RGB."""
    image = np.clip(image, 0.0, 1.0)
    return image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)


def _to_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically, in the one style every report picture shares."""
    with atomic_path(path) as temporary:
        figure.savefig(
            temporary, format="png", dpi=_DPI, facecolor="white", bbox_inches="tight", pad_inches=0.1
        )
    return Path(path)
