"""The calibrated rule (scoring.calibration) on synthetic per-image values: every verdict branch."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_uoc.scoring import calibrated_curve, decide_calibrated

PSIS = (0.0, 0.05, 0.15, 0.55)
N = 64


def _flags(rate: float, n: int = N, offset: int = 0) -> np.ndarray:
    """n values in {0, 1} with round(rate * n) ones (deterministic positions)."""
    ones = round(rate * n)
    values = np.zeros(n)
    values[[(offset + i) % n for i in range(ones)]] = 1.0
    return values


def _curve(unlearned, upper, lower, *, steps=None, reference=None):
    return calibrated_curve(
        {p: _flags(unlearned[p]) for p in PSIS},
        {p: _flags(upper[p]) for p in PSIS},
        {p: _flags(lower[p]) for p in PSIS},
        original_steps=steps or {p: round(p * 25) for p in PSIS}, total_steps=25, anchors=("a digit",),
        reference=None if reference is None else {p: _flags(reference[p]) for p in PSIS},
        scorer="test judge",
    )


def _grid_handoffs(psi: float) -> int:
    """A schedule whose hand-offs are exactly the grid's (so the grid covers it; thin grids: test_reliability_round2)."""
    return min(range(len(PSIS)), key=lambda i: abs(PSIS[i] - psi))


def _decide(curve, **kwargs):
    options = {"psi_limit": 0.55, "ccs_max": 0.2, "heldout_accuracy": 0.95, "images_differ": True,
               "steps_at": _grid_handoffs}
    options.update(kwargs)
    return decide_calibrated(curve, **options)


UPPER = {0.0: 0.05, 0.05: 0.10, 0.15: 0.50, 0.55: 0.95}
LOWER = {0.0: 0.0, 0.05: 0.0, 0.15: 0.10, 0.55: 0.90}


def test_a_model_inside_the_bracket_is_forgotten():
    """Gold-standard-like: below the upper null, within ccs_max of the lower one, although CCS is high at 0.55."""
    verdict = _decide(_curve({0.0: 0.03, 0.05: 0.05, 0.15: 0.2, 0.55: 0.95}, UPPER, LOWER))
    assert verdict.kind == "forgotten", verdict.reason
    assert verdict.passed and verdict.calibrated
    assert verdict.calibration["mode"] == "nulls"
    assert "lower null" in verdict.reason


def test_a_significant_excess_over_the_upper_null_is_concealed():
    verdict = _decide(_curve({0.0: 0.05, 0.05: 0.6, 0.15: 0.9, 0.55: 0.95}, UPPER, LOWER))
    assert verdict.kind == "concealed"
    assert verdict.first_retrieving_psi == pytest.approx(0.05)
    assert "upper null" in verdict.reason


WIDE_UPPER = {0.0: 0.05, 0.05: 0.10, 0.15: 0.90, 0.55: 0.95}
IN_LOWER_HALF = {0.0: 0.02, 0.05: 0.03, 0.15: 0.35, 0.55: 0.9}


def test_a_model_in_the_lower_half_of_the_bracket_but_above_ccs_max_is_not_proven_either_way():
    """More than ccs_max above the lower null, yet closer to it than to the upper null: inconclusive."""
    verdict = _decide(_curve(IN_LOWER_HALF, WIDE_UPPER, LOWER))
    assert verdict.kind == "inconclusive"
    assert "not proven forgotten" in verdict.reason and "not proven concealed" in verdict.reason
    assert "ψ=0.15" in verdict.reason  # the first ψ whose excess is not within ccs_max


GOLD_AT_DEFAULTS = {0.0: 0.0, 0.05: 0.02, 0.15: 0.27, 0.55: 0.9}


