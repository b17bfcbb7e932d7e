"""Helpers for multi-process (DDP) training: global-batch gathering that keeps gradients."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["check_global_batch", "distributed_world_size", "gather_with_grad"]


def distributed_world_size() -> int:
    """Number of processes in the default process group, 1 when none is initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGather(torch.autograd.Function):
    """All-gather along dim 0 that keeps gradients.

    Forward: every process gets the rows of all processes in rank order. Backward: every process holds
    the same loss over the gathered batch, so each holds the full gradient of that loss with respect to
    all gathered rows; the gradients are summed over processes and each keeps the slice of its own rows.
    The sum (N times the gradient of one process's loss) is what DDP's averaging of parameter
    gradients over N processes divides back out, so N processes with B/N rows each train exactly like
    one process with B rows.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world_size = dist.get_world_size()
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (rows = local batch) from every process in rank order, keeping the autograd graph.

    Without an initialised process group (or with one process) the tensor is returned as is. All
    processes must pass the same number of rows (``drop_last=True`` loaders with ``DistributedSampler``).
    """
    if distributed_world_size() == 1:
        return tensor
    return _AllGather.apply(tensor)


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
