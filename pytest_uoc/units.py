"""The units every layer shares: ψ and restoration strength, how two of them compare, default grids, names.

One place so that the engine, scoring, the probe, the options and the CLI check a ψ the same way,
with the same tolerance and the same error text. No torch import: the plugin reads this at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "IMAGES_DIFFER_TOLERANCE",
    "BACKBONES",
    "DEFAULT_PSIS",
    "PAPER_PSI_GRID",
    "PSI_TOLERANCE",
    "check_psi",
    "check_psis",
    "check_strength",
    "check_strengths",
    "check_unit",
    "find_psi",
    "same_psi",
]

#: Two ψ (or strengths) closer than this are the same point of a curve.
PSI_TOLERANCE = 1e-9
#: Mean absolute pixel difference above which λU "differs visibly" from λO (probe and rounds).
IMAGES_DIFFER_TOLERANCE = 0.02

#: The ψ grid of curves and reports (``--uoc-psis``'s default).
DEFAULT_PSIS: tuple[float, ...] = (0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.75)

#: The ψ values over which the paper averages CCS(ψ) and CRS.
PAPER_PSI_GRID: tuple[float, ...] = (0.001, 0.01, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55)

#: Domain-classifier backbones (timm names).
BACKBONES: tuple[str, ...] = ("resnet18", "densenet121", "efficientnet_b0")
#: Training recipes of the domain classifier (``scoring.classifier``): "small" (Adam, 8 epochs, 64 or 128 px)
#: and "paper" (arXiv 2409.05668: SGD, 10 epochs, 224 px, triplet loss).
CLASSIFIER_RECIPES: tuple[str, ...] = ("small", "paper")

_STRENGTH_HINT = " (0: the reference as is, 1: pure noise)"


def check_unit(value: object, *, name: str, hint: str = "") -> float:
    """Return ``value`` as a float after checking it is a finite number in [0, 1]; the error names ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) and not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r} ({type(value).__name__})")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be a finite number in [0, 1]{hint}, got {value!r}")
    return number


def check_psi(psi: object, *, name: str = "psi") -> float:
    """ψ, the share of the denoising the original model draws, as a float in [0, 1]."""
    return check_unit(psi, name=name)


def check_strength(strength: object, *, name: str = "strength") -> float:
    """A restoration strength (how far the reference is noised) as a float in [0, 1]."""
    return check_unit(strength, name=name, hint=_STRENGTH_HINT)


def _check_units(values: object, *, plural: str, singular: str, hint: str = "") -> list[float]:
    if isinstance(values, int | float) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, Iterable) or isinstance(values, str | bytes):
        raise TypeError(f"{plural} must be a list of numbers in [0, 1], got {values!r}")
    checked = [check_unit(v, name=f"every {singular}", hint=hint) for v in values]
    if not checked:
        raise ValueError(f"{plural} must not be empty: give at least one {singular}")
    return checked


def check_psis(psis: object) -> list[float]:
    """A ψ or a list of ψ as a non-empty list of floats in [0, 1] (order kept)."""
    return _check_units(psis, plural="psis", singular="psi")


def check_strengths(strengths: object) -> list[float]:
    """A strength or a list of strengths as a non-empty list of floats in [0, 1] (order kept)."""
    return _check_units(strengths, plural="strengths", singular="strength", hint=_STRENGTH_HINT)


def same_psi(a: float, b: float) -> bool:
    """Whether two ψ (or strengths) are the same point, up to ``PSI_TOLERANCE``."""
    return math.isclose(a, b, rel_tol=0.0, abs_tol=PSI_TOLERANCE)


def find_psi(psis: Iterable[float], psi: float) -> float | None:
    """The key among ``psis`` equal to ``psi`` up to ``PSI_TOLERANCE``, or None."""
    for key in psis:
        if same_psi(key, psi):
            return key
    return None