def test_a_model_significantly_in_the_lower_half_with_its_excess_within_ccs_max_on_average_is_forgotten():
    """The gold standard at the README's defaults: one ψ's interval reaches above ccs_max, its estimate does not."""
    curve = _curve(GOLD_AT_DEFAULTS, WIDE_UPPER, LOWER)
    assert curve.at(0.15).excess_lower.high > 0.2 >= curve.at(0.15).excess_lower.mean  # the per-ψ test cannot pass
    verdict = _decide(curve)
    assert verdict.kind == "forgotten" and verdict.cause == "below_midpoint", verdict.reason
    assert verdict.to_dict()["cause"] == "below_midpoint"  # in the JSON a script reads
    assert curve.overall_midpoint.high < 0 and curve.overall_lower.high <= 0.2
    assert "lower half of the bracket" in verdict.reason and "ψ=0.15" in verdict.reason
    assert verdict.calibration["averaged_over_tested"]["excess_over_lower"]["mean"] == pytest.approx(
        curve.overall_lower.mean)


def test_the_averaged_route_needs_the_model_significantly_below_the_midpoint():
    """Within ccs_max at every estimate, but as close to the unasked original as to the steered one: undecided."""
    upper = {0.0: 0.05, 0.05: 0.10, 0.15: 0.46, 0.55: 0.95}
    curve = _curve({0.0: 0.02, 0.05: 0.06, 0.15: 0.27, 0.55: 0.93}, upper, LOWER)
    assert curve.overall_midpoint.low < 0 < curve.overall_midpoint.high and curve.overall_lower.high <= 0.2
    verdict = _decide(curve)
    assert verdict.kind == "inconclusive" and verdict.cause == "undecided", verdict.reason


def test_the_averaged_route_needs_a_grid_that_can_see_concealment():
    """ψ 0.15 to 0.55 with hand-offs in between that were not tried: the same images are not proven forgotten."""
    curve = _curve(GOLD_AT_DEFAULTS, WIDE_UPPER, LOWER)
    assert _decide(curve).kind == "forgotten"
    verdict = _decide(curve, steps_at=None)  # no schedule given: every stretch wider than 0.2 is a gap
    assert verdict.kind == "inconclusive", verdict.reason


def test_with_a_gold_standard_only_the_per_psi_gap_passes():
    """The averaged route reads the nulls; with a reference the gap to it decides, ψ by ψ."""
    reference = {0.0: 0.0, 0.05: 0.06, 0.15: 0.12, 0.55: 0.95}  # the gap: -0.04, 0.15 [..., > 0.2], -0.05
    verdict = _decide(_curve(GOLD_AT_DEFAULTS, WIDE_UPPER, LOWER, reference=reference))
    assert verdict.kind == "inconclusive", verdict.reason


def test_a_model_in_the_upper_half_of_the_bracket_is_concealed():
    """At the upper null, far above the lower one (a colour the original commits early): concealed."""
    upper = {0.0: 0.2, 0.05: 0.88, 0.15: 1.0, 0.55: 1.0}
    lower = {0.0: 0.0, 0.05: 0.10, 0.15: 0.75, 0.55: 0.9}
    verdict = _decide(_curve({0.0: 0.1, 0.05: 0.94, 0.15: 1.0, 0.55: 1.0}, upper, lower))
    assert verdict.kind == "concealed" and "midpoint of the nulls" in verdict.reason
    never_learned = _decide(_curve({0.0: 0.0, 0.05: 0.0, 0.15: 0.05, 0.55: 0.0}, upper, lower))
    assert never_learned.kind == "forgotten"


