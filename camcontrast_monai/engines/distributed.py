"""Helpers for multi-process (DDP) training: CAMs through DDP, buffer broadcasts, evaluation samplers, batch checks.

The process-group queries and the gradient-keeping gather live in ``camcontrast_monai.utils.distributed``
(the losses need them too) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sized

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import DistributedSampler
from torch import nn

from camcontrast_monai.utils.distributed import distributed_rank, distributed_world_size, gather_with_grad

__all__ = [
    "BroadcastBuffers",
    "LogitsAndCAMs",
    "broadcast_module_state",
    "check_global_batch",
    "distributed_rank",
    "distributed_world_size",
    "evaluation_sampler",
    "gather_with_grad",
]


def broadcast_module_state(module: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from process ``src`` into the same module of every process.

    A collective: every process must call it. Without a process group (or with one process) it does nothing.
    """
    if distributed_world_size() == 1:
        return
    for tensor in module.state_dict().values():  # detached views sharing storage with the module's tensors
        dist.broadcast(tensor, src=src)


def evaluation_sampler(dataset: Sized) -> DistributedSampler:
    """Sampler that gives each process a disjoint share of ``dataset``, together covering it exactly once.

    For validation and test under DDP: no padding duplicates (``even_divisible=False``), no shuffling.
    MONAI's cumulative metrics gather the shares, so every process gets the metric of the whole set.
    Raises unless every process gets at least one sample: a process with nothing to evaluate would skip
    the metrics' gather that the others wait in.
    """
    world_size = distributed_world_size()
    if len(dataset) < world_size:
        raise ValueError(
            f"an evaluation set of {len(dataset)} samples cannot be shared by {world_size} processes: "
            "each needs at least one"
        )
    return DistributedSampler(
        dataset, even_divisible=False, num_replicas=world_size, rank=distributed_rank(), shuffle=False
    )


class BroadcastBuffers:
    """At every epoch end, copies rank 0's buffers (batch-norm running statistics) into every process.

    DDP broadcasts the buffers at the start of each forward, so after an epoch's last step each process
    holds the running statistics of its own last batch (where batch norm is not ``SyncBatchNorm``, as on
    the CPU). Attached to the trainer before the validation handler, it makes every process validate the
    model rank 0 saves, and end the run with the same weights. Every process must attach it.
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if distributed_world_size() == 1:
            return
        for buffer in self.network.buffers():
            dist.broadcast(buffer, src=0)


class LogitsAndCAMs(nn.Module):
    """``forward(x)`` returns ``classifier.forward_with_cams(x)``: logits and CAMs from one encoder pass.

    ``DistributedDataParallel`` exposes only ``forward``, and calling ``ddp.module.forward_with_cams`` would
    skip DDP's forward (its gradient-synchronisation setup and buffer broadcast). Wrapped in DDP, this
    module makes the stage-1 forward go through DDP; :class:`~camcontrast_monai.engines.Stage1Trainer`
    calls it when its network is a ``DistributedDataParallel``. Its state dict prefixes the classifier's
    keys with ``classifier.``: save ``classifier`` itself, so checkpoints load into the single-process
    network.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(classifier, "forward_with_cams", None)):
            raise TypeError(f"{type(classifier).__name__} has no forward_with_cams(x) -> (logits, cams)")
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier.forward_with_cams(x)


def check_global_batch(global_batch_size: int) -> int:
    """Per-process batch size for a global batch split over the processes; raises unless it splits evenly.

    The multi-GPU configs give each of N processes ``global_batch_size // N`` pairs, so that the
    contrastive loss over the gathered batch has as many negatives as a single-GPU run with
    ``global_batch_size``; a remainder would silently shrink the global batch.
    """
    world_size = distributed_world_size()
    if global_batch_size < world_size or global_batch_size % world_size:
        raise ValueError(
            f"the global batch size {global_batch_size} must be a positive multiple of the number of processes "
            f"({world_size}): each process takes an equal share"
        )
    return global_batch_size // world_size
