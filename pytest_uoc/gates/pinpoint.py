"""Gate "pinpoint": unlearning did not damage concepts close to the target (HUB's pinpoint-ness).

The retention distance on neighbour prompts must lie wholly at or below ``max_distance``;
with ``min_accuracy`` the judged accuracy on them must lie wholly at or above it. No pytest here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..rows import Check, GateEntry, RowUpdate
from ._common import bars, retention_pictures
from .result import GateResult

__all__ = ["evaluate"]


def evaluate(probe: Any, neighbors: Sequence[str] | Mapping[str, Any], max_distance: float, *,
             judge: Any = None, min_accuracy: float | None = None, distance: str = "auto") -> GateResult:
    """The gate over ``neighbors`` (prompts, or prompt -> expected label for the judge)."""
    result = probe.pinpoint(neighbors, judge=judge, distance=distance)
    r, acc = result.retention, result.accuracy
    problems = []
    if r.high > max_distance:
        problems.append(f"mean {r.distance} distance {r.mean:.3f} (95% CI [{r.low:.3f}, {r.high:.3f}], {r.n} pairs) "
                        f"exceeds max_distance {max_distance}")
    if min_accuracy is not None and acc is not None and acc.accuracy.low < min_accuracy:
        against = "the original's labels" if acc.expected == "original" else "the expected labels"
        problems.append(f"judged accuracy {acc.accuracy} against {against} is below min_accuracy {min_accuracy}")
    checks = [Check.compare(f"mean {r.distance} distance, upper 95% bound", r.high, max_distance, "max")]
    if min_accuracy is not None and acc is not None:
        checks.append(Check.compare("judged accuracy, lower 95% bound", acc.accuracy.low, min_accuracy, "min"))
    row = RowUpdate({"pinpoint": {**result.to_dict(), "max_distance": max_distance, "min_accuracy": min_accuracy}},
                    GateEntry.of("pinpoint", checks))
    pictures = retention_pictures(probe, list(neighbors), r, max_distance, "pinpoint")
    if acc is not None:
        pictures += (bars(probe, "pinpoint_accuracy.png", [repr(p) for p in acc.per_prompt],
                          {"unlearned": list(acc.per_prompt.values())}, limit=min_accuracy,
                          limit_name="min_accuracy", ylabel="judged accuracy"),)
    if not problems:
        return GateResult(True, result, row, pictures=pictures)
    lines = [f"concept {probe.concept.name!r}: unlearning DAMAGED NEIGHBOURING CONCEPTS: " + "; ".join(problems)]
    if acc is not None:
        width = max(8, *(len(repr(p)) for p in acc.per_prompt))
        lines.append(f"  {'neighbor':<{width}} | accuracy")
        lines += [f"  {p!r:<{width}} | {a:>8.3f}" for p, a in acc.per_prompt.items()]
        if acc.baseline is not None:
            lines.append(f"the original model's accuracy on the same seeds: {acc.baseline:.3f}")
    return GateResult(False, result, row, "\n".join(lines), pictures)
