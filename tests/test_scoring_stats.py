"""Bootstrap estimates and McNemar: hand-computed values, determinism, coverage."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_uoc.scoring import Estimate, bootstrap_mean, mcnemar, paired_bootstrap_diff


def test_estimate_halfwidth_and_dict() -> None:
    est = Estimate(0.5, 0.4, 0.7, 10)
    assert est.halfwidth == pytest.approx(0.15)
    assert est.to_dict() == {"mean": 0.5, "low": 0.4, "high": 0.7, "n": 10, "confidence": 0.95}
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.mean = 0.1  # type: ignore[misc]


def test_bootstrap_mean_is_the_sample_mean_and_deterministic() -> None:
    values = np.array([0.1, 0.9, 0.4, 0.2, 0.7, 0.3])
    a = bootstrap_mean(values, n_boot=500, seed=3)
    b = bootstrap_mean(values, n_boot=500, seed=3)
    c = bootstrap_mean(values, n_boot=500, seed=4)
    assert a.mean == pytest.approx(values.mean())
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low < a.mean < a.high
    assert a.n == 6


def test_bootstrap_percentiles_match_a_manual_resample() -> None:
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    est = bootstrap_mean(values, n_boot=300, seed=11)
    rng = np.random.default_rng(11)
    means = values[rng.integers(0, 5, size=(300, 5))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    assert est.low == pytest.approx(min(low, 0.6))
    assert est.high == pytest.approx(max(high, 0.6))


def test_single_and_constant_values_collapse_the_interval() -> None:
    assert bootstrap_mean([0.3]) == Estimate(0.3, 0.3, 0.3, 1)
    est = bootstrap_mean([0.25] * 7)
    assert (est.low, est.high) == (0.25, 0.25)


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match="one-dimensional"):
        bootstrap_mean(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        bootstrap_mean([0.1, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean([0.1, 0.2], confidence=1.5)


def test_bootstrap_coverage_on_bernoulli() -> None:
    """200 experiments of 50 Bernoulli(0.3) draws: the 95% interval holds 0.3 about 95% of the time."""
    rng = np.random.default_rng(2024)
    hits = 0
    for rep in range(200):
        sample = (rng.random(50) < 0.3).astype(float)
        est = bootstrap_mean(sample, n_boot=400, seed=rep)
        hits += est.low <= 0.3 <= est.high
    coverage = hits / 200
    assert 0.88 <= coverage <= 0.99, coverage


def test_confidence_level_widens_the_interval() -> None:
    values = np.random.default_rng(0).random(40)
    narrow = bootstrap_mean(values, n_boot=1000, confidence=0.5)
    wide = bootstrap_mean(values, n_boot=1000, confidence=0.99)
    assert wide.halfwidth > narrow.halfwidth


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.integers(0, 2**31))
def test_bootstrap_interval_brackets_the_mean_within_the_data(values: list[float], seed: int) -> None:
    est = bootstrap_mean(values, n_boot=50, seed=seed)
    assert min(values) - 1e-12 <= est.low <= est.mean <= est.high <= max(values) + 1e-12


def test_paired_diff_is_mean_difference_and_tighter_than_unpaired() -> None:
    rng = np.random.default_rng(1)
    shared = rng.random(64)
    a = shared + 0.05
    b = shared + rng.normal(0, 0.01, 64)
    paired = paired_bootstrap_diff(a, b, n_boot=500)
    assert paired.mean == pytest.approx(float(np.mean(a - b)))
    unpaired_halfwidth = bootstrap_mean(a, n_boot=500).halfwidth + bootstrap_mean(b, n_boot=500).halfwidth
    assert paired.halfwidth < unpaired_halfwidth / 5
    assert paired.low > 0


def test_paired_diff_length_mismatch() -> None:
    with pytest.raises(ValueError, match="equal lengths, got 3 and 2"):
        paired_bootstrap_diff([1, 2, 3], [1, 2])


def test_mcnemar_hand_computed() -> None:
    # 1 pair where only a is true, 9 where only b is true, 5 concordant:
    # p = 2 * P(Bin(10, 1/2) <= 1) = 2 * 11 / 1024.
    a = np.array([True] + [False] * 9 + [True] * 3 + [False] * 2)
    b = np.array([False] + [True] * 9 + [True] * 3 + [False] * 2)
    assert mcnemar(a, b) == pytest.approx(22 / 1024)
    assert mcnemar(b, a) == pytest.approx(22 / 1024)


def test_mcnemar_balanced_and_no_discordant() -> None:
    a = np.array([True, False, True, False])
    b = np.array([False, True, True, False])
    assert mcnemar(a, b) == pytest.approx(1.0)
    assert mcnemar(a, a) == 1.0
    # 8 discordant all one way: p = 2 / 2**8.
    assert mcnemar(np.ones(8, bool), np.zeros(8, bool)) == pytest.approx(2 / 256)
    assert math.isfinite(mcnemar(np.ones(3, bool), np.zeros(3, bool)))


def test_mcnemar_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="boolean array"):
        mcnemar(np.array([1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar(np.ones(3, bool), np.ones(2, bool))
