"""Gate "no leakage": the unlearned model draws the concept unasked no more often than the gold standard.

Images of unrelated prompts (default: the empty prompt) from the unlearned model and the
baseline (the reference model, else the original) on the same seeds; a judge or the
domain classifier decides per image. Fails when the paired 95% interval of the excess
rate lies wholly above ``max_excess``. No pytest here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rows import Check, GateEntry, RowUpdate
from ._common import bars, prompt_grid
from .result import GateResult

__all__ = ["evaluate"]


def evaluate(probe: Any, prompts: Sequence[str], max_excess: float, *, judge: Any = None) -> GateResult:
    """The gate over ``prompts`` (checked prompt strings); ``judge(images)`` gives booleans, else the classifier."""
    prompt_list = list(prompts)
    result = probe.leakage(prompt_list, judge=judge)
    row = RowUpdate({"leakage": {**result.to_dict(), "max_excess": max_excess}},
                    GateEntry.of("no_leakage", [Check.compare(
                        f"excess concept rate over the {result.baseline} model, lower 95% bound",
                        result.excess.low, max_excess, "max")]))
    series = {"unlearned": [u for u, _ in result.per_prompt.values()],
              result.baseline: [b for _, b in result.per_prompt.values()]}
    baseline_source = ((result.baseline, 0.0, True) if result.baseline == "reference"
                       else (result.baseline, 1.0, False))
    pictures = (bars(probe, "leakage.png", [repr(p) for p in result.per_prompt], series,
                     suffix=f": excess {result.excess.mean:.3f} [{result.excess.low:.3f}, {result.excess.high:.3f}]",
                     ylabel=f"share of images showing the concept ({result.decided_by})"),
                *prompt_grid(probe, "leakage_images.png", prompt_list,
                             [("unlearned", 0.0, False), baseline_source]))
    if result.excess.low <= max_excess:
        return GateResult(True, result, row, pictures=pictures)
    baseline = ("the reference (gold-standard) model" if result.baseline == "reference" else
                "the ORIGINAL model (no reference model given: --uoc-reference names a gold standard)")
    lines = [f"concept {probe.concept.name!r} LEAKS without being asked: the unlearned model draws it in "
             f"{result.unlearned_rate:.3f} of images vs {result.baseline_rate:.3f} for {baseline}; excess "
             f"{result.excess} > max_excess {max_excess} (paired over {result.n} images, "
             f"McNemar p={result.p_value:.3g}; decided by {result.decided_by})"]
    width = max(8, *(len(repr(p)) for p in prompt_list))
    lines.append(f"  {'prompt':<{width}} | {'unlearned':>9} | {result.baseline:>9}")
    for prompt, (u, b) in result.per_prompt.items():
        lines.append(f"  {prompt!r:<{width}} | {u:>9.3f} | {b:>9.3f}")
    return GateResult(False, result, row, "\n".join(lines), pictures)
