"""Gates beyond the target concept: restoration, paraphrases, leakage, pinpoint-ness, alignment, efficiency.

The probe-level tests run tiny random pipelines (4 steps, 16 seeds) with a
stand-in domain classifier (the mean pixel value as P(original domain)) so the
numbers can be recomputed by hand; the assertion tests run in ``pytester``
against a fake probe with known results, as tests/test_plugin_assertions.py does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion, restore
from pytest_uoc.pixels import float_images
from pytest_uoc.probe import Probe, ProbeSettings

STEPS = 4
PROMPTS = ("a red handwritten three", "trois")
SEEDS = tuple(range(16))  # 8 train the classifier, 8 score (16 images: the verdicts' minimum)


class MeanClassifier:
    """P(original domain) = the image's mean pixel value: deterministic, in [0, 1]."""

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(1, 2, 3))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().flatten(1)


def make_probe(pipe, unet, *, reference=None, strengths=(0.25, 0.5, 1.0)) -> Probe:
    def engine(model):
        return PartialDiffusion(pipe, model, num_inference_steps=STEPS, guidance_scale=7.5, batch_size=8)

    settings = ProbeSettings(seeds=SEEDS, psis=(0.0, 0.5), n_boot=200, strengths=strengths)
    probe = Probe(Concept("three", PROMPTS), engine(unet), settings,
                  reference_engine=None if reference is None else engine(reference))
    probe._classifier = MeanClassifier()
    probe._heldout = 1.0
    return probe


@pytest.fixture(scope="module")
def probe(tiny_pipe, tiny_unet):
    return make_probe(tiny_pipe, tiny_unet)


def bright_judge(images: torch.Tensor) -> torch.Tensor:
    """A boolean judge: "shows the concept" where the image is brighter than average (for these models).

    The probe hands a judge float images in [0, 1]; its own images are compact (uint8), converted here
    when a test calls the judge on them directly."""
    return float_images(images).mean(dim=(1, 2, 3)) > 0.527


# -- restoration on the probe -----------------------------------------------------------------------


def test_restore_curve_scores_restorations_of_the_rotated_original_images(probe):
    key, refs = probe.reference_images()
    original = probe.original_images  # prompt-major, 8 scoring seeds per prompt
    assert key == "original"
    assert torch.equal(refs[0], original[1]) and torch.equal(refs[7], original[0])
    assert torch.equal(refs[8], original[9]) and torch.equal(refs[15], original[8])
    curve = probe.restore_curve([0.5, 1.0])
    direct = restore(probe.engine, refs, list(PROMPTS), [0.5], probe.eval_seeds)[0.5]
    assert curve.at(0.5).mean == pytest.approx(float(float_images(direct).mean()), abs=1e-5)
    # strength 1 is the unlearned model alone: the ψ = 0 images, scored the same way
    assert curve.at(1.0).mean == pytest.approx(probe.ccs(0.0).mean, abs=1e-9)
    assert curve.at(0.5).n == len(PROMPTS) * 8


def test_restore_images_are_cached_by_start_step_and_cost_only_the_unlearned_model(tiny_pipe, tiny_unet):
    probe = make_probe(tiny_pipe, tiny_unet)
    probe.images([0.0])  # λU first, so strength 1 below is free
    before = probe.cost.unlearned_unet_evals
    images = probe.restore_images([0.5, 0.55, 1.0])  # int(4 * 0.55) = 2: same start as 0.5
    assert images[0.5] is images[0.55]
    assert images[1.0] is probe.unlearned_images
    items = len(PROMPTS) * 8
    assert probe.cost.unlearned_unet_evals - before == items * 2  # 2 steps from strength 0.5, none for 1
    assert "restore" in probe.cost.seconds
    evals = probe.cost.unet_evals
    probe.restore_curve([0.5, 1.0])
    assert probe.cost.unet_evals == evals  # nothing recomputed


def test_restore_verdict_uses_the_strength_axis(probe):
    verdict = probe.restore_verdict(0.5, ccs_max=0.99)
    assert probe.restore_grid(0.5) == [0.5, 1.0]
    assert probe.restore_grid(0.3) == [0.3, 0.5, 1.0]
    assert verdict.kind == "forgotten"
    assert "strength ≥ 0.5" in verdict.reason
    strict = probe.restore_verdict(0.5, ccs_max=0.01)
    assert strict.kind == "not_erased"  # strength 1 (the unlearned model alone) is above the limit
    assert strict.first_retrieving_psi == 1.0


