"""Concept Confidence Score: how sure the domain classifier is that images are λO.

CCS(ψ) is the mean over λP(ψ) images of the classifier's probability of label
1 (the original domain), reported with a bootstrap interval over images. The
paper's single number is the mean of CCS(ψ) over ``PAPER_PSI_GRID``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from .images import check_images
from .stats import Estimate, bootstrap_mean

__all__ = ["PAPER_PSI_GRID", "CCSCurve", "ProbabilityModel", "PsiKeyed", "ccs", "ccs_curve", "find_psi"]

#: The ψ values over which the paper averages CCS(ψ) and CRS.
PAPER_PSI_GRID: tuple[float, ...] = (0.001, 0.01, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55)

_PSI_TOLERANCE = 1e-9


class ProbabilityModel(Protocol):
    """Anything with ``probabilities(images) -> Tensor[N]`` (a DomainClassifier, or a fake in tests)."""

    def probabilities(self, images: torch.Tensor) -> torch.Tensor: ...


def find_psi(psis: Iterator[float] | tuple[float, ...] | list[float], psi: float) -> float | None:
    """The key among ``psis`` equal to ``psi`` up to 1e-9, or None."""
    for key in psis:
        if math.isclose(key, psi, rel_tol=0.0, abs_tol=_PSI_TOLERANCE):
            return key
    return None


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
    try:
        value = float(psi)
    except (TypeError, ValueError):
        raise TypeError(f"ψ keys must be numbers in [0, 1], got {psi!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"ψ must lie in [0, 1], got {value}")
    return value


def _probabilities(classifier: ProbabilityModel, images: torch.Tensor, name: str) -> np.ndarray:
    checked = check_images(images, name=name)
    probs = classifier.probabilities(checked)
    array = np.asarray(torch.as_tensor(probs).detach().cpu().double().numpy()).reshape(-1)
    if array.shape[0] != checked.shape[0]:
        raise ValueError(
            f"the classifier returned {array.shape[0]} probabilities for {checked.shape[0]} images"
        )
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError("the classifier returned probabilities outside [0, 1] or non-finite")
    return array


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
                values = given[key]
                if isinstance(values, torch.Tensor):
                    values = values.detach().cpu().double().numpy()
                self.probabilities[psi] = np.asarray(values, dtype=np.float64).reshape(-1)

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
    estimates: dict[float, Estimate] = {}
    probabilities: dict[float, np.ndarray] = {}
    for key, images in images_by_psi.items():
        psi = _check_psi(key)
        if find_psi(estimates, psi) is not None:
            raise ValueError(f"ψ={psi} appears twice in images_by_psi")
        probs = _probabilities(classifier, images, f"images at ψ={psi}")
        probabilities[psi] = probs
        estimates[psi] = bootstrap_mean(probs, n_boot=n_boot, seed=seed)
    return CCSCurve(estimates, probabilities)
