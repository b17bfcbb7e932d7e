"""Optimisers chosen by name, so a config can take a task's optimiser from a table of tasks."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "named_optimizer"]

OPTIMIZERS = ("adamw", "sgd")


def named_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` for ``"adamw"``, ``torch.optim.SGD`` with ``momentum`` for ``"sgd"``.

    The paper fine-tunes IDRiD lesions with AdamW and disc/cup and vessels with SGD (appendix, Table A.1);
    the fundus segmentation config names each task's optimiser instead of branching on it in an expression.
    """
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
