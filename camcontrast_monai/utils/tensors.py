"""Tensors without MONAI's metadata, for the steps that do not need it."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["plain_tensor"]


def plain_tensor(value: Any) -> torch.Tensor:
    """``value`` as a plain ``torch.Tensor``: a MONAI ``MetaTensor`` without its metadata, anything else
    through ``torch.as_tensor``.

    A MetaTensor passes its metadata on through every operation it meets (a Python call per operation, in the
    forward and in the backward pass), so a training or inference step on one is measurably slower than on
    the same values as a plain tensor.
    """
    as_tensor = getattr(value, "as_tensor", None)  # MetaTensor.as_tensor; monai is not imported at this layer
    return as_tensor() if callable(as_tensor) else torch.as_tensor(value)
