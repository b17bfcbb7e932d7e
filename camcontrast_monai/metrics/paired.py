"""Paired comparison of two methods scored on the same seeds or splits: mean difference and a bootstrap interval."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["PairedDifference", "paired_difference"]


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over ``n`` pairs: mean, sample std, and the percentile bootstrap interval of the mean."""

    mean: float
    std: float
    low: float
    high: float
    n: int
    confidence: float

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_difference(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, n_resamples: int = 10000, seed: int = 0
) -> PairedDifference:
    """Mean of ``a[i] - b[i]`` with a percentile bootstrap interval: pairs are resampled with replacement.

    ``a`` and ``b`` must come from the same seeds or splits, in the same order (pair ``i`` shares seed or
    split ``i``). Pairs with a NaN on either side are dropped. With fewer than two pairs the interval is
    NaN. Resampled splits of one data set overlap, so an interval over splits says how stable the
    difference is on this data, not how it would vary on new data.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired scores must be two 1-D arrays of one length, got shapes {a.shape} and {b.shape}"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    difference = (a - b)[~(np.isnan(a) | np.isnan(b))]
    n = len(difference)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, 0, confidence)
    mean = float(difference.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan, n, confidence)
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedDifference(mean, float(difference.std(ddof=1)), float(low), float(high), n, confidence)