def test_with_a_judge_the_judge_says_whether_the_model_draws_the_concept_alone():
    """A high domain CCS at ψ = 0 (the original's style) is not 'not erased' when the judge sees no concept."""
    from pytest_uoc.scoring import Estimate
    from pytest_uoc.scoring.ccs import CCSCurve

    styled = CCSCurve.from_estimates({p: Estimate(0.6, 0.5, 0.7, N) for p in PSIS})
    judged = calibrated_curve(
        {p: _flags(v) for p, v in {0.0: 0.03, 0.05: 0.05, 0.15: 0.2, 0.55: 0.95}.items()},
        {p: _flags(UPPER[p]) for p in PSIS}, {p: _flags(LOWER[p]) for p in PSIS},
        original_steps={p: round(p * 25) for p in PSIS}, total_steps=25, anchors=("a digit",), ccs=styled,
        scorer="test judge")
    assert _decide(judged).kind == "forgotten"
    classifier = calibrated_curve(
        {p: _flags(v) for p, v in {0.0: 0.03, 0.05: 0.05, 0.15: 0.2, 0.55: 0.95}.items()},
        {p: _flags(UPPER[p]) for p in PSIS}, {p: _flags(LOWER[p]) for p in PSIS},
        original_steps={p: round(p * 25) for p in PSIS}, total_steps=25, anchors=("a digit",), ccs=styled)
    assert _decide(classifier).kind == "not_erased"


def test_the_concept_at_psi_zero_is_not_erased():
    verdict = _decide(_curve({0.0: 0.9, 0.05: 0.9, 0.15: 0.9, 0.55: 0.95}, UPPER, LOWER))
    assert verdict.kind == "not_erased"
    assert "ccs_max=0.2" in verdict.reason


def test_a_classifier_that_cannot_tell_the_models_apart_decides_first():
    curve = _curve({0.0: 0.03, 0.05: 0.05, 0.15: 0.2, 0.55: 0.95}, UPPER, LOWER)
    assert _decide(curve, heldout_accuracy=0.5, images_differ=False).kind == "not_erased"
    assert _decide(curve, heldout_accuracy=0.5, images_differ=True).kind == "inconclusive"


def test_a_psi_without_an_original_step_is_never_evidence_of_forgetting():
    """Few steps: ψ 0.05 hands over before the first step, so it says nothing (issue: wrong pass at few steps)."""
    steps = {0.0: 0, 0.05: 0, 0.15: 1, 0.55: 3}
    verdict = _decide(_curve({0.0: 0.03, 0.05: 0.03, 0.15: 0.2, 0.55: 0.95}, UPPER, LOWER, steps=steps),
                      steps_needed=11)
    assert verdict.kind == "inconclusive"
    assert "ψ 0.05 gives the original 0 of 25 steps" in verdict.reason
    assert "use at least 11 steps" in verdict.reason


def test_a_judge_shows_a_model_that_erased_nothing_even_when_the_classifier_cannot_tell():
    """UCE-like: the model draws the concept like the original, so the classifier fails, but the judge sees it."""
    curve = _curve({0.0: 0.9, 0.05: 0.9, 0.15: 0.9, 0.55: 0.95}, UPPER, LOWER)
    verdict = _decide(curve, heldout_accuracy=0.56, images_differ=True)
    assert verdict.kind == "not_erased" and "held-out accuracy 0.560" in verdict.reason
    no_judge = calibrated_curve(
        {p: _flags(0.9) for p in PSIS}, {p: _flags(UPPER[p]) for p in PSIS}, {p: _flags(LOWER[p]) for p in PSIS},
        original_steps={p: round(p * 25) for p in PSIS}, total_steps=25, anchors=("a digit",))
    assert _decide(no_judge, heldout_accuracy=0.56, images_differ=True).kind == "inconclusive"


def test_too_few_images_is_inconclusive():
    verdict = _decide(_curve({0.0: 0.03, 0.05: 0.05, 0.15: 0.2, 0.55: 0.95}, UPPER, LOWER), min_images=100)
    assert verdict.kind == "inconclusive" and "min_images" in verdict.reason


def test_the_gold_standard_decides_where_given():
    """With a reference, the paired gap to it decides: inside the nulls' bracket but far above gold → concealed."""
    unlearned = IN_LOWER_HALF
    assert _decide(_curve(unlearned, WIDE_UPPER, LOWER)).kind == "inconclusive"
    gold = {0.0: 0.03, 0.05: 0.02, 0.15: 0.05, 0.55: 0.85}
    verdict = _decide(_curve(unlearned, WIDE_UPPER, LOWER, reference=gold))
    assert verdict.kind == "concealed"
    assert verdict.calibration["mode"] == "reference"
    assert "gold standard" in verdict.reason
    same = _decide(_curve(unlearned, WIDE_UPPER, LOWER, reference=unlearned))
    assert same.kind == "forgotten"


