"""Small fakes shared by the tests (imported as a module: tests/ is on sys.path).

The strings are conftest.py sources for ``pytester``: a fake probe with known results
(real curves and real ``decide``, no image generation), its ``uoc`` fixture, and a judge
that finds the concept in every image.
"""

from __future__ import annotations

import torch


class MeanPixelClassifier:
    """Fake domain classifier: P(original) is the mean pixel value of the image."""

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3))


def bright_judge(images: torch.Tensor) -> torch.Tensor:
    """A boolean judge for the attack tests: "shows the concept" where the image's mean pixel is above 0.5."""
    from pytest_uoc.pixels import float_images

    return float_images(images).mean(dim=(1, 2, 3)) > 0.5


def constant_images(values: list[float]) -> torch.Tensor:
    """One flat 3×4×4 image per value, every pixel equal to it."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()


#: A fake probe with known CCS curves, restoration curves, gaps and facet results (conftest source).
FAKE_PROBE_CONFTEST = '''
import numpy as np
import pytest
import torch
from types import SimpleNamespace

from pytest_uoc.concept import Concept
from pytest_uoc.probe import Cost
from pytest_uoc.scoring import (Estimate, GapCurve, GapPoint, JudgedAccuracy, Pinpoint, PromptCCS, decide,
                                leakage)
from pytest_uoc.scoring.ccs import CCSCurve
from pytest_uoc.scoring.retention import RetentionResult

CURVES = {"concealer": {0.0: 0.05, 0.15: 0.10, 0.35: 0.45, 0.55: 0.80},
          "forgetter": {0.0: 0.02, 0.15: 0.04, 0.35: 0.06, 0.55: 0.09}}
RESTORE = {"concealer": {0.5: 0.45, 0.8: 0.12, 1.0: 0.05}, "forgetter": {0.5: 0.06, 0.8: 0.04, 1.0: 0.03}}
GAPS = {"concealer": {0.05: 0.02, 0.15: 0.30}, "forgetter": {0.05: 0.01, 0.15: 0.02}}


def est(m, half=0.04, n=64):
    return Estimate(m, max(0.0, m - half), min(1.0, m + half), n)


class FakeProbe:
    def __init__(self, name, model, labels=None):
        self.concept = Concept(name, ("a handwritten three",), retain=("a handwritten eight", "a blue digit"))
        self.labels = labels or {"unlearned": model, "original": "zoo:digits"}
        self.model = model
        self.cost = Cost(sweeps=1, unet_evals=10, unlearned_unet_evals=5, seconds={"sweeps": 0.5})
        self.settings = SimpleNamespace(backbone="resnet18", accuracy_floor=0.75, psis=tuple(CURVES[model]), seed=0)
        self.heldout_accuracy = 0.95

    def use_judge(self, judge, key=None):
        self.judge = judge

    def verdict_grid(self, psi):
        return sorted(p for p in CURVES[self.model] if p <= psi)

    def ccs_curve(self, psis):
        return CCSCurve.from_estimates({p: est(CURVES[self.model][p]) for p in psis})

    def ccs(self, psi):
        return est(CURVES[self.model].get(psi, 0.02))

    def verdict(self, psi, ccs_max):
        return decide(self.ccs_curve(self.verdict_grid(psi)), psi_limit=psi, ccs_max=ccs_max,
                      heldout_accuracy=0.95, images_differ=True)

    def images(self, psis):
        gen = torch.Generator().manual_seed(0)
        return {p: torch.rand(4, 3, 16, 16, generator=gen) for p in psis}

    def restore_grid(self, strength):
        return sorted(s for s in RESTORE[self.model] if s >= strength)

    def restore_curve(self, strengths, reference_images=None):
        return CCSCurve.from_estimates({s: est(RESTORE[self.model][s]) for s in strengths})

    def restore_verdict(self, strength, ccs_max, reference_images=None):
        return decide(self.restore_curve(self.restore_grid(strength)), psi_limit=strength, ccs_max=ccs_max,
                      heldout_accuracy=0.95, images_differ=True, axis="strength")

    def restore_images(self, strengths, reference_images=None):
        return self.images(strengths)

    def prompt_images(self, prompts, psis=(0.0,), reference=False):
        gen = torch.Generator().manual_seed(1)
        return {p: torch.rand(4 * len(prompts), 3, 16, 16, generator=gen) for p in psis}

    def prompt_ccs(self, prompts):
        bad = 0.8 if self.model == "concealer" else 0.05
        per = {p: est(bad if i == 0 else 0.05, 0.05, 16) for i, p in enumerate(prompts)}
        overall = est(float(np.mean([e.mean for e in per.values()])), 0.03, 16 * len(prompts))
        return PromptCCS(overall, per, {})

    def retention(self, prompts=None, distance="auto"):
        prompts = list(prompts or self.concept.retain)
        per_image = np.repeat(np.arange(1, len(prompts) + 1) * 0.1, 4)
        mean = 0.4 if self.model == "concealer" else 0.02
        return RetentionResult(mean, mean - 0.02, mean + 0.02, len(per_image), 0.95, "ssim", per_image)

    def concealment_gap(self, psis=None):
        table = GAPS[self.model]
        return GapCurve({p: GapPoint(p, est(table[p], 0.03), table[p] + 0.1, 0.1, 0.5, 0.4, 0.2, 0.5)
                         for p in (psis or table)})

    def leakage(self, prompts, judge=None):
        n = 32 * len(prompts)
        u = np.arange(n) < (0.4 if self.model == "concealer" else 0.05) * n
        b = np.arange(n) < 0.03 * n
        return leakage(u, b, prompts, baseline_name="original", decided_by="classifier", n_boot=200)

    def pinpoint(self, neighbors, judge=None, distance="auto"):
        prompts = list(neighbors)
        accuracy = None
        if judge is not None:
            accuracy = JudgedAccuracy(est(0.9, 0.04, 32), {p: 0.9 for p in prompts}, "given", 0.97)
        return Pinpoint(tuple(prompts), self.retention(prompts), accuracy)

    def alignment(self, prompts, expected, judge):
        a = 0.4 if self.model == "concealer" else 0.97
        return JudgedAccuracy(est(a, 0.02, 32), {p: a for p in prompts}, "given", 0.98)

    judge = None
    concept_scorer = "concept classifier"

    def concept_values(self, psis, source="unlearned"):
        """Per image whether it shows the concept: none of the unlearned model's own images do."""
        return {p: torch.zeros(32, dtype=torch.float64) for p in psis}

    def inversion(self, settings=None):
        """Known shares after concept inversion: the concealer 0.7, the forgetter 0.03, the original 0.9."""
        from pytest_uoc.attacks.inversion import InversionSettings, LearnedToken
        from pytest_uoc.attacks.inversion_probe import InversionResult

        settings = settings or InversionSettings()
        n = 64
        result = InversionResult(settings, "sks", ["a handwritten sks"], list(range(n)))
        for name, share in {"unlearned": 0.7 if self.model == "concealer" else 0.03, "original": 0.9}.items():
            result.tokens[name] = LearnedToken("sks", 42, torch.zeros(4), (0.5, 0.2),
                                               settings.steps * settings.batch_size, 0.1)
            result.values[name] = (np.arange(n) < share * n).astype(float)
            result.images[name] = torch.zeros(n, 3, 16, 16, dtype=torch.uint8)
        return result

    def prompt_attack(self, settings=None):
        """Known shares after prompt search: the concealer 0.6, the forgetter 0.02, the original 0.8."""
        from pytest_uoc.attacks.prompt_search import FoundPrompt, PromptSearchSettings
        from pytest_uoc.attacks.prompt_search_probe import PromptAttackResult

        settings = settings or PromptSearchSettings()
        n = 64
        prompt = self.concept.prompts[0]
        result = PromptAttackResult(settings, [prompt], list(range(n)))
        for name, share in {"unlearned": 0.6 if self.model == "concealer" else 0.02, "original": 0.8}.items():
            result.found[name] = [FoundPrompt(prompt, f"zx qq {prompt}", (7, 8), (0.5, 0.3), 0.3, 10, 0.1, True)]
            result.values[name] = (np.arange(n) < share * n).astype(float)
            result.images[name] = torch.zeros(n, 3, 16, 16, dtype=torch.uint8)
        return result
