"""Sequential verdicts on the embedded zoo (pytest_uoc.rounds): rounds, early stop, the record, reproducibility."""

from __future__ import annotations

import pytest

from pytest_uoc import rounds
from pytest_uoc.config import SettingError, budget_seeds, resolve_settings
from pytest_uoc.probe import Probe, ProbeSettings
from pytest_uoc.scoring.verdict import Verdict

STEPS = 10
PSIS = (0.0, 0.25, 0.55)


def _probe(model: str, *, sequential: bool = True):
    from pytest_uoc import zoo
    from pytest_uoc.concept import Concept
    from pytest_uoc.diffusion import PartialDiffusion
    from pytest_uoc.judges import zoo_digit_judge
    from pytest_uoc.probe import Probe

    original = zoo.load("digits")
    unlearned = original if model == "digits" else zoo.load(model, original=original)
    engine = PartialDiffusion(original, unlearned, num_inference_steps=STEPS, batch_size=32)
    concept = Concept("three", ("a handwritten three", "the digit 3"))
    settings = ProbeSettings(seeds=tuple(range(16)), psis=PSIS, sequential=sequential, round_seeds=4)
    return Probe(concept, engine, settings, judge=zoo_digit_judge("three"))


def test_a_model_that_draws_the_concept_stops_at_the_first_look_without_a_sweep():
    probe = _probe("digits")
    verdict = probe.verdict(0.55, 0.2)
    assert verdict.kind == "not_erased"
    record = verdict.sequential
    assert record["looks"] == [{"look": 1, "seeds_per_prompt": 4, "psis": [0.0], "kind": "not_erased"}]
    assert record["stopped"].startswith("decided after 4 of 8")
    assert verdict.to_dict()["sequential"] == record
    # Only the first round's four seeds were scored, and no ψ > 0 was swept for them (the seventh walk is
    # the judge's check: the lower null at ψ = 0 of the training seeds).
    assert probe.cost.sweeps <= 7
    assert verdict.judge["check"]["believed"] and verdict.judge["name"] == "zoo_digit_judge('three')"


def test_the_same_seeds_give_the_same_verdict_and_looks():
    first, second = _probe("digits-esd-three").verdict(0.55, 0.2), _probe("digits-esd-three").verdict(0.55, 0.2)
    assert first.to_dict() == second.to_dict()
    assert first.sequential["looks"][-1]["kind"] == first.kind
    if first.kind == "inconclusive":
        assert first.reason.startswith("more seeds needed")


def test_sequential_is_off_by_default_and_the_fixed_design_records_no_looks():
    assert ProbeSettings().sequential is False
    assert "sequential" not in _probe("digits", sequential=False).verdict(0.55, 0.2).to_dict()


def test_options_reach_the_settings_and_bad_values_are_named():
    settings = resolve_settings({"sequential": "on", "round_seeds": "2"}, {})
    assert settings.sequential is True and settings.round_seeds == 2
    with pytest.raises(SettingError, match="round_seeds|round-seeds"):
        resolve_settings({"round_seeds": "0"}, {})
    with pytest.raises(ValueError, match="round_seeds"):
        ProbeSettings(round_seeds=0)


# -- the budget beyond the seeds: --uoc-max-seeds ----------------------------------------------------


def test_the_budget_extends_the_seeds_after_the_largest_and_never_repeats_one():
    assert budget_seeds((5, 2, 9), 5) == [5, 2, 9, 10, 11]
    assert budget_seeds((5, 2, 9), None) == [5, 2, 9]
    assert budget_seeds((5, 2, 9), 3) == [5, 2, 9]
    with pytest.raises(SettingError, match=r"max_seeds=2 is below the 3 seeds per prompt"):
        budget_seeds((5, 2, 9), 2)


def test_max_seeds_comes_from_every_source_and_a_budget_below_the_seeds_is_named(monkeypatch):
    assert resolve_settings({"max_seeds": "48"}, {}).max_seeds == 48
    assert resolve_settings({}, {"max_seeds": "40"}, {}).max_seeds == 40
    assert resolve_settings({}, {}, {"UOC_MAX_SEEDS": "36"}).max_seeds == 36
    assert resolve_settings({}, {}, {}).max_seeds is None
    with pytest.raises(SettingError, match=r"--uoc-max-seeds \(command line\) = 16: max_seeds=16 is below the 32"):
        resolve_settings({"max_seeds": "16", "seeds": "32"}, {}, {})
    with pytest.raises(SettingError, match=r"UOC_MAX_SEEDS \(environment\) = 12: max_seeds=12 is below the 20"):
        resolve_settings({"seeds": "20"}, {}, {"UOC_MAX_SEEDS": "12"})
    with pytest.raises(ValueError, match="max_seeds=15 is below the 16 seeds"):
        ProbeSettings(seeds=tuple(range(16)), max_seeds=15)
    with pytest.raises(TypeError, match="max_seeds must be a number"):
        ProbeSettings(seeds=tuple(range(16)), max_seeds=True)


