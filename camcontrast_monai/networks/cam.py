"""Class activation maps (Eq. 1) and their min-max normalisation into heatmaps."""

from __future__ import annotations

import torch

__all__ = ["class_activation_maps", "minmax_normalize"]


def class_activation_maps(features: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of the paper: ``M^c(x) = sum_i w_i^c F_i(x)``.

    Args:
        features: last convolutional feature maps ``F``, shape ``(B, K, *spatial)``.
        class_weights: the linear classifier's weights ``w``, shape ``(num_classes, K)``.

    Returns:
        raw (unnormalised) CAMs ``(B, num_classes, *spatial)`` at feature-map resolution.
    """
    if features.shape[1] != class_weights.shape[1]:
        raise ValueError(
            f"features have {features.shape[1]} channels but the classifier weights expect {class_weights.shape[1]}"
        )
    return torch.einsum("bk...,ck->bc...", features, class_weights.to(features.dtype))


def minmax_normalize(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale every map of every sample on its own to [0, 1]; a constant map becomes all zeros.

    ``maps`` is ``(B, C, *spatial)``; the min and max are taken over the spatial axes only, so no
    sample or class is ever scaled by another's range (the public reference broadcasts a ``(B,1,h,w)``
    map against ``(B,1,1)`` statistics and mixes samples).
    """
    flat = maps.flatten(2)
    low = flat.amin(dim=2, keepdim=True)
    span = flat.amax(dim=2, keepdim=True) - low
    # where the map is flat there is no evidence of a region: zeros, never 0/0
    scaled = torch.where(span > eps, (flat - low) / span.clamp_min(eps), torch.zeros_like(flat))
    return scaled.view_as(maps)