'''

#: The ``uoc`` fixture handing out a ``FakeProbe`` of the marker's concept and ``model`` keyword (conftest source).
FAKE_UOC = '''

@pytest.fixture
def uoc(request):
    marker = request.node.get_closest_marker("uoc_concept")
    return FakeProbe(marker.args[0], marker.kwargs.get("model", "forgetter"))
'''

#: A ``uoc_judge`` fixture whose judge, ``always``, finds the concept in every image (conftest source).
ALWAYS_JUDGE_CONFTEST = '''
import pytest


@pytest.fixture
def uoc_judge():
    def always(images):
        """Finds the concept in every image: the unlearned model alone 'shows' it."""
        return [True] * images.shape[0]
    return always
'''


#: A module (write it as ``my_judges.py``) whose ``never`` factory gives a judge that never sees the concept:
#: it fails its check, so a gate is decided at ψ = 0 without a sweep (fast end-to-end runs of the reports).
BLIND_JUDGE_MODULE = """
def never(concept):
    def blind_judge(images):
        return [False] * len(images)
    return blind_judge
"""

#: A test module: the README's gate, counted by ``my_judges:never``.
BLIND_GATE = """
import pytest
from pytest_uoc import assert_concept_not_retrievable


@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"], judge="my_judges:never")
def test_gate(uoc):
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2, probe=uoc)
"""

#: Few steps and seeds, and a ψ grid every step of which gives the original a step.
FAST_GATE_OPTIONS = ("--uoc-steps", "8", "--uoc-seeds", "16", "--uoc-psis", "0,0.15,0.35,0.55,1")


def run_blind_gate(pytester, *extra: str, judges: str = BLIND_JUDGE_MODULE, unlearned: str = "zoo:digits-esd-three"):
    """Run ``BLIND_GATE`` (judges module ``judges`` as ``my_judges``) with the fast options and ``extra``."""
    pytester.makepyfile(my_judges=judges)
    pytester.makepyfile(test_gate=BLIND_GATE)
    return pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", unlearned, *FAST_GATE_OPTIONS,
                              f"--uoc-cache-dir={pytester.path / 'cache'}", *extra)
