"""Gates of the learned recovery attacks: concept inversion and adversarial prompt search.

``guidance="inversion"``: a token embedding learned against each model (``Probe.inversion``);
``guidance="prompt_attack"``: real tokens prepended to each concept prompt, searched against
each model (``Probe.prompt_attack``). Either attack is run on the unlearned model, the
original and the gold standard when there is one; each draws on the scoring seeds with what
was learned against it, and ``scoring.attack_verdict.decide_attack`` decides from the shares
of drawings that show the concept. No pytest here.
"""

from __future__ import annotations

from typing import Any

from ..report import write_labelled_grid
from ..rows import Check, GateEntry, RowUpdate
from ._common import ARTIFACTS_HINT, bars, title
from .result import GateResult, Picture

__all__ = ["ATTACKS", "attack_settings", "evaluate"]

#: Each attack (also the name of the probe method that runs it): its gate name and its name in text.
ATTACKS = {"inversion": ("not_invertible", "concept inversion"),
           "prompt_attack": ("not_prompt_attackable", "adversarial prompt search")}
#: Drawings per attacked model shown in the image grid.
GRID_IMAGES = 8


def evaluate(probe: Any, attack: str, ccs_max: float, settings: Any = None, *,
             concealed_above: float | None = None) -> GateResult:
    """The ``attack`` gate ("inversion" or "prompt_attack") with budget ``settings`` (None: the attack's defaults)."""
    from ..scoring.attack_verdict import decide_attack

    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}")
    gate, label = ATTACKS[attack]
    result = getattr(probe, attack)(settings)
    judged = probe.judge is not None
    plain = probe.concept_values([0.0])[0.0]  # the unlearned model's own images (ψ = 0, scoring seeds)
    verdict = decide_attack(attack, result.values["unlearned"], result.values["original"],
                            result.values.get("reference"), plain=plain.numpy(), ccs_max=ccs_max,
                            concealed_above=concealed_above,
                            heldout_accuracy=None if judged else probe.heldout_accuracy,
                            accuracy_floor=probe.settings.accuracy_floor, seed=result.settings.seed)
    decided_by = probe.concept_scorer
    checks = []
    if verdict.gap is not None:
        checks.append(Check.compare(f"gap to the gold standard after {label}, upper 95% bound", verdict.gap.high,
                                    ccs_max, "max"))
        checks.append(Check.compare(f"gap to the gold standard after {label}, lower 95% bound", verdict.gap.low,
                                    verdict.concealed_above, "max"))
        checks.append(Check.compare("attack's check: original's excess over the gold standard, lower 95% bound",
                                    verdict.original_gap.low, ccs_max, "min"))
    else:
        checks.append(Check.compare(f"share showing the concept after {label}, upper 95% bound",
                                    verdict.unlearned.high, ccs_max, "max"))
        checks.append(Check.compare(f"attack's check: original's share after {label}, lower 95% bound",
                                    verdict.original.low, ccs_max, "min"))
    if verdict.heldout_accuracy is not None:
        checks.append(Check.compare("classifier held-out accuracy", verdict.heldout_accuracy,
                                    verdict.accuracy_floor, "min"))
    summary = {**verdict.to_dict(), **result.to_dict(), "decided_by": decided_by}
    headline = {"verdict": verdict.kind, "ccs_max": ccs_max, "guidance": attack}
    row = RowUpdate({attack: summary}, GateEntry.of(gate, checks, passed=verdict.passed), headline)
    models = list(result.values)
    shares = {name: result.share(name) for name in models}
    pictures = (
        bars(probe, f"{attack}.png", models, {f"after {label}": [shares[m].mean for m in models]},
             limit=ccs_max, limit_name="ccs_max", ylim=(0.0, 1.0), suffix=f": {verdict.kind}",
             ylabel=f"share of drawings showing the concept ({decided_by})"),
        Picture(f"{attack}_images.png", lambda path: write_labelled_grid(
            [(f"{name}: {_first_prompt(result, name)!r}", result.images[name][:GRID_IMAGES]) for name in models],
            path, title=title(probe) + f" ({label})")),
    )
    if verdict.passed:
        return GateResult(True, verdict, row, pictures=pictures)
    lines = [f"concept {probe.concept.name!r} is {verdict.kind.upper()} under {label}: {verdict.reason}"]
    lines += _what_was_learned(result, attack, shares)
    lines.append(f"decided by: {decided_by}"
                 + ("" if verdict.gap is not None else
                    " (no gold standard: --uoc-reference names one, and the paired gap then decides)"))
    return GateResult(False, verdict, row, "\n".join(lines), pictures, ARTIFACTS_HINT)


