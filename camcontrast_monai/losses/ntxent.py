"""Stage-2 loss: symmetric NT-Xent over image and heatmap projections (Eq. 5, Algorithm 1 lines 24-29)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from camcontrast_monai.utils.distributed import gather_with_grad

__all__ = ["ImageHeatmapNTXentLoss", "NTXentLoss", "SimCLRLoss", "collapsed_ntxent", "nt_xent", "ntxent_floor"]


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float, gather_distributed: bool = True) -> torch.Tensor:
    """Eq. 5, ``-log exp(z_i.z_j/tau) / sum_{k != i} exp(z_i.z_k/tau)``, averaged over all 2B anchors.

    Row i of ``z_a`` and row i of ``z_b`` are a positive pair; each anchor's negatives are the other
    2B - 2 vectors of both sets. Inputs are L2-normalised here. The softmax is evaluated as a
    log-sum-exp (through ``cross_entropy``), so it stays finite at tau = 0.01 where a plain
    exp/sum (MONAI's ``ContrastiveLoss``) overflows to NaN. Computed in float32 even under autocast.

    With ``gather_distributed`` (the default) and an initialised ``torch.distributed`` process group, the
    projections of all processes are gathered first (with gradients,
    :func:`~camcontrast_monai.utils.distributed.gather_with_grad`), so the loss is over the global batch:
    every process returns the same value, and N processes with B/N pairs each give one process's loss
    and (after DDP's gradient averaging) gradients for B pairs. Without it each process contrasts its own
    B/N pairs only, as lightly's ``NTXentLoss(gather_distributed=False)`` does.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(f"expected two (B, D) projections of equal shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if gather_distributed:
        z_a, z_b = gather_with_grad(z_a), gather_with_grad(z_b)
    batch_size = z_a.shape[0]
    with torch.autocast(z_a.device.type, enabled=False):  # autocast would run the matmul in bf16/fp16
        z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
        similarity = z @ z.T / temperature
    self_pairs = torch.eye(2 * batch_size, dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_pairs, float("-inf"))  # k != i in the denominator
    anchors = torch.arange(batch_size, device=z.device)
    positives = torch.cat([anchors + batch_size, anchors])
    return F.cross_entropy(similarity, positives)


class NTXentLoss(nn.Module):
    """The symmetric NT-Xent of Eq. 5 as a module: ``loss(z_a, z_b)`` for two ``(B, D)`` projections, tau = 0.05.

    One loss serves both methods that use it: CAMContrast contrasts image with heatmap projections
    (Algorithm 1 lines 24-29), SimCLR (Chen et al. 2020) two augmented views of the same image, so the two
    differ only in their second view. ``gather_distributed``: see :func:`nt_xent`.

    We keep our own instead of MONAI's ``ContrastiveLoss``, which overflows to NaN at small temperatures
    (a plain exp/sum) and never gathers across processes.
    """

    def __init__(self, temperature: float = 0.05, gather_distributed: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return nt_xent(z_a, z_b, self.temperature, self.gather_distributed)


# the names CAMContrast's and SimCLR's configs and code have used: the same loss
ImageHeatmapNTXentLoss = NTXentLoss
SimCLRLoss = NTXentLoss


def collapsed_ntxent(batch_size: int) -> float:
    """Eq. 5 when every projection is the same vector: ``log(2B - 1)``, the value a collapsed stage 2 reports."""
    return math.log(2 * batch_size - 1)


def ntxent_floor(
    batch_size: int, n_identical: int, temperature: float = 0.05, dim: int = 128, steps: int = 400, seed: int = 0
) -> float:
    """The lowest Eq. 5 a batch can reach when ``n_identical`` of its heatmap projections are one vector.

    Every normal image's suppressed heatmap is all zeros, so the heatmap encoder maps all of them to
    one projection: for those pairs the positive cannot be told from the other normals' heatmaps, and
    the loss cannot go to zero. This minimises :func:`nt_xent` over free image projections and free
    heatmap projections, the ``n_identical`` tied to one shared vector (Adam from a seeded start), so a
    stage-2 loss can be read between its floor and :func:`collapsed_ntxent`. The minimum lies between
    ``n log n / B`` (each tied anchor at best ``log n``) and ``n log(2n - 1) / B`` (the tied pairs collapsed).
    """
    if not 0 <= n_identical <= batch_size or batch_size < 2:
        raise ValueError(f"need 0 <= n_identical <= batch_size and batch_size >= 2, got {n_identical}, {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, dim, generator=generator).requires_grad_()
    free = torch.randn(batch_size - n_identical, dim, generator=generator).requires_grad_()
    shared = torch.randn(1, dim, generator=generator).requires_grad_()
    optimiser = torch.optim.Adam([images, free, shared], lr=0.05)
    best = math.inf
    for _ in range(steps):
        heatmaps = torch.cat([shared.expand(n_identical, dim), free])
        loss = nt_xent(images, heatmaps, temperature)
        best = min(best, float(loss.detach()))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return best