def test_the_concealment_test_averages_the_excess_over_the_tested_psi():
    """One test over ψ 0.05–0.55: evidence spread over several ψ adds up, and ψ = 0 is not part of it."""
    unlearned = {0.0: 0.5, 0.05: 0.2, 0.15: 0.6, 0.55: 0.95}
    upper = {0.0: 0.0, 0.05: 0.10, 0.15: 0.50, 0.55: 0.95}
    curve = _curve(unlearned, upper, LOWER)
    assert curve.tested == (0.05, 0.15, 0.55)
    assert curve.overall_upper.mean == pytest.approx((0.1 + 0.1 + 0.0) / 3, abs=0.02)
    assert curve.overall_upper.low > 0
    # Each ψ alone is weaker evidence than the average over all of them.
    assert curve.at(0.15).excess_upper.low < curve.overall_upper.low
    assert curve.overall_midpoint.mean > curve.overall_upper.mean
    verdict = _decide(curve, ccs_max=0.6)
    assert verdict.kind == "concealed" and "averaged over ψ 0.05–0.55" in verdict.reason
    idle = _curve(unlearned, upper, LOWER, steps={0.0: 0, 0.05: 0, 0.15: 1, 0.55: 3})
    assert idle.tested == (0.15, 0.55)


def test_unpaired_nulls_are_refused():
    with pytest.raises(ValueError, match="paired by prompt and seed"):
        calibrated_curve({0.0: np.zeros(4)}, {0.0: np.zeros(5)}, {0.0: np.zeros(4)}, original_steps={0.0: 0},
                         total_steps=25, anchors=("a",))


def test_the_verdict_dict_keeps_the_old_fields_and_adds_the_calibration():
    verdict = _decide(_curve({0.0: 0.03, 0.05: 0.05, 0.15: 0.2, 0.55: 0.95}, UPPER, LOWER))
    data = verdict.to_dict()
    for key in ("kind", "passed", "reason", "psi_limit", "ccs_max", "heldout_accuracy", "first_retrieving_psi",
                "curve"):
        assert key in data
    assert data["rule"] == "calibrated:nulls"
    point = data["calibration"]["points"][1]
    assert {"upper_null", "lower_null", "excess_over_upper", "excess_over_lower", "original_steps"} <= set(point)
    assert data["calibration"]["anchors"] == ["a digit"]


# -- the probe's image bank: each image made once, scored once -------------------------------------


class _CountingClassifier:
    """Mean pixel value as P(original), counting the images it is asked to score."""

    def __init__(self) -> None:
        self.scored: list[int] = []

    def probabilities(self, images):
        self.scored.append(id(images))
        return images.float().mean(dim=(1, 2, 3)).clamp(0, 1)


def _bank_probe(tiny_pipe, tiny_unet, **settings):
    from pytest_uoc.concept import Concept
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.probe import Probe, ProbeSettings

    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=4, guidance_scale=7.5, batch_size=8)
    probe = Probe(Concept("three", ("a red handwritten three", "trois")), engine,
                  ProbeSettings(seeds=tuple(range(16)), psis=(0.0, 0.3, 0.6), n_boot=100,
                                strengths=(0.5, 1.0), **settings))
    probe._classifier, probe._heldout = _CountingClassifier(), 1.0
    return probe