def test_user_reference_images_are_used_in_turn(probe, tmp_path):
    from PIL import Image

    white = torch.ones(2, 3, 16, 16)
    white[1] *= 0.5
    key, refs = probe.reference_images(white)
    assert key.startswith("user:") and refs.shape[0] == len(PROMPTS) * 8
    assert torch.equal(refs[2], white[0]) and torch.equal(refs[3], white[1])
    restored = probe.restore_images([0.25], reference_images=white)[0.25]
    assert restored.shape == (16, 3, 16, 16)
    assert not torch.allclose(restored, probe.restore_images([0.25])[0.25])
    path = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(path)
    _, from_file = probe.reference_images([path])
    assert from_file.shape == (16, 3, 16, 16) and float(from_file[:, 0].min()) == 1.0
    with pytest.raises(ValueError, match="strength must be a finite number in \\[0, 1\\]"):
        probe.restore_curve([1.2])


def test_decide_on_the_strength_axis_reads_from_pure_generation_down():
    from pytest_uoc.scoring import Estimate, decide
    from pytest_uoc.scoring.ccs import CCSCurve

    def curve(means):
        return CCSCurve.from_estimates({s: Estimate(m, m - 0.03, m + 0.03, 32) for s, m in means.items()})

    restoring = curve({0.2: 0.9, 0.5: 0.5, 0.8: 0.1, 1.0: 0.05})
    verdict = decide(restoring, psi_limit=0.5, ccs_max=0.2, heldout_accuracy=0.9, axis="strength")
    assert verdict.kind == "concealed" and verdict.first_retrieving_psi == 0.5
    assert "restoration from a noised reference" in verdict.reason
    # 0.2 is below the limit: not considered
    assert decide(restoring, psi_limit=0.8, ccs_max=0.2, heldout_accuracy=0.9, axis="strength").kind == "forgotten"
    with pytest.raises(ValueError, match="no strength ≥ 0.9"):
        decide(curve({0.2: 0.1}), psi_limit=0.9, ccs_max=0.2, heldout_accuracy=0.9, axis="strength")
    with pytest.raises(ValueError, match="axis must be one of"):
        decide(restoring, psi_limit=0.5, ccs_max=0.2, heldout_accuracy=0.9, axis="time")


# -- paraphrases, leakage, pinpoint-ness, alignment ---------------------------------------------------


def test_prompt_ccs_scores_each_prompt_of_the_unlearned_model(probe):
    prompts = ["drei", "tres", "the digit 3 in blue"]
    result = probe.prompt_ccs(prompts)
    images = probe.prompt_images(prompts)[0.0]
    assert images.shape[0] == 3 * 8
    per = float_images(images).mean(dim=(1, 2, 3))
    assert result.prompts == prompts
    assert result.per_prompt["tres"].mean == pytest.approx(float(per[8:16].mean()), abs=1e-6)
    assert result.overall.mean == pytest.approx(float(per.mean()), abs=1e-6)
    assert result.retrieving(0.0) == prompts and result.retrieving(1.0) == []


def test_leakage_against_the_reference_is_paired_per_seed(tiny_pipe, tiny_unet):
    probe = make_probe(tiny_pipe, tiny_unet, reference=tiny_pipe.unet)
    evals = probe.cost.unlearned_unet_evals
    result = probe.leakage(["", "a green handwritten eight"], judge=bright_judge)
    unlearned = bright_judge(probe.prompt_images(["", "a green handwritten eight"])[0.0]).numpy()
    reference = bright_judge(probe.prompt_images(["", "a green handwritten eight"], reference=True)[0.0]).numpy()
    assert result.baseline == "reference" and result.decided_by == "bright_judge"
    assert result.unlearned_rate == pytest.approx(unlearned.mean())
    assert result.baseline_rate == pytest.approx(reference.mean())
    assert result.excess.mean == pytest.approx(unlearned.mean() - reference.mean())
    assert 0 < unlearned.mean() < 1 and unlearned.mean() != reference.mean()  # the judge discriminates
    assert result.n == 16 and 0.0 <= result.p_value <= 1.0
    # only the model under test counts as the unlearned model's cost, not the gold standard
    assert probe.cost.unlearned_unet_evals - evals == 2 * 8 * STEPS