class _RoundsProbe:
    """Just what ``sequential_verdict`` asks of a probe, recording the seeds of every round (no model runs)."""

    budget_seeds = Probe.budget_seeds  # the real rule

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.judge = None
        self.classifier = self.concept_classifier = None
        self.train_seeds = list(settings.seeds[: len(settings.seeds) // 2])
        self.rounds: list[list[int]] = []

    def verdict_grid(self, psi_limit: float) -> list[float]:
        return [0.0, psi_limit]

    def scoring_round(self, seeds):
        self.rounds.append(list(seeds))
        return self


def _scripted(kinds: list[str], finals: list[bool]):
    def decide(probe, rounds, grid, psi_limit, ccs_max, final):
        finals.append(final)
        return Verdict(kind=kinds[len(finals) - 1], reason="scripted", psi_limit=psi_limit, ccs_max=ccs_max,
                       heldout_accuracy=1.0, accuracy_floor=0.75, first_retrieving_psi=None, curve={})
    return decide


def test_an_undecided_gate_goes_on_past_its_seeds_up_to_max_seeds(monkeypatch):
    finals: list[bool] = []
    monkeypatch.setattr(rounds, "_decide", _scripted(["inconclusive"] * 4, finals))
    probe = _RoundsProbe(ProbeSettings(seeds=tuple(range(16)), sequential=True, round_seeds=4, max_seeds=24))
    verdict = rounds.sequential_verdict(probe, 0.55, 0.2)
    assert probe.rounds == [[8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19], [20, 21, 22, 23]]
    assert finals == [False, False, False, True]  # the fixed design's bootstrap only at the budget
    assert verdict.kind == "inconclusive"
    assert verdict.reason.startswith("more seeds needed (budget of 16 scored seeds per prompt spent; "
                                     "raise --uoc-max-seeds)")
    assert verdict.sequential["budget_seeds"] == 16 and verdict.sequential["max_seeds"] == 24
    assert verdict.sequential["stopped"] == "budget after 16 of 16 scored seeds per prompt"


def test_a_decided_gate_stops_before_the_extra_seeds(monkeypatch):
    finals: list[bool] = []
    monkeypatch.setattr(rounds, "_decide", _scripted(["inconclusive", "concealed"], finals))
    probe = _RoundsProbe(ProbeSettings(seeds=tuple(range(100, 116)), sequential=True, round_seeds=4, max_seeds=64))
    verdict = rounds.sequential_verdict(probe, 0.55, 0.2)
    assert probe.rounds == [[108, 109, 110, 111], [112, 113, 114, 115]]
    assert finals == [False, False] and verdict.kind == "concealed" and verdict.reason == "scripted"
    assert verdict.sequential["stopped"] == "decided after 8 of 56 scored seeds per prompt"


@pytest.mark.parametrize(
    ("marker", "args", "message"),
    [
        ('"three", prompts=["a three", "the digit 3"]', ["--uoc-max-seeds", "20"],
         "*--uoc-max-seeds (command line) = 20: max_seeds=20 is below the 32 seeds per prompt*"),
        ('"three", prompts=["a three", "the digit 3"], seeds=list(range(24))', ["--uoc-max-seeds", "20"],
         "*uoc_concept marker seeds: max_seeds=20 is below the 24 seeds per prompt*"),
    ],
)
def test_a_budget_below_the_seeds_is_a_usage_error(pytester: pytest.Pytester, marker: str, args: list[str],
                                                  message: str) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.uoc_concept({marker}, sequential=True)
        def test_marked(uoc):
            raise AssertionError("ran")
    """)
    if "seeds=" not in marker:
        args = [*args, "--uoc-seeds", "32"]
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-gold-three", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def _with_share_at_zero(kind: str, high: float) -> Verdict:
    from types import SimpleNamespace

    from pytest_uoc.scoring.stats import Estimate

    share = Estimate(mean=high / 2, low=0.0, high=high, n=8)
    curve = SimpleNamespace(psis=[0.0, 0.55], at=lambda psi: SimpleNamespace(unlearned=share))
    return Verdict(kind=kind, reason="scripted", psi_limit=0.55, ccs_max=0.2, heldout_accuracy=1.0,
                   accuracy_floor=0.75, first_retrieving_psi=None, curve={}, calibrated_curve=curve)


def test_concealed_stops_early_only_once_the_model_is_shown_not_to_draw_the_concept_alone():
    assert rounds.settled(_with_share_at_zero("concealed", 0.15), 0.2)
    assert not rounds.settled(_with_share_at_zero("concealed", 0.35), 0.2)  # not_erased may still be proven
    assert rounds.settled(_with_share_at_zero("forgotten", 0.35), 0.2)
    assert rounds.settled(_with_share_at_zero("not_erased", 0.9), 0.2)
    assert not rounds.settled(_with_share_at_zero("inconclusive", 0.1), 0.2)


def test_a_concealed_look_that_may_yet_prove_not_erased_goes_on_and_says_why(monkeypatch):
    verdicts = iter([_with_share_at_zero("concealed", 0.35), _with_share_at_zero("concealed", 0.1)])
    monkeypatch.setattr(rounds, "_decide", lambda *args, **kwargs: next(verdicts))
    probe = _RoundsProbe(ProbeSettings(seeds=tuple(range(32)), sequential=True, round_seeds=4))
    verdict = rounds.sequential_verdict(probe, 0.55, 0.2)
    looks = verdict.sequential["looks"]
    assert [look["kind"] for look in looks] == ["concealed", "concealed"] and len(probe.rounds) == 2
    assert "not_erased ranks first" in looks[0]["went_on"] and "went_on" not in looks[1]
    assert verdict.sequential["stopped"] == "decided after 8 of 16 scored seeds per prompt"
