"""Anytime-valid confidence sequences for means of bounded per-image values (sequential decisions).

A gate that looks at its evidence after every round of seeds, and stops as soon as
the verdict is decided, must not use a fixed-sample interval: looking again and
again inflates the error (optional stopping). A *confidence sequence* is valid at
every look at once. This module builds one by betting (Waudby-Smith & Ramdas,
"Estimating means of bounded random variables by betting", JRSS-B 2024): for each
candidate mean ``m`` a gambler bets on the values being above (below) ``m``; the
capital ``K_t(m) = Π (1 + λ_i (y_i − m))`` is a nonnegative supermartingale when
the mean is at most ``m``, so by Ville's inequality it reaches ``1/α`` with
probability at most ``α``, at any time. Every ``m`` at which it has reached ``1/α``
is excluded; what is left is the interval.

Choices, fixed once (no tuning to any model):

- values are rescaled from their range ``[lo, hi]`` to [0, 1];
- bets follow the predictable plug-in of the paper (PrPl), truncated at ``c/m``
  with ``c = 1/2`` (hedging against a wrong guess);
- a gate's observations are *seeds*: each seed's mean over the prompts (``SequentialIntervals``).
  The images of one seed share their starting noise, so their values are not independent (the
  concealment statistic's correlation across prompts of a seed is 0.13 on average over the stored
  zoo runs, sixth session); seeds are. The seed means' expectation is the mean over prompts, the
  quantity the fixed design's bootstrap estimates. (``confidence_sequence`` also takes ``block``:
  values of a block share one bet, valid when they are independent given the block's means);
- each side has error ``α`` (default 0.025: together a 95% interval, as the fixed
  design's two-sided bootstrap); the bounds are read on a grid of 2001 candidate
  means and rounded outwards (never narrower than the exact set).

The result is a ``stats.Estimate`` (mean, low, high, n), so every rule that reads
intervals reads these unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .stats import Estimate

__all__ = [
    "DEFAULT_ROUND_SEEDS", "EARLY_ALPHA", "FINAL_ALPHA", "SIDE_ALPHA", "SequentialIntervals", "confidence_sequence",
    "looks", "lower_bound", "seed_means",
]

#: Error of each one-sided bound: two sides make a 95% confidence sequence.
SIDE_ALPHA = 0.025
#: Hedging: the bet on mean > m is at most ``_HEDGE / m`` (keeps capital positive: any value below 1 is
#: valid; 0.5, 0.7 and 0.9 cost the same within 0.01× on seed sets 0–1 and on 2–4 of the stored zoo runs,
#: benchmarks/bench_sequential.py, sixth session).
_HEDGE = 0.9
#: A sequential gate's error, split: its early looks use confidence sequences at ``EARLY_ALPHA`` (two
#: sides together), the one look at the budget the fixed design's bootstrap at ``FINAL_ALPHA``; by the
#: union bound the whole procedure errs at most as often as the fixed design (0.05). Little is spent early
#: (as O'Brien–Fleming spending does in group-sequential trials): early looks stop only clear cases, and
#: the look at the budget stays close to the fixed design's 95% bootstrap, so it reaches the same
#: verdicts (chosen between 0.025/0.025, 0.01/0.04 and 0.005/0.045 on seed sets 0–1 of the stored runs,
#: confirmed on sets 2–4: docs/performance.md §4).
EARLY_ALPHA = 0.005
FINAL_ALPHA = 0.045
#: Scored seeds per prompt a sequential gate adds between two looks.
DEFAULT_ROUND_SEEDS = 4
_GRID = np.linspace(0.0, 1.0, 2001)


def _block_bets(values: np.ndarray, block: int, alpha: float) -> np.ndarray:
    """The predictable plug-in bet for every value: constant within a block, computed from earlier blocks only."""
    n = values.size
    bets = np.empty(n)
    total = 0.5  # prior pseudo-observation at 1/2, as in the paper
    squares = 0.25
    count = 1
    for start in range(0, n, block):
        stop = min(n, start + block)
        t = start + 1
        variance = squares / count
        bets[start:stop] = math.sqrt(2 * math.log(1 / alpha) / (variance * t * math.log(1 + t)))
        for y in values[start:stop]:
            mean_before = total / count
            squares += (y - mean_before) ** 2
            total += y
            count += 1
    return bets


def lower_bound(values: ArrayLike, *, block: int = 1, alpha: float = SIDE_ALPHA) -> float:
    """A lower confidence-sequence bound of the mean of ``values`` in [0, 1] (valid at every look)."""
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if y.size == 0:
        return 0.0
    if np.any(y < -1e-12) or np.any(y > 1 + 1e-12):
        raise ValueError("lower_bound needs values in [0, 1]; rescale them first")
    y = np.clip(y, 0.0, 1.0)
    bets = _block_bets(y, block, alpha)
    grid = _GRID[1:]  # m = 0 can never be rejected by a bet on "above m"
    # log K(m) = Σ log(1 + min(λ_i, c/m) (y_i − m)), for every candidate m at once.
    capped = np.minimum(bets[:, None], _HEDGE / grid[None, :])
    log_capital = np.log1p(capped * (y[:, None] - grid[None, :])).sum(axis=0)
    rejected = log_capital >= math.log(1 / alpha)
    if not rejected.any():
        return 0.0
    # Capital falls as m grows: the bound is the largest rejected candidate (rounded down onto the grid).
    return float(grid[np.nonzero(rejected)[0].max()])


def confidence_sequence(
    values: ArrayLike, *, block: int = 1, low: float = 0.0, high: float = 1.0, alpha: float = SIDE_ALPHA
) -> Estimate:
    """Mean of ``values`` (each in [low, high]) with a two-sided anytime-valid interval (each side ``alpha``).

    ``block``: how many consecutive values share one bet (the prompts of one seed).
    """
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError("values is empty: a mean needs at least one value")
    if not np.all(np.isfinite(array)):
        raise ValueError("values contains NaN or inf values")
    if not high > low:
        raise ValueError(f"the value range must have high > low, got [{low}, {high}]")
    if block < 1:
        raise ValueError(f"block must be a positive number of values, got {block}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    span = high - low
    scaled = (array - low) / span
    lo = lower_bound(scaled, block=block, alpha=alpha)
    hi = 1.0 - lower_bound(1.0 - scaled, block=block, alpha=alpha)
    mean = float(array.mean())
    return Estimate(mean, min(low + lo * span, mean), max(low + hi * span, mean), int(array.size), 1 - 2 * alpha)


def looks(scored_seeds: int, round_seeds: int = DEFAULT_ROUND_SEEDS) -> list[int]:
    """How many scored seeds per prompt each look has seen: every ``round_seeds``, and the budget last."""
    if scored_seeds < 1 or round_seeds < 1:
        raise ValueError(f"looks need at least one scored seed and one seed a round, got {scored_seeds}, {round_seeds}")
    counts = list(range(round_seeds, scored_seeds, round_seeds))
    return [*counts, scored_seeds]


def seed_means(values: ArrayLike, prompts: int) -> np.ndarray:
    """Each seed's mean over the prompts, from per-image values in the probe's prompt-major order."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size % prompts:
        raise ValueError(f"{array.size} values do not split into {prompts} prompts")
    return array.reshape(prompts, -1).mean(axis=0)


@dataclass(frozen=True)
class SequentialIntervals:
    """``stats.Intervals`` from confidence sequences, for per-image values in the probe's prompt-major order.

    ``prompts``: values come as ``prompts`` rows of one value a seed; each seed's mean over the prompts
    is one observation (seeds are independent, a seed's prompts are not). ``alpha``: two-sided error
    (each side half of it). The estimates count images (``n``), as the fixed design's do.
    """

    prompts: int
    alpha: float = EARLY_ALPHA

    def mean(self, values: ArrayLike, *, low: float = 0.0, high: float = 1.0) -> Estimate:
        means = seed_means(values, self.prompts)
        estimate = confidence_sequence(means, low=low, high=high, alpha=self.alpha / 2)
        return dataclasses.replace(estimate, n=means.size * self.prompts)

    def diff(self, a: ArrayLike, b: ArrayLike) -> Estimate:
        first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if first.shape != second.shape:
            raise ValueError(f"paired values must have equal lengths, got {first.size} and {second.size}")
        return self.mean(first - second, low=-1.0, high=1.0)
