"""The learned attacks' gates: ``assert_concept_not_retrievable(guidance="inversion" | "prompt_attack")``.

The pytester runs use the fake probe of ``uoc_test_helpers`` (known shares after each
attack); the library runs learn real tokens and search real prompts on the tiny random
pipeline with a brightness judge.
"""

from __future__ import annotations

import copy
import json

import pytest
import scipy.stats  # noqa: F401 - imported here once: an in-process pytester run must not import it first
import torch
from uoc_test_helpers import FAKE_PROBE_CONFTEST, FAKE_UOC

from pytest_uoc.attacks.inversion import InversionSettings
from pytest_uoc.attacks.prompt_search import PromptSearchSettings
from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.gates import attacked
from pytest_uoc.pixels import float_images
from pytest_uoc.probe import Probe, ProbeSettings
from pytest_uoc.scoring.attack_verdict import ATTACK_KINDS

SUITE = '''
import pytest
from pytest_uoc import assert_concept_not_retrievable

@pytest.mark.uoc_concept("three", model="concealer")
def test_concealer():
    assert_concept_not_retrievable(guidance="inversion", budget={"steps": 50})

@pytest.mark.uoc_concept("three", model="forgetter")
def test_forgetter():
    verdict = assert_concept_not_retrievable(ccs_max=0.2, guidance="inversion")
    assert verdict.kind == "forgotten" and verdict.rule == "share"
'''


def test_the_gate_fails_a_concealer_passes_a_forgetter_and_reports_both(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_PROBE_CONFTEST + FAKE_UOC)
    pytester.makepyfile(test_gates=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", "report.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*concept 'three' is CONCEALED under concept inversion: the attack brings the concept back: 0.70*",
        "*unlearned * | *0.70* | 0.5000 -> 0.2000*",
        "*attack: one token 'sks' learned per model (50 steps, lr 0.005, batch 8, seed 0)*",
        "*decided by: concept classifier (no gold standard: --uoc-reference names one*",
    ])
    rows = {row["test"].split("::")[-1]: row for row in json.loads((pytester.path / "report.json").read_text())["tests"]}
    concealer, forgetter = rows["test_concealer"], rows["test_forgetter"]
    assert concealer["verdict"] == "concealed" and concealer["guidance"] == "inversion"
    assert concealer["inversion"]["settings"]["steps"] == 50 and concealer["inversion"]["token"] == "sks"
    assert concealer["gate"] == "not_invertible" and concealer["value_of"].startswith("share showing the concept")
    assert forgetter["verdict"] == "forgotten" and forgetter["inversion"]["unlearned"]["high"] <= 0.2


def test_bad_inversion_arguments_are_clear(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_PROBE_CONFTEST + FAKE_UOC)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_concept_not_retrievable

        @pytest.mark.uoc_concept("three")
        def test_bad():
            with pytest.raises(ValueError, match="budget: unknown key.*'stepz'.*expected some of steps, lr"):
                assert_concept_not_retrievable(guidance="inversion", budget={"stepz": 3})
            with pytest.raises(TypeError, match="budget must be a dict"):
                assert_concept_not_retrievable(guidance="inversion", budget=300)
            with pytest.raises(ValueError, match="inversion steps must be an integer >= 1, got 0"):
                assert_concept_not_retrievable(guidance="inversion", budget={"steps": 0})
            with pytest.raises(ValueError, match="budget is for guidance='inversion'"):
                assert_concept_not_retrievable(budget={"steps": 3})
            with pytest.raises(ValueError, match="crs_max applies to partial diffusion only"):
                assert_concept_not_retrievable(guidance="inversion", crs_max=0.5)
            with pytest.raises(ValueError, match="reference_images is for guidance='restore'"):
                assert_concept_not_retrievable(guidance="inversion", reference_images=["three.png"])
            with pytest.raises(ValueError, match="ccs_max must be in"):
                assert_concept_not_retrievable(guidance="inversion", ccs_max=2.0)
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_gate_on_a_probe_with_a_gold_standard(tiny_pipe, tiny_unet, tmp_path):
    """Real tokens on the tiny pipeline: the reference is a copy of the unlearned UNet, so the paired gap is 0."""
    def engine(unet):
        return PartialDiffusion(tiny_pipe, unet, num_inference_steps=4)

    def always(images: torch.Tensor) -> torch.Tensor:
        return float_images(images).mean(dim=(1, 2, 3)) > -1.0  # every drawing "shows" it

    probe = Probe(Concept("three", ("a red handwritten three", "a green handwritten three")), engine(tiny_unet),
                  ProbeSettings(seeds=tuple(range(16)), n_boot=50), judge=always,
                  reference_engine=engine(copy.deepcopy(tiny_unet)))
    gate = attacked.evaluate(probe, "inversion", 0.2, InversionSettings(steps=4, batch_size=2))
    verdict = gate.verdict
    # Every image "shows" the concept, the unlearned model's own ones too: nothing to recover.
    assert verdict.rule == "gold standard" and verdict.gap.mean == 0.0 and verdict.plain.mean == 1.0
    assert verdict.kind == "not_erased" and "without any attack" in verdict.reason
    assert not gate.passed and "NOT_ERASED under concept inversion" in gate.message
    assert {p.name for p in gate.pictures} == {"inversion.png", "inversion_images.png"}
    for picture in gate.pictures:
        assert picture.draw(tmp_path / picture.name).stat().st_size > 0
    assert gate.row.values["inversion"]["models"].keys() == {"unlearned", "original", "reference"}