def test_leakage_without_reference_compares_with_the_original_and_uses_the_classifier(probe):
    result = probe.leakage([""])
    images = probe.prompt_images([""], [0.0, 1.0])
    assert result.baseline == "original" and result.decided_by == "classifier"
    assert result.baseline_rate == pytest.approx(float((float_images(images[1.0]).mean(dim=(1, 2, 3)) > 0.5).float().mean()))


def test_judges_returning_the_wrong_shape_or_type_are_refused(probe):
    with pytest.raises(ValueError, match=r"one label per image: 8 images in, got shape \(3,\)"):
        probe.leakage([""], judge=lambda images: torch.zeros(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="must return booleans"):
        probe.leakage([""], judge=lambda images: torch.zeros(len(images)))
    with pytest.raises(TypeError, match="must be callable"):
        probe.leakage([""], judge="zoo")


def test_pinpoint_retention_and_accuracy(probe):
    neighbors = ["a green handwritten eight", "a handwritten seven"]
    labels = {"a green handwritten eight": True, "a handwritten seven": False}
    result = probe.pinpoint(labels, judge=bright_judge, distance="ssim")
    assert result.retention.distance == "ssim"
    assert result.retention.mean == pytest.approx(probe.retention(neighbors, distance="ssim").mean)
    unlearned = bright_judge(probe.prompt_images(neighbors)[0.0]).numpy()
    want = np.array([True] * 8 + [False] * 8)
    assert result.accuracy.accuracy.mean == pytest.approx((unlearned == want).mean())
    assert result.accuracy.per_prompt["a handwritten seven"] == pytest.approx((~unlearned[8:]).mean())
    # a list: agreement with the judge's label of the original's image
    agree = probe.pinpoint(neighbors, judge=bright_judge, distance="ssim").accuracy
    original = bright_judge(probe.prompt_images(neighbors, [1.0])[1.0]).numpy()
    assert agree.expected == "original" and agree.accuracy.mean == pytest.approx((unlearned == original).mean())
    with pytest.raises(ValueError, match="neighbors is empty"):
        probe.pinpoint([])


def test_alignment_with_labels(probe):
    def label(images):
        return ["bright" if v > 0.5 else "dark" for v in images.mean(dim=(1, 2, 3))]

    result = probe.alignment(["a handwritten seven"], "dark", label)
    images = {psi: float_images(kept) for psi, kept in probe.prompt_images(["a handwritten seven"], [0.0, 1.0]).items()}
    assert result.accuracy.mean == pytest.approx(float((images[0.0].mean(dim=(1, 2, 3)) <= 0.5).float().mean()))
    assert result.baseline == pytest.approx(float((images[1.0].mean(dim=(1, 2, 3)) <= 0.5).float().mean()))
    with pytest.raises(ValueError, match=r"one label per prompt \(1\), got 2"):
        probe.alignment(["a handwritten seven"], ["dark", "bright"], label)


def test_efficiency_reports_the_unlearned_models_share(tiny_pipe, tiny_unet):
    probe = make_probe(tiny_pipe, tiny_unet)
    probe.images([0.0, 1.0])
    eff = probe.efficiency()
    items = len(PROMPTS) * 8
    assert eff["unlearned_unet_evals"] == items * STEPS
    assert eff["unet_evals"] == 2 * items * STEPS
    assert eff["unlearned_share"] == 0.5
    assert 0 < eff["unlearned_seconds"] <= eff["seconds"]
    assert set(eff["seconds_by_phase"]) == {"sweeps"}


# -- scoring and judges without models --------------------------------------------------------------


def test_scoring_facets_by_hand():
    from pytest_uoc.scoring import judged_accuracy, leakage, prompt_ccs

    class Fixed:
        def probabilities(self, images):
            return images[:, 0, 0, 0]

    images = torch.tensor([0.1, 0.3, 0.9, 0.7]).view(4, 1, 1, 1).expand(4, 3, 4, 4).contiguous()
    result = prompt_ccs(Fixed(), images, ["a", "b"], n_boot=100)
    assert result.per_prompt["a"].mean == pytest.approx(0.2) and result.per_prompt["b"].mean == pytest.approx(0.8)
    assert result.worst() == "b"
    with pytest.raises(ValueError, match="cannot be split evenly over 3 prompts"):
        prompt_ccs(Fixed(), images, ["a", "b", "c"])
    leak = leakage(np.array([True, True, False, True]), np.array([False, True, False, False]), ["", "x"])
    assert leak.excess.mean == pytest.approx(0.5) and leak.per_prompt["x"] == (0.5, 0.0)
    assert leak.p_value == pytest.approx(0.5)  # 2 discordant pairs, both one way
    with pytest.raises(TypeError, match="must be booleans"):
        leakage(np.array([1, 0]), np.array([0, 0]), [""])
    acc = judged_accuracy(["a", "b", "a", "a"], ["a", "a", "a", "a"], ["p", "q"], baseline_labels=["a"] * 4)
    assert acc.accuracy.mean == pytest.approx(0.75) and acc.per_prompt == {"p": 0.5, "q": 1.0}
    assert acc.baseline == 1.0


def test_zoo_digit_judge_reads_digits_in_any_language_and_colours():
    from pytest_uoc.judges import judge_flags, judge_labels, zoo_digit_judge, zoo_label_judge
    from pytest_uoc.zoo.judge import DigitJudge

    class Model:
        def predict(self, images):
            return torch.tensor([3, 8, 3]), torch.tensor([0, 0, 2])

    images = torch.rand(3, 3, 32, 32)
    for name in ("three", "trois", "drei", "tres", "3"):
        assert judge_flags(zoo_digit_judge(name, model=Model()), images).tolist() == [True, False, True]
    assert zoo_digit_judge("red", model=Model())(images).tolist() == [True, True, False]
    assert judge_labels(zoo_label_judge("digit", model=Model()), images).tolist() == ["three", "eight", "three"]
    assert zoo_label_judge("color", model=Model())(images) == ["red", "red", "blue"]
    with pytest.raises(ValueError, match="'purple' is neither"):
        zoo_digit_judge("purple", model=Model())
    with pytest.raises(ValueError, match="kind must be 'digit' or 'color'"):
        zoo_label_judge("shape", model=Model())
    # a real (random) DigitJudge runs end to end on 16-pixel images
    flags = zoo_digit_judge("seven", model=DigitJudge().eval())(torch.rand(2, 3, 16, 16))
    assert flags.dtype == torch.bool and flags.shape == (2,)


def test_zoo_judge_without_weights_says_how_to_build_them(tmp_path, monkeypatch):
    from pytest_uoc.judges import zoo_digit_judge

    monkeypatch.setenv("UOC_ZOO_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="judge weights are missing.*zoo.train"):
        zoo_digit_judge("three")


# -- the assertions as users see them (pytester) ------------------------------------------------------

FAKE_CONFTEST = '''
import numpy as np
import pytest
from types import SimpleNamespace

from pytest_uoc.concept import Concept
from pytest_uoc.probe import Cost
from pytest_uoc.scoring import Estimate, JudgedAccuracy, Pinpoint, PromptCCS, decide, leakage
from pytest_uoc.scoring.ccs import CCSCurve
from pytest_uoc.scoring.retention import RetentionResult
import torch

RESTORE = {
    "restorer": {0.2: 0.95, 0.35: 0.7, 0.5: 0.45, 0.8: 0.12, 1.0: 0.05},
    "forgetter": {0.2: 0.6, 0.35: 0.12, 0.5: 0.06, 0.8: 0.04, 1.0: 0.03},
}
PROMPT_CCS = {"restorer": {"trois": 0.8, "drei": 0.1, "the digit 3": 0.12}, "forgetter": {"trois": 0.05, "drei": 0.04}}
LEAKS = {"restorer": 0.4, "forgetter": 0.05}


def est(m, half=0.04, n=64):
    return Estimate(m, max(0.0, m - half), min(1.0, m + half), n)


class FakeProbe:
    def __init__(self, name, model, reference):
        self.concept = Concept(name, ("a handwritten three",))
        self.labels = {"unlearned": model, "original": "zoo:digits"}
        self.model, self.reference = model, reference
        self.cost = Cost(sweeps=3, unet_evals=900, unlearned_unet_evals=600, seconds={"sweeps": 1.5})
        self.settings = SimpleNamespace(backbone="resnet18", accuracy_floor=0.75, strengths=(0.2, 0.35, 0.5, 0.8, 1.0))
        self.heldout_accuracy = 0.95
        self.judges_seen = []

    def restore_grid(self, strength):
        return sorted({s for s in RESTORE[self.model] if s >= strength} | {1.0})

    def restore_curve(self, strengths, reference_images=None):
        return CCSCurve.from_estimates({s: est(RESTORE[self.model][s]) for s in strengths})

    def restore_verdict(self, strength, ccs_max, reference_images=None):
        return decide(self.restore_curve(self.restore_grid(strength)), psi_limit=strength, ccs_max=ccs_max,
                      heldout_accuracy=0.95, images_differ=True, axis="strength")

    def restore_images(self, strengths, reference_images=None):
        gen = torch.Generator().manual_seed(0)
        return {s: torch.rand(4, 3, 16, 16, generator=gen) for s in strengths}

    def prompt_ccs(self, prompts):
        table = PROMPT_CCS[self.model]
        per = {p: est(table.get(p, 0.05), 0.05, 16) for p in prompts}
        overall = est(float(np.mean([e.mean for e in per.values()])), 0.03, 16 * len(prompts))
        return PromptCCS(overall, per, {})

    def leakage(self, prompts, judge=None):
        self.judges_seen.append(judge)
        rate = LEAKS[self.model]
        n = 32 * len(prompts)
        u = np.arange(n) < rate * n
        b = np.arange(n) < 0.03 * n
        return leakage(u, b, prompts, baseline_name="reference" if self.reference else "original",
                       decided_by="judge" if judge is not None else "classifier", n_boot=200)

    def pinpoint(self, neighbors, judge=None, distance="auto"):
        prompts = list(neighbors)
        distance_mean = 0.3 if self.model == "restorer" else 0.02
        retention = RetentionResult(distance_mean, distance_mean - 0.02, distance_mean + 0.02, 32, 0.95, "ssim",
                                    np.zeros(32))
        accuracy = None
        if judge is not None:
            a = 0.5 if self.model == "restorer" else 0.95
            accuracy = JudgedAccuracy(est(a, 0.04, 32), {p: a for p in prompts}, "given", 0.97)
        return Pinpoint(tuple(prompts), retention, accuracy)

    def alignment(self, prompts, expected, judge):
        a = 0.4 if self.model == "restorer" else 0.97
        return JudgedAccuracy(est(a, 0.02, 32), {p: a for p in prompts}, "given", 0.98)

    def efficiency(self):
        return {"unlearned_unet_evals": 600, "seconds": 1.5}


@pytest.fixture
def uoc(request):
    marker = request.node.get_closest_marker("uoc_concept")
    return FakeProbe(marker.args[0], marker.kwargs.get("model", "forgetter"), marker.kwargs.get("reference"))
'''

SUITE = '''
import pytest
from pytest_uoc import (assert_aligned, assert_concept_erased, assert_concept_not_retrievable,
                        assert_no_leakage, assert_pinpoint)

PARAPHRASES = ["trois", "drei", "the digit 3"]

def judge(images):
    return images.mean(dim=(1, 2, 3)) > 0.5

@pytest.mark.uoc_concept("three", model="restorer")
def test_restorer_restore():
    assert_concept_not_retrievable(psi=0.5, ccs_max=0.2, guidance="restore")

@pytest.mark.uoc_concept("three", model="forgetter")
def test_forgetter_restore():
    verdict = assert_concept_not_retrievable(psi=0.5, ccs_max=0.2, guidance="restore")
    assert verdict.kind == "forgotten"

@pytest.mark.uoc_concept("three", model="restorer")
def test_restorer_paraphrases():
    assert_concept_erased(0.2, prompts=PARAPHRASES)

@pytest.mark.uoc_concept("three", model="forgetter")
def test_forgetter_paraphrases():
    result = assert_concept_erased(0.2, prompts=["trois", "drei"])
    assert result.overall.high <= 0.2

@pytest.mark.uoc_concept("three", model="restorer", reference="gold")
def test_restorer_leaks():
    assert_no_leakage(("", "a picture"), max_excess=0.05, judge=judge)

@pytest.mark.uoc_concept("three", model="forgetter", reference="gold")
def test_forgetter_does_not_leak():
    result = assert_no_leakage(max_excess=0.05, judge=judge)
    assert result.baseline == "reference"

@pytest.mark.uoc_concept("three", model="restorer")
def test_restorer_pinpoint():
    assert_pinpoint(["a handwritten eight", "a handwritten two"], max_distance=0.1, judge=judge, min_accuracy=0.8)

@pytest.mark.uoc_concept("three", model="forgetter")
def test_forgetter_pinpoint():
    assert_pinpoint({"a handwritten eight": "eight"}, max_distance=0.1, judge=judge, min_accuracy=0.8)

@pytest.mark.uoc_concept("three", model="restorer")
def test_restorer_alignment():
    assert_aligned(["a handwritten seven", "a blue digit"], ["seven", "seven"], 0.8, judge)

@pytest.mark.uoc_concept("three", model="forgetter")
def test_forgetter_alignment():
    assert_aligned(["a handwritten seven"], "seven", 0.8, judge)
'''


@pytest.fixture
def facet_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(test_facets_gate=SUITE)
    return pytester


def test_facet_failures_read_like_pytest(facet_suite: pytest.Pytester) -> None:
    result = facet_suite.runpytest("-p", "no:cacheprovider", "-W", "ignore::UserWarning")
    result.assert_outcomes(passed=5, failed=5)
    result.stdout.fnmatch_lines([
        "*concept 'three' is CONCEALED under the restoration attack: restoration from a noised reference*"
        "strength=0.5 ≥ 0.5*",
        "*strength | *CCS | *95% CI*| limit",
        "*0.500 | *0.450 | *[[]0.410, 0.490]* | *0.20  <- restored",
        "*1.000 | *0.050 | *",
        "*largest strength that restores the concept: 0.500",
        "*references: the original model's images of the concept*",
    ])
    result.stdout.fnmatch_lines([
        "*concept 'three' is NOT ERASED under other prompts: CCS over 3 prompts 0.340*> ccs_max 0.2; "
        "retrieved by 'trois'",
        "*prompt * | *CCS | *95% CI*| limit",
        "*'trois' * | *0.800 | *[[]0.750, 0.850]* | *0.20  <- retrieved",
        "*'drei' * | *0.100 | *",
    ])
    result.stdout.fnmatch_lines([
        "*concept 'three' LEAKS without being asked: the unlearned model draws it in 0.406 of images vs 0.031 for "
        "the reference (gold-standard) model; excess 0.375*> max_excess 0.05 (paired over 64 images, McNemar p=*;"
        " decided by judge)",
        "*prompt * | unlearned | reference",
        "*'' * | *0.812 | *0.062",
        "*'a picture' | *0.000 | *0.000",
    ])
    result.stdout.fnmatch_lines([
        "*unlearning DAMAGED NEIGHBOURING CONCEPTS: mean ssim distance 0.300*exceeds max_distance 0.1; "
        "judged accuracy 0.500*below min_accuracy 0.8",
        "*'a handwritten eight' | *0.500",
        "*the original model's accuracy on the same seeds: 0.970",
    ])
    result.stdout.fnmatch_lines([
        "*the unlearned model is NOT ALIGNED on general prompts: judged accuracy 0.400*< min_accuracy 0.8; "
        "the original model: 0.980",
        "*'a blue digit' * | *0.400",
    ])
    result.stdout.no_fnmatch_line("*assertions.py*")


def test_leakage_without_reference_says_it_compared_with_the_original(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_no_leakage

        @pytest.mark.uoc_concept("three", model="restorer")
        def test_no_reference():
            assert_no_leakage(max_excess=0.05)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*for the ORIGINAL model (no reference model given: --uoc-reference names a gold standard)*"
        "decided by classifier)",
        "*had no reference model and compared the unlearned model with the original*",
    ])


def test_the_uoc_judge_fixture_is_the_default_judge(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST + '''

def conftest_judge(images):
    return images.mean(dim=(1, 2, 3)) > 0.5


@pytest.fixture
def uoc_judge():
    return conftest_judge
''')
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_aligned, assert_no_leakage

        @pytest.mark.uoc_concept("three", model="forgetter", reference="gold")
        def test_fixture_judge(uoc):
            assert_no_leakage()
            assert uoc.judges_seen[-1].__name__ == "conftest_judge"
            assert_aligned(["a handwritten seven"], "seven", 0.8)
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_without_a_judge_alignment_and_min_accuracy_say_what_is_missing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_aligned, assert_pinpoint

        @pytest.mark.uoc_concept("three")
        def test_no_judge():
            with pytest.raises(ValueError, match="assert_aligned needs a judge"):
                assert_aligned(["a handwritten seven"], "seven", 0.8)
            with pytest.raises(ValueError, match="min_accuracy needs a judge"):
                assert_pinpoint(["a handwritten eight"], min_accuracy=0.8)
            result = assert_pinpoint(["a handwritten eight"], max_distance=0.1)
            assert result.accuracy is None
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_bad_facet_arguments_are_clear(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import (assert_aligned, assert_concept_erased, assert_concept_not_retrievable,
                                assert_no_leakage, assert_pinpoint)

        @pytest.mark.uoc_concept("three")
        def test_bad():
            with pytest.raises(ValueError, match=r"psi must be in \\[0.0, 1.0\\], got 1.5"):
                assert_concept_not_retrievable(psi=1.5, guidance="restore")
            with pytest.raises(ValueError, match="guidance must be 'partial'.*'restore'.*'inversion'.*got 'img2img'"):
                assert_concept_not_retrievable(psi=0.5, guidance="img2img")
            with pytest.raises(ValueError, match="crs_max applies to partial diffusion only"):
                assert_concept_not_retrievable(psi=0.5, crs_max=0.5, guidance="restore")
            with pytest.raises(ValueError, match="reference_images is for guidance='restore'"):
                assert_concept_not_retrievable(psi=0.5, reference_images=["three.png"])
            with pytest.raises(ValueError, match="neighbors is empty"):
                assert_pinpoint([])
            with pytest.raises(ValueError, match="neighbors is empty"):
                assert_pinpoint({})
            with pytest.raises(ValueError, match="prompts is empty"):
                assert_concept_erased(0.2, prompts=[])
            with pytest.raises(TypeError, match="non-empty prompt string, got ''"):
                assert_concept_erased(0.2, prompts=[""])
            with pytest.raises(ValueError, match="max_excess must be in"):
                assert_no_leakage(max_excess=1.5)
            with pytest.raises(ValueError, match="min_accuracy must be in"):
                assert_aligned(["a"], "seven", 1.5, lambda images: images)
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_report_rows_carry_the_facets_and_the_unlearned_models_cost(facet_suite: pytest.Pytester) -> None:
    report = facet_suite.path / "uoc.json"
    facet_suite.runpytest("-p", "no:cacheprovider", "-W", "ignore::UserWarning", "--uoc-report", str(report))
    rows = {row["test"].split("::")[-1]: row for row in json.loads(report.read_text())["tests"]}
    restore_row = rows["test_restorer_restore"]
    assert restore_row["guidance"] == "restore" and restore_row["verdict"] == "concealed"
    assert restore_row["restore"]["largest_restoring_strength"] == 0.5
    assert [p["psi"] for p in restore_row["restore"]["curve"]["curve"]] == [0.5, 0.8, 1.0]
    assert restore_row["cost"]["unlearned_unet_evals"] == 600
    assert restore_row["cost"]["total_seconds"] == 1.5
    assert rows["test_restorer_paraphrases"]["prompt_ccs"]["per_prompt"][0]["prompt"] == "trois"
    assert rows["test_restorer_leaks"]["leakage"]["baseline"] == "reference"
    assert rows["test_forgetter_pinpoint"]["pinpoint"]["accuracy"]["accuracy"]["mean"] == 0.95
    assert rows["test_forgetter_alignment"]["alignment"]["min_accuracy"] == 0.8
