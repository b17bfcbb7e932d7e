"""2-D maps of learnt representations, as in the paper's Fig. 8: UMAP (umap-learn) and the figure."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from camcontrast_monai.report.figures import save_figure

__all__ = ["save_embedding_maps", "umap_embedding"]

CROP_POSITIONS_2D = ("top left", "top right", "bottom left", "bottom right", "centre")


def umap_embedding(features: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """UMAP of ``features`` ``(n, d)`` to ``(n, 2)`` points, the paper's Fig. 8 projection (McInnes et al. 2018).

    ``seed`` makes the layout reproducible (umap-learn then runs single-threaded); ``n_neighbors`` is
    capped at ``n - 1`` so that a report's few dozen crops work too.
    """
    import umap  # numba compiles on first import: only the commands that draw a map pay for it

    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] < 4:
        raise ValueError(f"a UMAP needs an (n, d) array of at least 4 points, got shape {features.shape}")
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, features.shape[0] - 1), random_state=seed)
    return reducer.fit_transform(features).astype(np.float32)


def save_embedding_maps(
    maps: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: str | os.PathLike, title: str
) -> Path:
    """One row per method: its 2-D points coloured by crop position (left) and by coarse label (right).

    ``maps[name] = (points (n, 2), crop positions (n,), labels (n,))``; label 0 is normal, 1 abnormal.
    """
    figure = Figure(figsize=(9.0, 3.8 * len(maps)), layout="constrained")
    axes = figure.subplots(len(maps), 2, squeeze=False)
    for row, (name, (points, positions, labels)) in enumerate(maps.items()):
        for position in np.unique(positions):
            chosen = positions == position
            label = CROP_POSITIONS_2D[position] if position < len(CROP_POSITIONS_2D) else f"crop {position}"
            axes[row, 0].scatter(points[chosen, 0], points[chosen, 1], s=8, label=label, color=f"C{position % 10}")
        for value, label in ((0, "normal"), (1, "abnormal")):
            chosen = labels == value
            axes[row, 1].scatter(points[chosen, 0], points[chosen, 1], s=8, label=label, color=("C2", "C3")[value])
        axes[row, 0].set_title(f"{name}: crop position")
        axes[row, 1].set_title(f"{name}: image label")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=7, markerscale=1.5)
    figure.suptitle(title)
    return save_figure(figure, path)