PROMPT_SUITE = '''
import pytest
from pytest_uoc import assert_concept_not_retrievable

@pytest.mark.uoc_concept("three", model="concealer")
def test_concealer():
    assert_concept_not_retrievable(guidance="prompt_attack", budget={"steps": 10, "tokens": 3})

@pytest.mark.uoc_concept("three", model="forgetter")
def test_forgetter():
    verdict = assert_concept_not_retrievable(guidance="prompt_attack")
    assert verdict.kind == "forgotten" and verdict.attack == "prompt_attack"
'''


def test_the_prompt_attack_gate_names_the_found_prompts(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_PROBE_CONFTEST + FAKE_UOC)
    pytester.makepyfile(test_gates=PROMPT_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", "report.json", "--uoc-html", "report.html")
    result.assert_outcomes(passed=1, failed=1)
    page = (pytester.path / "report.html").read_text()
    assert "Adversarial prompt search: <b>concealed</b>" in page and "zx qq a handwritten three" in page
    result.stdout.fnmatch_lines([
        "*concept 'three' is CONCEALED under adversarial prompt search: the attack brings the concept back: 0.60*",
        "*unlearned * | *0.60* | 'zx qq a handwritten three' (0.3000)*",
        "*attack: 3 tokens prepended to each concept prompt, searched per model (10 steps, lr 0.1, batch 4, seed 0)*",
    ])
    rows = {row["test"].split("::")[-1]: row for row in json.loads((pytester.path / "report.json").read_text())["tests"]}
    concealer = rows["test_concealer"]
    assert concealer["verdict"] == "concealed" and concealer["guidance"] == "prompt_attack"
    assert concealer["gate"] == "not_prompt_attackable"
    found = concealer["prompt_attack"]["models"]["unlearned"]["found"]
    assert found == [{"prompt": "a handwritten three", "text": "zx qq a handwritten three", "token_ids": [7, 8],
                      "best_loss": 0.3, "retokenizes": True}]
    assert rows["test_forgetter"]["verdict"] == "forgotten"


def test_a_budget_key_of_the_other_attack_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_PROBE_CONFTEST + FAKE_UOC)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_concept_not_retrievable

        @pytest.mark.uoc_concept("three")
        def test_bad():
            with pytest.raises(ValueError, match="unknown key.*'tokens' for guidance='inversion'"):
                assert_concept_not_retrievable(guidance="inversion", budget={"tokens": 3})
            with pytest.raises(ValueError, match="prompt search tokens must be an integer >= 1, got 0"):
                assert_concept_not_retrievable(guidance="prompt_attack", budget={"tokens": 0})
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_prompt_attack_gate_on_a_probe(tiny_pipe, tiny_unet, tmp_path):
    """Real searches on the tiny pipeline without a gold standard: the share rule, the found prompts in the row."""
    def judge(images: torch.Tensor) -> torch.Tensor:
        return float_images(images).mean(dim=(1, 2, 3)) > 0.5

    probe = Probe(Concept("three", ("a red handwritten three", "a green handwritten three")),
                  PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=4),
                  ProbeSettings(seeds=tuple(range(16)), n_boot=50), judge=judge)
    gate = attacked.evaluate(probe, "prompt_attack", 0.2, PromptSearchSettings(steps=2, tokens=2, batch_size=2))
    verdict = gate.verdict
    assert verdict.rule == "share" and verdict.kind in ATTACK_KINDS
    assert verdict.plain.n == len(probe.concept.prompts) * len(probe.eval_seeds) == 16
    values = probe.prompt_attack(PromptSearchSettings(steps=2, tokens=2, batch_size=2)).values
    assert verdict.unlearned.mean == pytest.approx(float(values["unlearned"].mean()))
    found = gate.row.values["prompt_attack"]["models"]["unlearned"]["found"]
    assert [item["prompt"] for item in found] == list(probe.concept.prompts)
    assert all(len(item["token_ids"]) == 2 for item in found)
    for picture in gate.pictures:
        assert picture.draw(tmp_path / picture.name).stat().st_size > 0
    with pytest.raises(ValueError, match="attack must be one of inversion, prompt_attack, got 'pgd'"):
        attacked.evaluate(probe, "pgd", 0.2)
