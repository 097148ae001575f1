"""Concealment gap: the unlearned model against a gold standard that never learned the concept.

Partial diffusion retrieves *something* from any model once the original has
drawn enough (the gold standard too), so an absolute CCS threshold at a high ψ
fails models that truly forgot. The gap ``CCS_unlearned(ψ) - CCS_reference(ψ)``
calibrates against a model retrained without the concept. Both models start
from the same noise per seed, so the comparison is paired: a bootstrap over
pairs for the interval and McNemar's exact test on per-image decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .ccs import ProbabilityModel, PsiKeyed, _as_array, _check_psi, _probabilities, find_psi
from .images import check_paired
from .stats import Estimate, mcnemar, paired_bootstrap_diff

__all__ = ["GapCurve", "GapPoint", "concealment_gap", "concealment_gap_from_probabilities"]


@dataclass(frozen=True)
class GapPoint:
    """The paired comparison at one ψ.

    ``diff`` is mean(p_unlearned - p_reference) with its paired bootstrap CI;
    ``unlearned_rate``/``reference_rate`` are the fractions of images whose
    probability exceeds ``threshold``; ``p_value`` is McNemar's exact two-sided
    test on those per-image decisions.
    """

    psi: float
    diff: Estimate
    unlearned_ccs: float
    reference_ccs: float
    unlearned_rate: float
    reference_rate: float
    p_value: float
    threshold: float

    #: The paired gap's mean, interval bounds and number of pairs (those of ``diff``).
    mean = property(lambda self: self.diff.mean, doc="The mean paired gap (``diff.mean``).")
    low = property(lambda self: self.diff.low, doc="The low bound of the gap's 95% interval.")
    high = property(lambda self: self.diff.high, doc="The high bound of the gap's 95% interval.")
    n = property(lambda self: self.diff.n, doc="The number of pairs.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "psi": self.psi,
            "diff": self.diff.to_dict(),
            "unlearned_ccs": self.unlearned_ccs,
            "reference_ccs": self.reference_ccs,
            "unlearned_rate": self.unlearned_rate,
            "reference_rate": self.reference_rate,
            "p_value": self.p_value,
            "threshold": self.threshold,
        }


class GapCurve(PsiKeyed[GapPoint]):
    """Read-only mapping ψ -> GapPoint, ascending in ψ."""

    def __init__(self, points: Mapping[float, GapPoint]) -> None:
        self._points = {psi: points[psi] for psi in sorted(points)}

    def __repr__(self) -> str:
        body = ", ".join(f"{psi:g}: {p.diff} (p={p.p_value:.3g})" for psi, p in self._points.items())
        return f"GapCurve({{{body}}})"

    def p_value(self, psi: float) -> float:
        """McNemar's exact p-value at ψ."""
        return self.at(psi).p_value

    def significant(self, alpha: float = 0.05) -> tuple[float, ...]:
        """ψ values where the unlearned model is above the reference: CI low > 0 or McNemar p < alpha with a positive gap."""
        return tuple(
            psi for psi, p in self._points.items()
            if p.diff.low > 0 or (p.p_value < alpha and p.unlearned_rate > p.reference_rate)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"curve": [p.to_dict() for p in self._points.values()]}


def concealment_gap(
    classifier: ProbabilityModel,
    unlearned_by_psi: Mapping[float, torch.Tensor],
    reference_by_psi: Mapping[float, torch.Tensor],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    threshold: float = 0.5,
) -> GapCurve:
    """Per-ψ paired gap ``CCS_unlearned(ψ) - CCS_reference(ψ)``.

    Image ``i`` at each ψ must come from the same prompt and seed in both
    sweeps. Raises ValueError when the ψ sets or the per-ψ counts differ.
    """
    _check_sweeps(unlearned_by_psi, reference_by_psi, threshold)
    p_unlearned: dict[float, np.ndarray] = {}
    p_reference: dict[float, np.ndarray] = {}
    for key in unlearned_by_psi:
        psi = float(key)
        u_images, r_images = unlearned_by_psi[key], reference_by_psi[_matching(reference_by_psi, psi)]
        check_paired(u_images, r_images, (f"unlearned images at ψ={psi}", f"reference images at ψ={psi}"))
        p_unlearned[psi] = _probabilities(classifier, u_images, f"unlearned images at ψ={psi}")
        p_reference[psi] = _probabilities(classifier, r_images, f"reference images at ψ={psi}")
    return concealment_gap_from_probabilities(p_unlearned, p_reference, n_boot=n_boot, seed=seed, threshold=threshold)


def concealment_gap_from_probabilities(
    unlearned_by_psi: Mapping[float, np.ndarray | torch.Tensor],
    reference_by_psi: Mapping[float, np.ndarray | torch.Tensor],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    threshold: float = 0.5,
) -> GapCurve:
    """The gap from per-image probabilities the classifier already gave (paired by position, per ψ).

    So that a caller who keeps the probabilities (the probe) scores every image once.
    """
    _check_sweeps(unlearned_by_psi, reference_by_psi, threshold)
    points: dict[float, GapPoint] = {}
    for key in unlearned_by_psi:
        psi = float(key)
        p_u, p_r = _as_array(unlearned_by_psi[key]), _as_array(reference_by_psi[_matching(reference_by_psi, psi)])
        check_paired(p_u, p_r, (f"unlearned images at ψ={psi}", f"reference images at ψ={psi}"))
        d_u, d_r = p_u > threshold, p_r > threshold
        points[psi] = GapPoint(
            psi=psi,
            diff=paired_bootstrap_diff(p_u, p_r, n_boot=n_boot, seed=seed),
            unlearned_ccs=float(np.mean(p_u)),
            reference_ccs=float(np.mean(p_r)),
            unlearned_rate=float(np.mean(d_u)),
            reference_rate=float(np.mean(d_r)),
            p_value=mcnemar(d_u, d_r),
            threshold=threshold,
        )
    return GapCurve(points)


def _check_sweeps(unlearned_by_psi: Mapping[float, Any], reference_by_psi: Mapping[float, Any],
                  threshold: float) -> None:
    """Raise ValueError unless the threshold is in (0, 1) and both sweeps cover the same ψ values."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    if not unlearned_by_psi:
        raise ValueError("unlearned_by_psi is empty: the gap needs images for at least one ψ")
    u_keys = sorted(_check_psi(k) for k in unlearned_by_psi)
    r_keys = sorted(_check_psi(k) for k in reference_by_psi)
    missing = [k for k in u_keys if find_psi(r_keys, k) is None]
    extra = [k for k in r_keys if find_psi(u_keys, k) is None]
    if missing or extra or len(u_keys) != len(r_keys):
        raise ValueError(
            "unlearned and reference sweeps must cover the same ψ values; "
            f"only in unlearned: {missing}, only in reference: {extra}"
        )


def _matching(by_psi: Mapping[float, Any], psi: float) -> float:
    """The key of ``by_psi`` equal to ``psi`` up to the ψ tolerance (``_check_sweeps`` made sure there is one)."""
    return next(k for k in by_psi if find_psi([float(k)], psi) is not None)
