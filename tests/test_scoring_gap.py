"""Concealment gap against a gold standard: paired differences and McNemar."""

from __future__ import annotations

import pytest
import torch
from uoc_test_helpers import MeanPixelClassifier, constant_images

from pytest_uoc.scoring import concealment_gap

torch.set_num_threads(1)


def test_gap_hand_computed() -> None:
    unlearned = {0.25: constant_images([0.9, 0.8, 0.2, 0.6]), 0.0: constant_images([0.1, 0.1])}
    reference = {0.0: constant_images([0.1, 0.3]), 0.25: constant_images([0.7, 0.2, 0.2, 0.4])}
    gap = concealment_gap(MeanPixelClassifier(), unlearned, reference, n_boot=200)
    assert gap.psis == (0.0, 0.25)
    point = gap.at(0.25)
    assert point.diff.mean == pytest.approx((0.2 + 0.6 + 0.0 + 0.2) / 4)
    assert point.unlearned_ccs == pytest.approx(0.625)
    assert point.reference_ccs == pytest.approx(0.375)
    # decisions (> 0.5): unlearned T T F T, reference T F F F -> 2 discordant, both one way
    assert point.unlearned_rate == 0.75
    assert point.reference_rate == 0.25
    assert point.p_value == pytest.approx(0.5)
    assert gap.p_value(0.25) == point.p_value
    assert (point.mean, point.low, point.high, point.n) == (
        point.diff.mean, point.diff.low, point.diff.high, 4,
    )
    assert gap[0.0].diff.mean == pytest.approx(-0.1)
    assert gap[0.0].p_value == 1.0
    assert gap.to_dict()["curve"][1]["psi"] == 0.25


def test_gap_detects_a_consistent_excess() -> None:
    values = [0.1 * (i % 5) for i in range(40)]
    unlearned = {0.35: constant_images([v + 0.55 for v in values])}
    reference = {0.35: constant_images(values)}
    gap = concealment_gap(MeanPixelClassifier(), unlearned, reference, n_boot=300)
    point = gap.at(0.35)
    assert point.diff.low == pytest.approx(0.55, abs=1e-6)
    assert point.p_value < 1e-6
    assert gap.significant() == (0.35,)


def test_gap_threshold_changes_decisions() -> None:
    gap = concealment_gap(
        MeanPixelClassifier(), {0.1: constant_images([0.3, 0.3])}, {0.1: constant_images([0.1, 0.1])},
        threshold=0.2,
    )
    assert gap.at(0.1).unlearned_rate == 1.0
    assert gap.at(0.1).reference_rate == 0.0


def test_gap_rejects_different_psi_sets() -> None:
    with pytest.raises(ValueError, match=r"same ψ values; only in unlearned: \[0.5\], only in reference: \[0.4\]"):
        concealment_gap(
            MeanPixelClassifier(),
            {0.1: constant_images([0.1]), 0.5: constant_images([0.1])},
            {0.1: constant_images([0.1]), 0.4: constant_images([0.1])},
        )


def test_gap_rejects_different_counts() -> None:
    with pytest.raises(ValueError, match=r"unlearned images at ψ=0.1 has 3 items and reference images at ψ=0.1 has 2"):
        concealment_gap(
            MeanPixelClassifier(), {0.1: constant_images([0.1] * 3)}, {0.1: constant_images([0.1] * 2)}
        )


def test_gap_rejects_nan_images() -> None:
    bad = constant_images([0.1, 0.2])
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN: the model produced non-finite output"):
        concealment_gap(MeanPixelClassifier(), {0.1: bad}, {0.1: constant_images([0.1, 0.2])})
