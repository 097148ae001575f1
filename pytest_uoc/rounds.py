"""Sequential verdicts: the probe's evidence in rounds of seeds, stopping as soon as the verdict is decided.

``--uoc-sequential on`` (opt-in; calibrated rule, partial-diffusion gate). The rule is the
calibrated one (``scoring.calibration``); only when it looks, and with which intervals, changes:

- the classifier trains first, on the first half of the seeds, as in the fixed design, and never
  changes (the documented rule for its training images);
- the scored half of the seeds comes in rounds of ``round_seeds`` per prompt; after each round
  every interval is recomputed on all images so far, as a confidence sequence
  (``scoring.sequential``, error ``EARLY_ALPHA``), valid at every look: looking after each round
  adds no optional-stopping bias;
- a round first makes only the unlearned model's own images (ψ = 0): with a judge, a model that
  draws the concept on its own is ``not_erased`` without any sweep or null finish;
- a decided verdict (forgotten, concealed, not_erased) stops the probe; at the budget (every scored
  seed; with ``max_seeds``, the seeds after the largest too, up to ``max_seeds`` per prompt in all,
  training half included) the fixed design's bootstrap decides at level ``FINAL_ALPHA`` and an
  undecided verdict is ``inconclusive: more seeds needed``. The two error shares add up to the fixed
  design's 0.05.

The verdict's ``sequential`` field records every look and why it stopped; the same seeds give the
same looks and the same verdict, bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import progress
from .scoring.sequential import EARLY_ALPHA, FINAL_ALPHA, SequentialIntervals, looks
from .scoring.stats import BootstrapIntervals
from .units import IMAGES_DIFFER_TOLERANCE

if TYPE_CHECKING:
    from .scoring.verdict import Verdict

#: A ``probe.Probe`` (named, not imported: probe imports this module to decide in rounds).
Probe = Any

__all__ = ["sequential_verdict", "settled"]

_DECIDED = ("forgotten", "concealed", "not_erased")
_WENT_ON = "concealed, but the model's own share at ψ = 0 may still prove above ccs_max (not_erased ranks first)"


def settled(verdict: Verdict, ccs_max: float) -> bool:
    """Whether an early look's verdict is final, so the probe may stop.

    The rule ranks "draws the concept on its own" (``not_erased``) above ``concealed``: a look that
    proves concealment while the model's own share at ψ = 0 could still prove above ``ccs_max`` goes on,
    as later seeds may yet prove ``not_erased``; it stops once that share's upper bound is within
    ``ccs_max``. ``forgotten`` and ``not_erased`` stop at once.
    """
    if verdict.kind == "concealed":
        curve = verdict.calibrated_curve
        if curve is None:
            return True
        return curve.at(curve.psis[0]).unlearned.high <= ccs_max
    return verdict.kind in _DECIDED


def _prompt_major(parts: Sequence[torch.Tensor], prompts: int) -> np.ndarray:
    """Per-image values of several rounds (each prompt-major over its own seeds) as one prompt-major array."""
    rows = [np.asarray(part.detach().cpu().double().numpy()).reshape(prompts, -1) for part in parts]
    return np.concatenate(rows, axis=1).reshape(-1)


def _combined(rounds: list[Probe], psis: list[float], source: str, prompts: int,
              domain: bool = False) -> dict[float, np.ndarray]:
    values = [(r.scores(psis, source) if domain else r.concept_values(psis, source)) for r in rounds]
    return {p: _prompt_major([v[p] for v in values], prompts) for p in psis}


def _decide(probe: Probe, rounds: list[Probe], grid: list[float], psi_limit: float, ccs_max: float,
            final: bool) -> Verdict:
    """The calibrated verdict on the images of ``rounds`` over ``grid`` (a confidence sequence unless ``final``)."""
    from .scoring import decide_calibrated
    from .scoring.calibration import calibrated_curve
    from .scoring.ccs import CCSCurve

    prompts = len(probe.concept.prompts)
    make = (BootstrapIntervals(n_boot=probe.settings.n_boot, seed=probe.settings.seed, confidence=1 - FINAL_ALPHA)
            if final else SequentialIntervals(prompts, EARLY_ALPHA))
    domain = _combined(rounds, grid, "unlearned", prompts, domain=True)
    ccs = CCSCurve.from_estimates({p: make.mean(v) for p, v in domain.items()}, probabilities=domain)
    sources = {s: _combined(rounds, grid, s, prompts) for s in ("unlearned", "upper", "lower")}
    reference = _combined(rounds, grid, "reference", prompts) if "reference" in probe.bank.sweeps else None
    curve = calibrated_curve(
        sources["unlearned"], sources["upper"], sources["lower"],
        original_steps={p: probe.engine.steps_for(p).handoff for p in grid}, total_steps=len(probe.engine.timesteps),
        anchors=probe.anchors, reference=reference, ccs=ccs, scorer=probe.concept_scorer, intervals=make)
    sizes = [len(r.eval_seeds) for r in rounds]
    heldout = sum(r.heldout_accuracy * n for r, n in zip(rounds, sizes, strict=True)) / sum(sizes)
    difference = sum(float(r.mean_image_difference()) * n for r, n in zip(rounds, sizes, strict=True)) / sum(sizes)
    extra: dict[str, Any] = {} if final else {"min_images": 1}  # a confidence sequence needs no minimum sample
    return decide_calibrated(curve, psi_limit=psi_limit, ccs_max=ccs_max, heldout_accuracy=heldout,
                             accuracy_floor=probe.settings.accuracy_floor, images_differ=difference > IMAGES_DIFFER_TOLERANCE,
                             steps_needed=probe.steps_needed(grid),
                             steps_at=lambda p: probe.engine.steps_for(p).handoff, **extra)


def sequential_verdict(probe: Probe, psi_limit: float, ccs_max: float) -> Verdict:
    """The calibrated verdict of ``probe`` at ``psi_limit``, decided in rounds (see the module docstring)."""
    grid = probe.verdict_grid(psi_limit)
    seeds = probe.budget_seeds  # the scored half, then (max_seeds) the seeds after the largest
    budget = len(seeds)
    counts = looks(budget, probe.settings.round_seeds)
    probe.classifier  # noqa: B018 - trained once, on the training half, before any look
    if probe.judge is None:
        probe.concept_classifier  # noqa: B018 - the judge-free fallback, also trained once
    rounds: list[Probe] = []
    history: list[dict[str, Any]] = []
    verdict: Verdict | None = None
    made = 0
    for number, count in enumerate(counts, start=1):
        rounds.append(probe.scoring_round(seeds[made:count]))
        made = count
        final = count == budget
        with progress.phase("sweeps", number):
            if probe.judge is not None and not final:
                # The model's own images first: drawing the concept alone needs no sweep to be decided.
                alone = _decide(probe, rounds, [0.0], psi_limit, ccs_max, final=False)
                if alone.kind == "not_erased":
                    verdict = alone
                    history.append({"look": number, "seeds_per_prompt": count, "psis": [0.0], "kind": alone.kind})
                    break
            verdict = _decide(probe, rounds, grid, psi_limit, ccs_max, final)
        stops = final or settled(verdict, ccs_max)
        history.append({"look": number, "seeds_per_prompt": count, "psis": grid, "kind": verdict.kind,
                        **({} if stops or verdict.kind not in _DECIDED else {"went_on": _WENT_ON})})
        if stops:
            break
    assert verdict is not None
    decided = verdict.kind in _DECIDED
    record = {
        "design": "confidence sequences at every look, the fixed design's bootstrap at the budget",
        "round_seeds": probe.settings.round_seeds, "budget_seeds": budget,
        "max_seeds": len(probe.train_seeds) + budget,
        "early_alpha": EARLY_ALPHA, "final_alpha": FINAL_ALPHA, "looks": history,
        "stopped": ("decided" if decided else "budget") + f" after {history[-1]['seeds_per_prompt']} of {budget} "
                   "scored seeds per prompt",
    }
    reason = verdict.reason if decided else (
        f"more seeds needed (budget of {budget} scored seeds per prompt spent; raise --uoc-max-seeds): {verdict.reason}")
    return dataclasses.replace(verdict, reason=reason, sequential=record)
