"""Anytime-valid confidence sequences (scoring/sequential.py): valid at every look, deterministic, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_uoc.scoring.sequential import SIDE_ALPHA, confidence_sequence, lower_bound
from pytest_uoc.scoring.stats import bootstrap_mean


def test_interval_contains_the_sample_mean_and_stays_in_range():
    values = np.array([0, 1, 1, 0, 1, 1, 1, 0], dtype=float)
    estimate = confidence_sequence(values)
    assert 0.0 <= estimate.low <= estimate.mean <= estimate.high <= 1.0
    assert estimate.mean == pytest.approx(values.mean())
    assert estimate.n == 8 and estimate.confidence == pytest.approx(1 - 2 * SIDE_ALPHA)


def test_same_values_give_the_same_interval_bit_for_bit():
    values = np.random.default_rng(3).random(40)
    assert confidence_sequence(values, block=2) == confidence_sequence(values.copy(), block=2)


def test_interval_shrinks_as_evidence_grows():
    widths = [confidence_sequence(np.zeros(n), low=-1.0).halfwidth for n in (16, 32, 64)]
    assert widths[0] > widths[1] > widths[2]


def test_it_is_wider_than_a_fixed_sample_bootstrap_interval():
    """Validity at every look costs width: never narrower than the fixed design's interval."""
    values = (np.random.default_rng(1).random(48) < 0.4).astype(float)
    sequential, fixed = confidence_sequence(values, block=3), bootstrap_mean(values)
    assert sequential.low <= fixed.low and sequential.high >= fixed.high


def test_values_far_above_a_limit_are_shown_above_it_early():
    assert confidence_sequence(np.ones(16), block=2).low > 0.5


def test_coverage_holds_at_every_look_at_once():
    """Simulated: the true mean leaves the interval at *some* look in at most ~5% of sequences."""
    rng = np.random.default_rng(0)
    true_mean, runs, looks = 0.3, 300, (8, 16, 24, 32, 48, 64)
    missed = 0
    for _ in range(runs):
        values = (rng.random(max(looks)) < true_mean).astype(float)
        for n in looks:
            estimate = confidence_sequence(values[:n], block=2)
            if not estimate.low <= true_mean <= estimate.high:
                missed += 1
                break
    assert missed / runs <= 2 * SIDE_ALPHA + 0.02


def test_lower_bound_of_a_mean_at_zero_is_zero():
    assert lower_bound(np.zeros(30)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": []}, "empty"),
        ({"values": [0.1, float("nan")]}, "NaN"),
        ({"values": [0.1], "low": 1.0, "high": 0.0}, "high > low"),
        ({"values": [0.1], "block": 0}, "block"),
        ({"values": [0.1], "alpha": 0.7}, "alpha"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        confidence_sequence(**kwargs)


def test_lower_bound_needs_values_in_the_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lower_bound([0.5, 1.5])


def test_looks_come_every_round_and_end_at_the_budget():
    from pytest_uoc.scoring.sequential import looks

    assert looks(16, 4) == [4, 8, 12, 16]
    assert looks(10, 4) == [4, 8, 10]
    assert looks(3, 4) == [3]
    with pytest.raises(ValueError, match="at least one"):
        looks(0, 4)


def test_sequential_intervals_bet_on_each_seeds_mean_over_the_prompts():
    """Values come prompt-major; a seed's mean over the prompts is one observation of the sequence."""
    from pytest_uoc.scoring.sequential import SequentialIntervals

    rng = np.random.default_rng(5)
    by_prompt = (rng.random((3, 10)) < 0.4).astype(float)  # 3 prompts x 10 seeds
    made = SequentialIntervals(prompts=3, alpha=0.05).mean(by_prompt.reshape(-1))
    direct = confidence_sequence(by_prompt.mean(axis=0), alpha=0.025)
    assert (made.mean, made.low, made.high) == (direct.mean, direct.low, direct.high)
    assert made.n == 30  # images, as every other interval counts them
    with pytest.raises(ValueError, match="3 prompts"):
        SequentialIntervals(prompts=3).mean(np.zeros(10))
    with pytest.raises(ValueError, match="equal lengths"):
        SequentialIntervals(prompts=2).diff(np.zeros(4), np.zeros(6))


def test_bootstrap_intervals_are_the_fixed_design():
    from pytest_uoc.scoring.stats import BootstrapIntervals, paired_bootstrap_diff

    values = np.random.default_rng(2).random(24)
    other = np.random.default_rng(3).random(24)
    assert BootstrapIntervals().mean(values) == bootstrap_mean(values)
    assert BootstrapIntervals().diff(values, other) == paired_bootstrap_diff(values, other)


def test_calibrated_curve_defaults_to_the_fixed_design_bit_for_bit():
    from pytest_uoc.scoring.calibration import calibrated_curve
    from pytest_uoc.scoring.stats import BootstrapIntervals

    rng = np.random.default_rng(7)
    psis = (0.0, 0.25)
    side = {name: {p: (rng.random(16) < 0.5).astype(float) for p in psis} for name in ("u", "up", "lo")}
    common = dict(original_steps={0.0: 0, 0.25: 3}, total_steps=10, anchors=["a digit"])
    default = calibrated_curve(side["u"], side["up"], side["lo"], **common)
    explicit = calibrated_curve(side["u"], side["up"], side["lo"], **common, intervals=BootstrapIntervals())
    assert default.to_dict() == explicit.to_dict()


def test_sequential_intervals_stay_valid_when_a_seeds_prompts_agree():
    """Images of one seed share their starting noise, so their values correlate (0.13 on average over the
    stored zoo runs). Seeds are the independent draws: with every prompt of a seed giving the same value
    (the worst case), the sequence still covers the mean at every look at once, at least 1 − alpha of the time."""
    from pytest_uoc.scoring.sequential import SequentialIntervals

    rng = np.random.default_rng(11)
    alpha, true_mean, misses, trials = 0.1, 0.3, 0, 200
    for _ in range(trials):
        seeds = (rng.random(24) < true_mean).astype(float)
        by_prompt = np.tile(seeds, (3, 1))  # 3 prompts, each the same value for a seed
        intervals = SequentialIntervals(prompts=3, alpha=alpha)
        covered = all(intervals.mean(by_prompt[:, :n].reshape(-1)).low <= true_mean
                      <= intervals.mean(by_prompt[:, :n].reshape(-1)).high for n in (4, 8, 12, 16, 20, 24))
        misses += not covered
    assert misses / trials <= alpha
