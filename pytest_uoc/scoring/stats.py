"""Interval estimates and paired tests used by every score.

A CI gate must not flip on sampling noise, so every mean is reported with a
percentile bootstrap interval, and comparisons of two models on the same seeds
are paired (paired bootstrap of differences, exact McNemar test).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["BootstrapIntervals", "Estimate", "Intervals", "bootstrap_mean", "mcnemar", "paired_bootstrap_diff"]

# Resample in chunks so n_boot × n never allocates more than this many indices.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A mean with a two-sided confidence interval [low, high] over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def halfwidth(self) -> float:
        """Half the width of the interval."""
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: a mean needs at least one value")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf values")
    return array


def bootstrap_mean(
    values: ArrayLike, *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Mean of ``values`` with a percentile bootstrap interval.

    Resamples the values with replacement ``n_boot`` times using
    ``numpy.random.default_rng(seed)``, so the interval is deterministic.
    With a single value the interval collapses to that value.
    """
    array = _as_1d(values, "values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    n = array.size
    mean = float(array.mean())
    if n == 1 or np.all(array == array[0]):
        return Estimate(mean, mean, mean, n, confidence)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        index = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = array[index].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # The percentile interval can miss the sample mean by rounding only.
    return Estimate(mean, float(min(low, mean)), float(max(high, mean)), n, confidence)


def paired_bootstrap_diff(
    a: ArrayLike, b: ArrayLike, *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Mean of ``a - b`` over pairs, with a bootstrap interval resampling pairs.

    ``a[i]`` and ``b[i]`` must come from the same prompt and seed; resampling
    pairs (not each side alone) removes the noise the two sides share.
    """
    first, second = _as_1d(a, "a"), _as_1d(b, "b")
    if first.size != second.size:
        raise ValueError(
            f"paired values must have equal lengths, got {first.size} and {second.size}"
        )
    return bootstrap_mean(first - second, n_boot=n_boot, seed=seed, confidence=confidence)


def mcnemar(a: ArrayLike, b: ArrayLike) -> float:
    """Exact two-sided McNemar p-value for paired binary outcomes.

    Counts the discordant pairs (``a`` true and ``b`` false, and the reverse)
    and tests them against Binomial(n_discordant, 1/2). No discordant pair
    gives p = 1.
    """
    from scipy.stats import binomtest

    first, second = np.asarray(a), np.asarray(b)
    if first.ndim != 1 or second.ndim != 1:
        raise ValueError(f"mcnemar needs 1-D arrays, got shapes {first.shape} and {second.shape}")
    if first.shape != second.shape:
        raise ValueError(f"paired outcomes must have equal lengths, got {first.size} and {second.size}")
    for name, array in (("a", first), ("b", second)):
        if array.dtype != np.bool_:
            raise TypeError(f"{name} must be a boolean array of per-image decisions, got {array.dtype}")
    only_a = int(np.sum(first & ~second))
    only_b = int(np.sum(~first & second))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    p = float(binomtest(only_a, discordant, 0.5, alternative="two-sided").pvalue)
    return min(1.0, p) if not math.isnan(p) else 1.0


class Intervals(Protocol):
    """How a rule gets its intervals: a mean of per-image values, and a paired difference of two such."""

    def mean(self, values: ArrayLike, *, low: float = 0.0, high: float = 1.0) -> Estimate: ...

    def diff(self, a: ArrayLike, b: ArrayLike) -> Estimate: ...


@dataclass(frozen=True)
class BootstrapIntervals:
    """The fixed design's intervals: percentile bootstrap (``bootstrap_mean``, ``paired_bootstrap_diff``).

    ``low``/``high`` (the values' range) are not needed by the bootstrap; other designs use them.
    """

    n_boot: int = 2000
    seed: int = 0
    confidence: float = 0.95

    def mean(self, values: ArrayLike, *, low: float = 0.0, high: float = 1.0) -> Estimate:
        return bootstrap_mean(values, n_boot=self.n_boot, seed=self.seed, confidence=self.confidence)

    def diff(self, a: ArrayLike, b: ArrayLike) -> Estimate:
        return paired_bootstrap_diff(a, b, n_boot=self.n_boot, seed=self.seed, confidence=self.confidence)
