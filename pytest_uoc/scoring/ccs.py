"""Concept Confidence Score: how sure the domain classifier is that images are λO.

CCS(ψ) is the mean over λP(ψ) images of the classifier's probability of label
1 (the original domain), reported with a bootstrap interval over images. The
paper's single number is the mean of CCS(ψ) over ``PAPER_PSI_GRID``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from ..units import PAPER_PSI_GRID, check_psi, find_psi
from .images import check_images, float_batches
from .stats import Estimate, bootstrap_mean

__all__ = [
    "PAPER_PSI_GRID",
    "CCSCurve",
    "ProbabilityModel",
    "PsiKeyed",
    "ccs",
    "ccs_curve",
    "ccs_curve_from_probabilities",
    "domain_probabilities",
    "find_psi",
]


class ProbabilityModel(Protocol):
    """Anything with ``probabilities(images) -> Tensor[N]`` (a DomainClassifier, or a fake in tests)."""

    def probabilities(self, images: torch.Tensor) -> torch.Tensor: ...


PointT = TypeVar("PointT")


class PsiKeyed(Mapping[float, PointT], Generic[PointT]):
    """A read-only mapping ψ -> point, ascending in ψ, keys matched up to 1e-9: the one ψ-keyed curve type.

    Subclasses (``CCSCurve``, ``GapCurve``, ``CalibratedCurve``) set ``self._points``
    to an ascending dict; "ψ" reads "strength" on the restoration attack's curves.
    """

    _points: dict[float, PointT]

    def __getitem__(self, psi: float) -> PointT:
        key = find_psi(self._points, psi)
        if key is None:
            raise KeyError(psi)
        return self._points[key]

    def __iter__(self) -> Iterator[float]:
        return iter(self._points)

    def __len__(self) -> int:
        return len(self._points)

    @property
    def psis(self) -> tuple[float, ...]:
        """The ψ values, ascending."""
        return tuple(self._points)

    def at(self, psi: float) -> PointT:
        """The point at ψ (matched up to 1e-9); KeyError names the ψ values available."""
        key = find_psi(self._points, psi)
        if key is None:
            raise KeyError(f"ψ={psi} is not on this curve; available: {list(self.psis)}")
        return self._points[key]


def _check_psi(psi: Any) -> float:
    """A ψ key of a mapping given to a scoring function, checked like every ψ (``units.check_psi``)."""
    return check_psi(psi, name="ψ key")


def domain_probabilities(classifier: ProbabilityModel, images: torch.Tensor, *, name: str = "images") -> torch.Tensor:
    """The classifier's P(original domain) per image, on CPU, after checking the images and the answer.

    ``name`` names the images in the error when they are not valid images (``check_images``).
    One place that validates what a classifier returns: one value per image, finite, in [0, 1].
    """
    checked = check_images(images, name=name)
    probs = torch.cat([torch.as_tensor(classifier.probabilities(batch)).detach().cpu().reshape(-1)
                       for batch in float_batches(checked)])
    array = _as_array(probs)
    if array.shape[0] != checked.shape[0]:
        raise ValueError(
            f"the classifier returned {array.shape[0]} probabilities for {checked.shape[0]} images"
        )
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError("the classifier returned probabilities outside [0, 1] or non-finite")
    return probs


def _as_array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-image values as a flat float64 array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _probabilities(classifier: ProbabilityModel, images: torch.Tensor, name: str) -> np.ndarray:
    return _as_array(domain_probabilities(classifier, images, name=name))


def ccs(classifier: ProbabilityModel, images: torch.Tensor, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """CCS of one image set: mean P(original domain) with a bootstrap 95% interval over images."""
    return bootstrap_mean(_probabilities(classifier, images, "images"), n_boot=n_boot, seed=seed)


class CCSCurve(PsiKeyed[Estimate]):
    """CCS(ψ) for every ψ of a sweep: a read-only mapping ψ -> Estimate.

    ``probabilities[ψ]`` keeps the per-image probabilities (in the sweep's
    prompt and seed order) for paired comparisons.
    """

    def __init__(
        self,
        estimates: Mapping[float, Estimate],
        probabilities: Mapping[float, np.ndarray | torch.Tensor] | None = None,
    ) -> None:
        if not estimates:
            raise ValueError("a CCS curve needs at least one ψ")
        order = sorted(estimates)
        self._estimates = self._points = {psi: estimates[psi] for psi in order}
        given = probabilities or {}
        self.probabilities: dict[float, np.ndarray] = {}
        for psi in order:
            key = find_psi(list(given), psi)
            if key is not None:
                self.probabilities[psi] = _as_array(given[key])

    @classmethod
    def from_estimates(
        cls,
        estimates: Mapping[float, Estimate],
        probabilities: Mapping[float, np.ndarray | torch.Tensor] | None = None,
    ) -> CCSCurve:
        """A curve from estimates computed elsewhere (per-image probabilities optional)."""
        return cls(estimates, probabilities)

    def __repr__(self) -> str:
        points = ", ".join(f"{psi:g}: {est}" for psi, est in self._estimates.items())
        return f"CCSCurve({{{points}}})"

    def paper_aggregate(self) -> float:
        """The paper's single-number CCS: mean of CCS(ψ) over the PAPER_PSI_GRID points present."""
        present = [self._estimates[k] for psi in PAPER_PSI_GRID if (k := find_psi(self._estimates, psi)) is not None]
        if not present:
            raise ValueError(
                f"no ψ of the paper's grid {PAPER_PSI_GRID} is on this curve (ψ values: {list(self.psis)})"
            )
        return float(np.mean([e.mean for e in present]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the curve as a list of points, and the paper aggregate (or None)."""
        try:
            aggregate: float | None = self.paper_aggregate()
        except ValueError:
            aggregate = None
        return {
            "curve": [{"psi": psi, **est.to_dict()} for psi, est in self._estimates.items()],
            "paper_aggregate": aggregate,
        }


def ccs_curve(
    classifier: ProbabilityModel,
    images_by_psi: Mapping[float, torch.Tensor],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> CCSCurve:
    """CCS(ψ) with intervals for every ψ of a sweep (images λP(ψ) per ψ)."""
    if not images_by_psi:
        raise ValueError("images_by_psi is empty: a CCS curve needs images for at least one ψ")
    probabilities: dict[float, np.ndarray] = {}
    for key, images in images_by_psi.items():
        psi = _check_psi(key)
        if find_psi(probabilities, psi) is not None:
            raise ValueError(f"ψ={psi} appears twice in images_by_psi")
        probabilities[psi] = _probabilities(classifier, images, f"images at ψ={psi}")
    return ccs_curve_from_probabilities(probabilities, n_boot=n_boot, seed=seed)


def ccs_curve_from_probabilities(
    probabilities_by_point: Mapping[float, np.ndarray | torch.Tensor],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    estimates: Mapping[float, Estimate] | None = None,
) -> CCSCurve:
    """CCS per point (ψ or strength) from per-image probabilities the classifier already gave.

    So that a caller who keeps the probabilities (the probe) scores every image once.
    ``estimates`` holds intervals already computed for some points (reused as they are);
    the others are bootstrapped here, each with the same ``seed``.
    """
    known = estimates or {}
    computed = {point: known[point] if point in known else bootstrap_mean(_as_array(values), n_boot=n_boot, seed=seed)
                for point, values in probabilities_by_point.items()}
    return CCSCurve(computed, probabilities_by_point)
