"""Gate "erased": the unlearned model alone (ψ = 0) no longer draws the concept, also under other prompts.

Without prompts this is the "not retrievable" gate at ψ = 0; with prompts (paraphrases,
other languages: HUB's robustness facets) the unlearned model's own images of them are
scored by the same domain classifier. No pytest here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rows import Check, GateEntry, RowUpdate
from . import retrievable
from ._common import bars, prompt_grid
from .result import GateResult

__all__ = ["evaluate"]


def evaluate(probe: Any, ccs_max: float, prompts: Sequence[str] | None = None) -> GateResult:
    """The gate over the concept prompts at ψ = 0, or over ``prompts`` (checked, distinct prompt strings)."""
    if prompts is None:
        return retrievable.evaluate(probe, psi=0.0, ccs_max=ccs_max, gate="erased")
    prompt_list = list(prompts)
    result = probe.prompt_ccs(prompt_list)
    accuracy = probe.heldout_accuracy
    floor = probe.settings.accuracy_floor
    retrieving = result.retrieving(ccs_max)
    overall = result.overall
    worst = max(result.per_prompt, key=lambda p: result.per_prompt[p].low)
    checks = [Check.compare(f"CCS over {len(prompt_list)} prompts, upper 95% bound", overall.high, ccs_max, "max"),
              Check.compare(f"CCS of one prompt, lower 95% bound (highest: {worst!r})", result.per_prompt[worst].low,
                            ccs_max, "max"),
              Check.compare("classifier held-out accuracy", accuracy, floor, "min")]
    row = RowUpdate({"prompt_ccs": {**result.to_dict(), "ccs_max": ccs_max}}, GateEntry.of("erased", checks))
    labels = [*prompt_list, f"(all {len(prompt_list)})"]
    values = [(e.mean, e.low, e.high) for e in (*(result.per_prompt[p] for p in prompt_list), result.overall)]
    pictures = (bars(probe, "prompt_ccs.png", labels, {"unlearned model alone (ψ = 0)": values}, limit=ccs_max,
                     limit_name="ccs_max", ylabel="CCS"),
                *prompt_grid(probe, "prompt_images.png", prompt_list, [("unlearned", 0.0, False)]))
    if accuracy < floor:
        head = (f"concept {probe.concept.name!r} is INCONCLUSIVE under other prompts: the classifier cannot "
                f"tell λO from λU (held-out accuracy {accuracy:.3f} < {floor:.2f}), so its scores mean nothing "
                "(if the unlearned model still draws like the original, the concept was not erased at all)")
    elif retrieving or overall.low > ccs_max:
        named = ", ".join(repr(p) for p in retrieving) or "no single prompt, but all of them together"
        head = (f"concept {probe.concept.name!r} is NOT ERASED under other prompts: CCS over "
                f"{len(prompt_list)} prompts {overall} > ccs_max {ccs_max}; retrieved by {named}")
    elif overall.high > ccs_max:
        head = (f"concept {probe.concept.name!r} is INCONCLUSIVE under other prompts: CCS over "
                f"{len(prompt_list)} prompts {overall} straddles ccs_max {ccs_max}: use more seeds to decide")
    else:
        return GateResult(True, result, row, pictures=pictures)
    from ..scoring.verdict import retrieved  # here, not at the top: scoring imports torch

    width = max(8, *(len(repr(p)) for p in prompt_list))
    lines = [head, f"  {'prompt':<{width}} | {'CCS':>6} | {'95% CI':^17} | {'limit':>5}"]
    for prompt, est in result.per_prompt.items():
        flag = "  <- retrieved" if retrieved(est, ccs_max) else ("  <- above limit" if est.mean > ccs_max else "")
        interval = f"[{est.low:.3f}, {est.high:.3f}]"
        lines.append(f"  {prompt!r:<{width}} | {est.mean:>6.3f} | {interval:^17} | {ccs_max:>5.2f}{flag}")
    lines.append(f"classifier held-out accuracy: {accuracy:.3f} (floor {floor:.2f}, {probe.settings.backbone})")
    return GateResult(False, result, row, "\n".join(lines), pictures)
