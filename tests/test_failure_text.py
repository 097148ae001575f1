"""The failure table agrees with the verdict (issue: a not-erased model flagged 'retrieved' at every ψ)."""

from __future__ import annotations

import pytest

CONFTEST = '''
import pytest
import torch
from types import SimpleNamespace

from pytest_uoc.concept import Concept
from pytest_uoc.scoring import Estimate, decide
from pytest_uoc.scoring.ccs import CCSCurve

MEANS = {0.0: 0.9, 0.15: 0.92, 0.55: 0.95}


class Cost:
    def to_dict(self):
        return {"sweeps": 0, "unet_evals": 0}


class NotErased:
    def __init__(self):
        self.concept = Concept("three", ("a handwritten three",))
        self.labels = {"unlearned": "nothing-erased", "original": "zoo:digits"}
        self.cost = Cost()
        self.settings = SimpleNamespace(backbone="resnet18", psis=tuple(MEANS))

    def verdict_grid(self, psi):
        return sorted(p for p in MEANS if p <= psi)

    def ccs_curve(self, psis):
        return CCSCurve.from_estimates({p: Estimate(MEANS[p], MEANS[p] - 0.03, MEANS[p] + 0.03, 64) for p in psis})

    def verdict(self, psi, ccs_max):
        return decide(self.ccs_curve(self.verdict_grid(psi)), psi_limit=psi, ccs_max=ccs_max,
                      heldout_accuracy=0.95, images_differ=True)

    def images(self, psis):
        return {p: torch.zeros(2, 3, 8, 8) for p in psis}


@pytest.fixture
def uoc():
    return NotErased()
'''

TEST = '''
import pytest
from pytest_uoc import assert_concept_not_retrievable


@pytest.mark.uoc_concept("three", prompts=["a handwritten three"])
def test_gate(uoc):
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
'''


def test_a_not_erased_failure_does_not_call_every_psi_retrieved(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_gate=TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-seeds", "32")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "is NOT ERASED" in text
    assert "<- retrieved" not in text
    assert "smallest psi that retrieves the concept: none" not in text
    assert "shows the concept on its own" in text
