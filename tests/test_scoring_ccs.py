"""CCS: mean probability with an interval, curves over ψ and the paper aggregate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from uoc_test_helpers import MeanPixelClassifier, constant_images

from pytest_uoc.scoring import PAPER_PSI_GRID, CCSCurve, Estimate, ccs, ccs_curve

torch.set_num_threads(1)


def test_ccs_is_the_mean_probability() -> None:
    est = ccs(MeanPixelClassifier(), constant_images([0.1, 0.2, 0.6, 0.9]), n_boot=200)
    assert est.mean == pytest.approx(0.45)
    assert est.n == 4
    assert 0.1 <= est.low < 0.45 < est.high <= 0.9


def test_ccs_of_identical_probabilities_has_no_spread() -> None:
    est = ccs(MeanPixelClassifier(), constant_images([0.25] * 5))
    assert (est.mean, est.low, est.high) == pytest.approx((0.25, 0.25, 0.25))


def test_ccs_rejects_nan_images() -> None:
    images = constant_images([0.5, 0.5])
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN: the model produced non-finite output"):
        ccs(MeanPixelClassifier(), images)


def test_ccs_rejects_a_classifier_returning_the_wrong_count() -> None:
    class Broken:
        def probabilities(self, images: torch.Tensor) -> torch.Tensor:
            return torch.zeros(1)

    with pytest.raises(ValueError, match="returned 1 probabilities for 3 images"):
        ccs(Broken(), constant_images([0.1, 0.2, 0.3]))


def test_curve_points_psis_and_per_image_probabilities() -> None:
    curve = ccs_curve(
        MeanPixelClassifier(),
        {0.35: constant_images([0.5, 0.7]), 0.0: constant_images([0.1, 0.1, 0.3])},
        n_boot=100,
    )
    assert curve.psis == (0.0, 0.35)
    assert list(curve) == [0.0, 0.35]
    assert len(curve) == 2
    assert curve.at(0.0).mean == pytest.approx(0.5 / 3)
    assert curve[0.35].mean == pytest.approx(0.6)
    assert curve.at(0.35 + 1e-12).mean == pytest.approx(0.6)
    np.testing.assert_allclose(curve.probabilities[0.35], [0.5, 0.7], rtol=1e-6)
    with pytest.raises(KeyError, match="available"):
        curve.at(0.5)


def test_paper_aggregate_averages_grid_points_present_only() -> None:
    images = {
        0.01: constant_images([0.2, 0.2]),
        0.15: constant_images([0.4, 0.4]),
        0.3: constant_images([0.9, 0.9]),  # not on the paper grid: ignored
    }
    curve = ccs_curve(MeanPixelClassifier(), images, n_boot=50)
    assert curve.paper_aggregate() == pytest.approx(0.3)
    data = curve.to_dict()
    assert data["paper_aggregate"] == pytest.approx(0.3)
    assert [p["psi"] for p in data["curve"]] == [0.01, 0.15, 0.3]
    assert data["curve"][2]["mean"] == pytest.approx(0.9)


def test_paper_aggregate_needs_a_grid_point() -> None:
    curve = CCSCurve({0.3: Estimate(0.5, 0.4, 0.6, 10)}, {0.3: np.full(10, 0.5)})
    with pytest.raises(ValueError, match="no ψ of the paper's grid"):
        curve.paper_aggregate()
    assert curve.to_dict()["paper_aggregate"] is None


def test_full_paper_grid() -> None:
    values = [0.05 * (i + 1) for i in range(len(PAPER_PSI_GRID))]
    images = {psi: constant_images([v] * 3) for psi, v in zip(PAPER_PSI_GRID, values, strict=True)}
    curve = ccs_curve(MeanPixelClassifier(), images, n_boot=20)
    assert curve.paper_aggregate() == pytest.approx(np.mean(values))


def test_curve_rejects_bad_psi_and_empty_input() -> None:
    # The one ψ validator (pytest_uoc.units.check_psi) names the key.
    with pytest.raises(ValueError, match=r"ψ key must be a finite number in \[0, 1\], got 1.5"):
        ccs_curve(MeanPixelClassifier(), {1.5: constant_images([0.1])})
    with pytest.raises(ValueError, match="images_by_psi is empty"):
        ccs_curve(MeanPixelClassifier(), {})
    with pytest.raises(ValueError, match=r"images at ψ=0.1 must be a 4-D tensor"):
        ccs_curve(MeanPixelClassifier(), {0.1: torch.rand(3, 4, 4)})


def test_curve_from_estimates_accepts_tensor_probabilities_or_none() -> None:
    est = {0.2: Estimate(0.5, 0.4, 0.6, 2), 0.0: Estimate(0.1, 0.0, 0.2, 2)}
    curve = CCSCurve.from_estimates(est, probabilities={0.2: torch.tensor([0.4, 0.6])})
    assert curve.psis == (0.0, 0.2)
    np.testing.assert_allclose(curve.probabilities[0.2], [0.4, 0.6], rtol=1e-6)
    assert 0.0 not in curve.probabilities
    assert CCSCurve.from_estimates(est).at(0.2).mean == 0.5
    with pytest.raises(ValueError, match="at least one ψ"):
        CCSCurve({})
