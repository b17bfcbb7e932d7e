"""2-D maps of learnt representations (the paper's Fig. 8): an exact t-SNE in torch and the figure.

The paper uses UMAP; neither UMAP nor scikit-learn is a dependency here, and for the few hundred crops a
report shows, exact t-SNE (van der Maaten and Hinton 2008) is a few dozen lines and a few seconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["save_embedding_maps", "tsne", "tsne_affinities"]

CROP_POSITIONS_2D = ("top left", "top right", "bottom left", "bottom right", "centre")


def tsne_affinities(x: torch.Tensor, perplexity: float = 30.0, tol: float = 1e-5, max_steps: int = 100) -> torch.Tensor:
    """Symmetric t-SNE input affinities ``P = (P_j|i + P_i|j) / 2n`` with each row's Gaussian bandwidth set by
    bisection so that its entropy is ``log(perplexity)`` (van der Maaten and Hinton 2008, section 2)."""
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    perplexity = min(perplexity, (n - 1) / 3)
    distances = torch.cdist(x.double(), x.double()).pow(2)
    target = math.log(perplexity)
    beta = torch.ones(n, dtype=torch.float64)
    low = torch.zeros(n, dtype=torch.float64)
    high = torch.full((n,), math.inf, dtype=torch.float64)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    for _ in range(max_steps):
        logits = (-distances * beta[:, None]).masked_fill(~off_diagonal, -math.inf)
        p = torch.softmax(logits, dim=1)
        entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
        if (entropy - target).abs().max() < tol:
            break
        too_flat = entropy > target  # bandwidth too wide: increase beta
        low = torch.where(too_flat, beta, low)
        high = torch.where(too_flat, high, beta)
        beta = torch.where(torch.isinf(high), beta * 2, (low + high) / 2)
    return (p + p.T) / (2 * n)


def tsne(
    x: torch.Tensor, perplexity: float = 30.0, steps: int = 750, learning_rate: float = 200.0, seed: int = 0
) -> torch.Tensor:
    """Exact t-SNE of ``x`` ``(n, d)`` to ``(n, 2)``: gradient descent on KL(P || Q) with a Student-t Q, with
    the original schedule (early exaggeration 12 and momentum 0.5 for 250 steps, then momentum 0.8)."""
    generator = torch.Generator().manual_seed(seed)
    p = tsne_affinities(x.float(), perplexity)
    y = torch.randn(x.shape[0], 2, generator=generator, dtype=torch.float64) * 1e-4
    velocity = torch.zeros_like(y)
    off_diagonal = ~torch.eye(x.shape[0], dtype=torch.bool)
    for step in range(steps):
        exaggeration, momentum = (12.0, 0.5) if step < 250 else (1.0, 0.8)
        kernel = (1 + torch.cdist(y, y).pow(2)).reciprocal() * off_diagonal
        q = kernel / kernel.sum()
        # dKL/dy_i = 4 sum_j (p_ij - q_ij) (1 + |y_i - y_j|^2)^-1 (y_i - y_j)
        weights = (exaggeration * p - q) * kernel
        grad = 4 * (weights.sum(dim=1, keepdim=True) * y - weights @ y)
        velocity = momentum * velocity - learning_rate * grad
        y = y + velocity
    return y.float()


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
