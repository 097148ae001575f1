"""A model repository's unlearning gate, as its authors would write it.

The models are the embedded zoo's (see pytest.ini): the original `zoo:digits`,
and, per test, the unlearned checkpoint under test. Run it with

    pytest examples --uoc-device cpu --uoc-report uoc-report.json --uoc-artifacts uoc-artifacts
"""

import pytest
from hypothesis import given, settings

from pytest_uoc import assert_concept_not_retrievable, assert_retained
from pytest_uoc.strategies import psis


# The README's example, verbatim. pytest.ini points it at the gold standard, a
# model retrained without any three: it truly never learned the concept.
@pytest.mark.gpu
@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
def test_three_is_truly_forgotten():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)


@pytest.mark.xfail(
    strict=True,
    reason="the concealer only re-routes the text encoder; its UNet still draws threes, "
    "and partial diffusion retrieves them",
)
@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"],
                         unlearned="zoo:digits-conceal-three")
def test_concealer_is_caught():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)


@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"],
                         unlearned="zoo:digits-esd-three",
                         retain=["a handwritten seven", "a handwritten eight", "the digit 5"])
def test_other_digits_are_retained():
    assert_retained(max_distance=0.35)


@settings(settings.get_profile("uoc"))
@given(psi=psis(max_value=0.25))
@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
def test_gold_standard_is_never_retrieved_early(uoc, psi):
    assert uoc.ccs(psi).mean <= 0.2
