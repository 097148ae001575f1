"""Gate "retained": unlearning did not change what the model draws for retain prompts (arXiv 2411.02068).

The mean distance between original and unlearned images of the same prompt and seed must
stay at or below ``max_distance`` (its whole 95% interval). No pytest here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rows import Check, GateEntry, RowUpdate
from ._common import retention_pictures
from .result import GateResult

__all__ = ["evaluate"]


def evaluate(probe: Any, max_distance: float, prompts: Sequence[str] | str | None = None, *,
             distance: str = "auto") -> GateResult:
    """The gate over ``prompts`` (default: the concept's retain prompts)."""
    result = probe.retention(prompts, distance=distance)
    row = RowUpdate({"retention": round(result.mean, 4), "retention_distance": result.distance},
                    GateEntry.of("retained", [Check.compare(f"mean {result.distance} distance, upper 95% bound",
                                                            result.high, max_distance, "max")]))
    retain = ([prompts] if isinstance(prompts, str) else list(prompts) if prompts is not None
              else list(getattr(probe.concept, "retain", ()) or ()))
    pictures = retention_pictures(probe, retain, result, max_distance, "retention") if retain else ()
    if result.high <= max_distance:
        return GateResult(True, result, row, pictures=pictures)
    return GateResult(False, result, row, (
        f"concept {probe.concept.name!r}: retain prompts changed: mean {result.distance} distance "
        f"{result.mean:.3f} (95% CI [{result.low:.3f}, {result.high:.3f}], {result.n} pairs) "
        f"exceeds max_distance {max_distance}"), pictures)