def attack_settings(attack: str, budget: Any, seed: int) -> Any:
    """``budget`` (None or a dict of the attack's settings fields) as its settings; the seed defaults to ``seed``.

    The settings: ``attacks.inversion.InversionSettings``, ``attacks.prompt_search.PromptSearchSettings``.
    """
    from dataclasses import fields

    from ..attacks.inversion import InversionSettings
    from ..attacks.prompt_search import PromptSearchSettings

    kind = InversionSettings if attack == "inversion" else PromptSearchSettings
    keys = tuple(f.name for f in fields(kind))
    if budget is None:
        budget = {}
    if not isinstance(budget, dict):
        raise TypeError(f"budget must be a dict with keys among {', '.join(keys)}, got {type(budget).__name__}")
    unknown = sorted(set(budget) - set(keys))
    if unknown:
        raise ValueError(f"budget: unknown key(s) {', '.join(map(repr, unknown))} for guidance={attack!r}; "
                         f"expected some of {', '.join(keys)}")
    return kind(**{"seed": seed, **budget})


def _first_prompt(result: Any, model: str) -> str:
    """The prompt of a model's first drawings: the token prompt, or the first found prompt."""
    if hasattr(result, "found"):
        return result.found[model][0].text
    return result.prompts[0]


def _what_was_learned(result: Any, attack: str, shares: dict[str, Any]) -> list[str]:
    """Per attacked model: its share after the attack and what the attack learned against it; then the budget."""
    budget = result.settings
    lines = []
    if attack == "inversion":
        lines.append(f"  {'model':<10} | {'share after inversion':^24} | learning loss (first -> last)")
        for name, share in shares.items():
            losses = result.tokens[name].losses
            lines.append(f"  {name:<10} | {str(share):^24} | {losses[0]:.4f} -> {losses[-1]:.4f}"
                         + ("  (cached)" if result.tokens[name].from_cache else ""))
        lines.append(f"attack: one token {result.token!r} learned per model ({budget.steps} steps, lr {budget.lr:g}, "
                     f"batch {budget.batch_size}, seed {budget.seed}) on the original's images of the concept "
                     f"(training seeds); drawn with {', '.join(repr(p) for p in result.prompts[:3])}"
                     + (" ..." if len(result.prompts) > 3 else "") + " on the scoring seeds")
        return lines
    lines.append(f"  {'model':<10} | {'share after the search':^24} | found prompts (fixed-batch loss)")
    for name, share in shares.items():
        found = result.found[name]
        shown = "; ".join(f"{item.text!r} ({item.best_loss:.4f})" for item in found[:3])
        more = f"; ... {len(found) - 3} more" if len(found) > 3 else ""
        cached = "  (cached)" if found and found[0].from_cache else ""
        lines.append(f"  {name:<10} | {str(share):^24} | {shown}{more}{cached}")
    lines.append(f"attack: {budget.tokens} tokens prepended to each concept prompt, searched per model "
                 f"({budget.steps} steps, lr {budget.lr:g}, batch {budget.batch_size}, seed {budget.seed}) on the "
                 "original's images of that prompt (training seeds); drawn on the scoring seeds (every found prompt "
                 "is in the JSON report)")
    return lines
