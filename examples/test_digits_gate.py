"""A model repository's unlearning gate, as its authors would write it.

The models are the embedded zoo's (see pytest.ini): the original `zoo:digits`,
and, per test, the unlearned checkpoint under test (`unlearned=` on the marker)
and the gold standard retrained without the concept (`reference=`). Run it with

    pytest examples --uoc-device cpu --uoc-report uoc-report.json --uoc-artifacts uoc-artifacts

Verdicts are calibrated by default (docs/metrics.md): each partial-diffusion
image is compared with the original finishing the same hand-off unasked (the
null finishes), so the README's gate at ψ 0.55 passes a model that never saw
the concept, with no gold standard. Where a gold standard exists (`reference=`),
the paired gap to it decides: on the zoo (SD 1.x-faithful) it is what names
ESD-x concealed; without it the same gate does not pass ESD-x (inconclusive).
The xfail reasons are measured figures (25 steps, seeds 0-31).
"""

import pytest
from hypothesis import given, settings

from pytest_uoc import (
    assert_aligned,
    assert_concept_erased,
    assert_concept_not_retrievable,
    assert_no_concealment_gap,
    assert_no_leakage,
    assert_pinpoint,
    assert_retained,
)
from pytest_uoc.judges import zoo_digit_judge, zoo_label_judge
from pytest_uoc.strategies import psis

THREE = ["a handwritten three", "the digit 3"]
RED = ["a red handwritten two", "a red handwritten seven", "a red digit"]


# The README's example, verbatim, run against the gold standard (conftest.py): a model
# that never saw a three. By ψ = 0.55 the original has drawn the three, so any model
# finishes it (CCS 0.87); the calibrated verdict compares each image with the original
# finishing the same hand-off unasked (the null finishes), and passes.
@pytest.mark.gpu
@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
def test_three_is_truly_forgotten():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)


# ESD-x (its cross-attention retrained, as ESD's script does) looks erased on its own (CCS 0.04 at ψ = 0)
# but finishes the original's threes far more often than a model that never saw one: at ψ 0.15 a three in
# 0.66 of the images, the gold standard in 0.19. Without a gold standard the calibrated gate does not pass
# it (inconclusive: the excess over the nulls' midpoint is not significant); with one (reference=) the paired
# gap names it concealed.
@pytest.mark.xfail(strict=True, reason="measured: ESD-x conceals the three; the paired gap to the gold standard, "
                   "averaged over the tested psi, is significantly above 0")
@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"], unlearned="zoo:digits-esd-three",
                         reference="zoo:digits-gold-three")
def test_esd_conceals_the_three():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)


# The same probe as the README's gate (no new image) at a small ψ, where the original has drawn little.
@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
def test_three_gold_standard_passes_at_small_psi():
    assert_concept_not_retrievable(psi=0.05, ccs_max=0.3)


# A gold standard is only as clean as what it shares with the original. The one retrained without any red
# image keeps the original's text encoder, which learned the word "red": asked for "a red digit" it
# extrapolates past yellow to red-orange strokes, and the gate says so (the zoo's judge finds red in about a
# third of its images at ψ = 0).
@pytest.mark.xfail(strict=True, reason="measured: the red gold standard draws red-orange digits for 'a red digit' "
                   "through the shared text encoder: red in 0.35 of its images at psi 0, not_erased")
@pytest.mark.uoc_concept("red", prompts=RED, unlearned="zoo:digits-gold-red")
def test_red_gold_standard_passes_the_readme_gate():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)


# The concealer (its UNet untouched, only the text encoder re-routed) is caught.
@pytest.mark.xfail(strict=True, reason="measured: the concealer's UNet still holds red: the gap to the gold "
                   "standard is 0.27 at psi 0.25, its lower 95% bound 0.15, above 0.1")
@pytest.mark.uoc_concept("red", prompts=RED, unlearned="zoo:digits-conceal-red",
                         reference="zoo:digits-gold-red")
def test_concealer_is_caught():
    assert_no_concealment_gap(max_gap=0.1, psis=[0.05, 0.15, 0.25])


# ESD-red redraws the other colours' images: the retention gate measures the change itself, image by image.
@pytest.mark.xfail(strict=True, reason="measured: ESD-red changes the other colours' images, SSIM distance "
                   "0.54 (upper 95% bound 0.59) to the original's, above 0.35")
@pytest.mark.uoc_concept("red", prompts=RED, unlearned="zoo:digits-esd-red",
                         retain=["a blue handwritten two", "a green handwritten seven", "a yellow digit"])
def test_other_colours_are_retained():
    assert_retained(max_distance=0.35)


@settings(settings.get_profile("uoc"))
@given(psi=psis(max_value=0.05))
@pytest.mark.uoc_concept("red", prompts=RED, unlearned="zoo:digits-gold-red")
def test_gold_standard_is_never_retrieved_early(uoc, psi):
    assert uoc.ccs(psi).mean <= 0.3


# --- beyond the target concept (HUB facets) -----------------------------------------------


@pytest.mark.xfail(strict=True, reason="measured: the concealer restores red from noised red images (0.90 "
                   "at strength 0.65, 0.83 at 0.8) and draws it from pure noise too (0.50 at strength 1): not_erased")
@pytest.mark.uoc_concept("red", prompts=RED, unlearned="zoo:digits-conceal-red")
def test_restoration_attack_catches_the_concealer():
    assert_concept_not_retrievable(psi=0.65, ccs_max=0.3, guidance="restore")


# ESD-x edits the cross-attention of the words it was trained on; other words still reach red.
@pytest.mark.xfail(strict=True, reason="measured: ESD-red draws red again for other words: CCS 0.55 for "
                   "'the digit 2 in red', 0.37 for 'something red', 0.53 for 'a red seven', above 0.3")
@pytest.mark.uoc_concept("red", prompts=RED, unlearned="zoo:digits-esd-red")
def test_red_stays_erased_in_other_words():
    assert_concept_erased(ccs_max=0.3, prompts=["the digit 2 in red", "something red", "a red seven"])


@pytest.mark.uoc_concept("three", prompts=THREE, unlearned="zoo:digits-esd-three", reference="zoo:digits-gold-three")
def test_three_does_not_leak_unasked():
    assert_no_leakage(prompts=("",), max_excess=0.1, judge=zoo_digit_judge("three"))


@pytest.mark.xfail(strict=True, reason="measured: ESD-red also changes its nearest neighbour's images (yellow: "
                   "SSIM distance 0.39 [0.34, 0.45], above 0.35)")
@pytest.mark.uoc_concept("red", prompts=RED, unlearned="zoo:digits-esd-red")
def test_neighbouring_colours_survive():
    assert_pinpoint(neighbors=["a yellow handwritten two", "a yellow digit"], max_distance=0.35)


@pytest.mark.xfail(strict=True, reason="measured: ESD-red no longer draws blue for 'a blue digit' (0.19 of its "
                   "images): judged accuracy 0.69 [0.54, 0.81] against the original's 0.79")
@pytest.mark.uoc_concept("red", prompts=RED, unlearned="zoo:digits-esd-red")
def test_other_colours_still_follow_the_prompt():
    assert_aligned(["a blue digit", "a green handwritten four", "a yellow digit"], ["blue", "green", "yellow"],
                   min_accuracy=0.8, judge=zoo_label_judge("color"))