def test_the_probe_scores_each_image_once(tiny_pipe, tiny_unet):
    """CCS, the per-image scores, the verdict and the restoration curve share the classifier's answers."""
    probe = _bank_probe(tiny_pipe, tiny_unet, rule="absolute")
    classifier = probe.classifier
    curve = probe.ccs_curve()
    assert len(classifier.scored) == 3  # ψ 0, 0.3, 0.6: one call each
    scores = probe.scores([0.0, 0.3, 0.6])
    for psi in (0.0, 0.3, 0.6):
        np.testing.assert_array_equal(curve.probabilities[psi], scores[psi].double().numpy())
    verdict = probe.verdict(0.6, 0.9)
    assert verdict.ccs_curve is not None and verdict.curve == verdict.ccs_curve.to_dict()
    assert len(classifier.scored) == 3  # the verdict read the same scores
    restored = probe.restore_curve([0.5, 1.0])
    assert len(classifier.scored) == 4  # strength 1 is generation from noise: the ψ = 0 images, already scored
    assert restored.at(1.0) == curve.at(0.0)
    sweeps = probe.cost.sweeps
    probe.ccs_curve([0.3]), probe.restore_curve([1.0, 0.5])
    assert len(classifier.scored) == 4 and probe.cost.sweeps == sweeps


def test_a_probe_can_share_another_probes_images(tiny_pipe, tiny_unet):
    """A second probe of the same models (another judge or rule) makes and scores nothing again."""
    from pytest_uoc.probe import Probe

    first = _bank_probe(tiny_pipe, tiny_unet)
    first.scores([0.0, 0.3]), first.null_images([0.3], "upper")
    second = Probe(first.concept, first.engine, first.settings)
    second.share_images(first)
    assert second.classifier is first.classifier
    assert second.images([0.3])[0.3] is first.images([0.3])[0.3]
    assert second.null_images([0.3], "upper")[0.3] is first.null_images([0.3], "upper")[0.3]
    assert second.scores([0.3])[0.3] is first.scores([0.3])[0.3]
    assert second.cost.sweeps == 0


def _no_judge_curve(unlearned, *, scorer=None, reference=None):
    """A curve scored by the concept classifier (``scorer`` None) or a judge, with a low domain CCS."""
    from pytest_uoc.scoring import Estimate
    from pytest_uoc.scoring.ccs import CCSCurve

    options = {} if scorer is None else {"scorer": scorer}
    return calibrated_curve(
        {p: _flags(unlearned[p]) for p in PSIS}, {p: _flags(UPPER[p]) for p in PSIS},
        {p: _flags(LOWER[p]) for p in PSIS}, original_steps={p: round(p * 25) for p in PSIS}, total_steps=25,
        anchors=("a digit",), ccs=CCSCurve.from_estimates({p: Estimate(0.05, 0.0, 0.1, N) for p in PSIS}),
        reference=None if reference is None else {p: _flags(reference[p]) for p in PSIS}, **options)


# Far below the lower null at ψ 0.55 (0.20 against 0.90): the original steered away still keeps its hand-off.
FAR_BELOW = {0.0: 0.0, 0.05: 0.0, 0.15: 0.0, 0.55: 0.20}


def test_without_a_judge_a_finish_far_below_the_lower_null_is_not_forgetting():
    """The concept classifier recognising the finishing model (ESD-x-red, judge-free) must not pass."""
    verdict = _decide(_no_judge_curve(FAR_BELOW))
    assert verdict.kind == "inconclusive" and not verdict.passed
    assert verdict.cause == "below_lower_null"
    assert "ψ=0.55" in verdict.reason and "below the lower null" in verdict.reason and "--uoc-judge" in verdict.reason


def test_a_finish_within_ccs_max_below_the_lower_null_still_passes_without_a_judge():
    verdict = _decide(_no_judge_curve({0.0: 0.0, 0.05: 0.0, 0.15: 0.05, 0.55: 0.85}))
    assert verdict.kind == "forgotten", verdict.reason


@pytest.mark.parametrize("judge, reference", [("test judge", None), (None, FAR_BELOW)])
def test_a_judge_or_a_gold_standard_decides_a_finish_far_below_the_lower_null(judge, reference):
    """A judge measures the concept itself, a gold standard is a real model: the step does not apply."""
    verdict = _decide(_no_judge_curve(FAR_BELOW, scorer=judge, reference=reference))
    assert verdict.kind == "forgotten", verdict.reason
    assert verdict.cause != "below_lower_null"
