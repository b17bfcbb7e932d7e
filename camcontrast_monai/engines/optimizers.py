"""Optimisers chosen by name, so a config can take a task's optimiser from a table of tasks."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "fused_supported", "named_optimizer"]

OPTIMIZERS = ("adamw", "sgd")

# device types on which torch's fused SGD and AdamW kernels run (torch >= 2.4 on CPUs)
FUSED_DEVICE_TYPES = ("cpu", "cuda")


def fused_supported(device: torch.device | str) -> bool:
    """Whether the bundles' optimisers (SGD, AdamW) take ``fused=True`` on ``device``: one kernel over every
    parameter instead of a loop of small operations per tensor.

    On 2 CPU cores, for the width-16 U-Net encoder of the demos (1.2M parameters in 44 tensors), an AdamW
    step took 3.8-8.7 ms fused against 22-55 ms, an SGD step with momentum 2-3 ms against 8-17 ms, with the
    same weights to 4e-9 after three steps; the bundles' ``fused_optimizer`` is this function of their device.
    """
    return torch.device(device).type in FUSED_DEVICE_TYPES


def named_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
    fused: bool | None = None,
) -> torch.optim.Optimizer:  # fmt: skip
    """``torch.optim.AdamW`` for ``"adamw"``, ``torch.optim.SGD`` with ``momentum`` for ``"sgd"``; ``fused`` as torch takes it.

    The paper fine-tunes IDRiD lesions with AdamW and disc/cup and vessels with SGD (appendix, Table A.1);
    the fundus segmentation config names each task's optimiser instead of branching on it in an expression.
    """
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
