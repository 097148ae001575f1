"""Hypothesis strategies for probing a concept: ψ values, seeds and prompts.

Use them with session-scoped models and the ``uoc`` settings profile (no
deadline, few examples, derandomised in CI)::

    from hypothesis import given, settings
    from pytest_uoc.strategies import psis

    @settings(settings.get_profile("uoc"))
    @given(psi=psis(max_value=0.55))
    @pytest.mark.uoc_concept("three")
    def test_never_retrieved(uoc, psi):
        assert uoc.ccs(psi).mean <= 0.2

ψ values are drawn on a 0.001 grid, so examples map onto the probe's image
cache instead of each costing a new sweep.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

__all__ = ["prompts", "psis", "seeds"]


def psis(min_value: float = 0.0, max_value: float = 1.0, *, resolution: float = 0.001) -> st.SearchStrategy[float]:
    """ψ values in [min_value, max_value] on a grid of ``resolution``."""
    for name, value in (("min_value", min_value), ("max_value", max_value)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if min_value > max_value:
        raise ValueError(f"min_value {min_value} is above max_value {max_value}")
    if not 0 < resolution <= 1:
        raise ValueError(f"resolution must be in (0, 1], got {resolution!r}")
    low, high = math.ceil(min_value / resolution - 1e-9), math.floor(max_value / resolution + 1e-9)
    return st.integers(low, high).map(lambda k: round(min(max(k * resolution, min_value), max_value), 6))


def seeds(max_value: int = 2**31 - 1) -> st.SearchStrategy[int]:
    """Non-negative generator seeds."""
    if max_value < 0:
        raise ValueError(f"max_value must be >= 0, got {max_value}")
    return st.integers(0, max_value)


def prompts(concept: Any) -> st.SearchStrategy[str]:
    """One of a concept's prompts (a ``Concept``, a probe, or a list of strings)."""
    items = getattr(getattr(concept, "concept", concept), "prompts", concept)
    if isinstance(items, str) or not items:
        raise ValueError(f"prompts() needs a Concept, a probe or a non-empty list of prompts, got {concept!r}")
    return st.sampled_from(list(items))
