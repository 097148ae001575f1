"""Gate "aligned": the unlearned model still draws what general prompts ask for (HUB's alignment).

A judge labels each image; the fraction labelled as expected must lie wholly at or above
``min_accuracy`` (its 95% interval). No pytest here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rows import Check, GateEntry, RowUpdate
from ._common import bars, prompt_grid
from .result import GateResult

__all__ = ["evaluate"]


def evaluate(probe: Any, prompts: Sequence[str], expected: Any, min_accuracy: float, judge: Any) -> GateResult:
    """The gate over ``prompts`` (checked prompt strings); ``expected``: one label per prompt, or one for all."""
    prompt_list = list(prompts)
    result = probe.alignment(prompt_list, expected, judge)
    row = RowUpdate({"alignment": {**result.to_dict(), "min_accuracy": min_accuracy}},
                    GateEntry.of("aligned", [Check.compare("judged accuracy, lower 95% bound", result.accuracy.low,
                                                           min_accuracy, "min")]))
    original = "" if result.baseline is None else f" (the original: {result.baseline:.3f})"
    pictures = (bars(probe, "alignment.png", [repr(p) for p in result.per_prompt],
                     {"unlearned": list(result.per_prompt.values())}, suffix=original, limit=min_accuracy,
                     limit_name="min_accuracy", ylabel="judged accuracy"),
                *prompt_grid(probe, "alignment_images.png", prompt_list,
                             [("original", 1.0, False), ("unlearned", 0.0, False)]))
    if result.accuracy.low >= min_accuracy:
        return GateResult(True, result, row, pictures=pictures)
    baseline = "" if result.baseline is None else f"; the original model: {result.baseline:.3f}"
    lines = [f"concept {probe.concept.name!r}: the unlearned model is NOT ALIGNED on general prompts: judged "
             f"accuracy {result.accuracy} < min_accuracy {min_accuracy}{baseline}"]
    width = max(8, *(len(repr(p)) for p in prompt_list))
    lines.append(f"  {'prompt':<{width}} | accuracy")
    lines += [f"  {p!r:<{width}} | {a:>8.3f}" for p, a in result.per_prompt.items()]
    return GateResult(False, result, row, "\n".join(lines), pictures)
