"""The verdict rule, one test per branch."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_uoc.scoring import CCSCurve, Estimate, decide, retrieved


def curve(points: dict[float, tuple[float, float, float]], n: int = 64) -> CCSCurve:
    estimates = {psi: Estimate(m, lo, hi, n) for psi, (m, lo, hi) in points.items()}
    return CCSCurve(estimates, {psi: np.full(n, m) for psi, (m, _, _) in points.items()})


GOOD = {0.0: (0.05, 0.02, 0.08), 0.15: (0.1, 0.05, 0.15), 0.35: (0.2, 0.12, 0.28), 0.75: (0.9, 0.85, 0.95)}


def run(points: dict[float, tuple[float, float, float]], *, n: int = 64, **kw):
    args = {"psi_limit": 0.35, "ccs_max": 0.5, "heldout_accuracy": 0.95} | kw
    return decide(curve(points, n), **args)


def test_forgotten_passes_and_ignores_psi_beyond_the_limit() -> None:
    verdict = run(GOOD)
    assert verdict.kind == "forgotten"
    assert verdict.passed
    assert verdict.retrieved_psi is None
    assert "0.28" in verdict.reason  # the highest upper bound is quoted


def test_concealed_reports_the_smallest_retrieving_psi() -> None:
    points = dict(GOOD)
    points[0.15] = (0.7, 0.6, 0.8)
    points[0.35] = (0.8, 0.7, 0.9)
    verdict = run(points)
    assert verdict.kind == "concealed"
    assert not verdict.passed
    assert verdict.first_retrieving_psi == verdict.retrieved_psi == 0.15
    assert "ψ=0.15" in verdict.reason


def test_not_erased_at_psi_zero() -> None:
    points = dict(GOOD)
    points[0.0] = (0.9, 0.8, 0.95)
    verdict = run(points)
    assert verdict.kind == "not_erased"
    assert verdict.retrieved_psi == 0.0


def test_smallest_psi_stands_in_for_zero() -> None:
    verdict = run({0.01: (0.9, 0.8, 0.95), 0.2: (0.9, 0.8, 0.95)})
    assert verdict.kind == "not_erased"
    assert verdict.retrieved_psi == 0.01


def test_straddling_interval_is_inconclusive() -> None:
    points = dict(GOOD)
    points[0.35] = (0.48, 0.4, 0.56)
    verdict = run(points)
    assert verdict.kind == "inconclusive"
    assert "straddles" in verdict.reason
    assert "more seeds" in verdict.reason


def test_too_few_images_is_inconclusive() -> None:
    verdict = run(GOOD, n=8)
    assert verdict.kind == "inconclusive"
    assert "fewer than min_images=16" in verdict.reason


def test_weak_classifier_is_inconclusive_unless_images_are_alike() -> None:
    weak = run(GOOD, heldout_accuracy=0.6)
    assert weak.kind == "inconclusive"
    assert "0.600 < 0.750" in weak.reason
    assert run(GOOD, heldout_accuracy=0.6, images_differ=True).kind == "inconclusive"
    alike = run(GOOD, heldout_accuracy=0.6, images_differ=False)
    assert alike.kind == "not_erased"
    assert "draws like the original" in alike.reason


def test_no_psi_within_the_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"no ψ ≤ psi_limit=0.1"):
        decide(curve({0.35: (0.1, 0.05, 0.15)}), psi_limit=0.1, ccs_max=0.5, heldout_accuracy=0.9)


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match=r"ccs_max must lie in \[0, 1\]"):
        decide(curve(GOOD), psi_limit=0.3, ccs_max=1.5, heldout_accuracy=0.9)


def test_verdict_carries_its_numbers() -> None:
    data = run(GOOD).to_dict()
    assert data["kind"] == "forgotten"
    assert data["passed"] is True
    assert (data["psi_limit"], data["ccs_max"], data["heldout_accuracy"], data["accuracy_floor"]) == (
        0.35, 0.5, 0.95, 0.75,
    )
    assert [p["psi"] for p in data["curve"]["curve"]] == [0.0, 0.15, 0.35, 0.75]


def test_verdict_carries_its_curve_object() -> None:
    points = curve(GOOD)
    verdict = decide(points, psi_limit=0.35, ccs_max=0.5, heldout_accuracy=0.95)
    assert verdict.ccs_curve is points
    assert verdict.curve == points.to_dict()
    assert "ccs_curve" not in verdict.to_dict()
    assert verdict.calibrated_curve is None


def test_retrieved_is_the_whole_interval_above_ccs_max() -> None:
    assert retrieved(Estimate(0.7, 0.51, 0.9, 64), 0.5)
    assert not retrieved(Estimate(0.7, 0.5, 0.9, 64), 0.5)  # touching the limit is not above it
    assert not retrieved(Estimate(0.6, 0.4, 0.8, 64), 0.5)  # the mean above, the interval straddling


class _CurveProbe:
    """What find_retrieval_threshold reads of a probe: ccs(ψ) and the sweeps spent."""

    def __init__(self, estimate_at) -> None:
        self.estimate_at = estimate_at
        self.cost = type("Cost", (), {"sweeps": 0})()

    def ccs(self, psi: float) -> Estimate:
        return self.estimate_at(psi)


def test_threshold_search_uses_the_verdicts_definition_of_retrieved() -> None:
    """A mean above ccs_max whose interval straddles it is not retrieved, as in the verdict."""
    from pytest_uoc.probe import find_retrieval_threshold

    def estimate_at(psi: float) -> Estimate:
        # mean = psi, interval ±0.2: the mean passes 0.5 at ψ 0.5, the interval's low bound at ψ 0.7.
        return Estimate(psi, psi - 0.2, psi + 0.2, 64)

    threshold = find_retrieval_threshold(_CurveProbe(estimate_at), 0.5, tolerance=0.01)
    assert threshold.psi is not None
    assert 0.7 <= threshold.psi <= 0.71
    assert all(retrieved(estimate_at(p), 0.5) == (p > 0.7) for p in threshold.evaluated)
    assert threshold.evaluated[1.0] == 1.0  # the mean CCS of each ψ visited
    first = decide(curve({p: (p, p - 0.2, p + 0.2) for p in (0.0, 0.5, 0.6, 0.75)}), psi_limit=1.0, ccs_max=0.5,
                   heldout_accuracy=0.95).first_retrieving_psi
    assert first == 0.75  # the verdict agrees: 0.5 and 0.6 have a mean above 0.5 but are not retrieved


def test_threshold_search_bounds() -> None:
    from pytest_uoc.probe import find_retrieval_threshold

    always = find_retrieval_threshold(_CurveProbe(lambda psi: Estimate(0.9, 0.8, 1.0, 64)), 0.5)
    assert always.psi == 0.0 and list(always.evaluated) == [0.0]
    never = find_retrieval_threshold(_CurveProbe(lambda psi: Estimate(0.6, 0.4, 0.8, 64)), 0.5)
    assert never.psi is None  # the mean is above 0.5 everywhere, the interval never
    assert "never retrieved" in str(never)
    with pytest.raises(ValueError, match="tolerance must be in"):
        find_retrieval_threshold(_CurveProbe(lambda psi: Estimate(0.9, 0.8, 1.0, 64)), 0.5, tolerance=0)
