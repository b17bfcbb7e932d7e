"""The process group as the losses and engines see it: world size, rank, and a gather that keeps gradients."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional  # noqa: F401  (gather_with_grad)

__all__ = ["distributed_rank", "distributed_world_size", "gather_with_grad"]


def distributed_world_size() -> int:
    """Number of processes in the default process group, 1 when none is initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def distributed_rank() -> int:
    """Rank of this process in the default process group, 0 when none is initialised."""
    return dist.get_rank() if distributed_world_size() > 1 else 0


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (rows = local batch) from every process in rank order, keeping the autograd graph.

    Without an initialised process group (or with one process) the tensor is returned as is. All
    processes must pass the same number of rows (``drop_last=True`` loaders with ``DistributedSampler``).
    ``torch.distributed.nn.functional.all_gather`` does the gathering: its backward sums each row's
    gradient over the processes (every process holds the same loss over the gathered batch), which is
    N times one process's gradient, and DDP's averaging over N processes divides it back out; so N
    processes with B/N rows each train exactly like one process with B rows. (``torch.distributed.all_gather``
    and Ignite's ``idist.all_gather`` return values cut from the graph.)
    """
    if distributed_world_size() == 1:
        return tensor
    return torch.cat(torch.distributed.nn.functional.all_gather(tensor.contiguous()))
