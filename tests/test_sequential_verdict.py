"""Sequential verdicts on the embedded zoo (pytest_uoc.rounds): rounds, early stop, the record, reproducibility."""

from __future__ import annotations

import pytest

from pytest_uoc.config import SettingError, resolve_settings
from pytest_uoc.probe import ProbeSettings

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
    # Only the first round's four seeds were scored, and no ψ > 0 was swept for them.
    assert probe.cost.sweeps <= 6


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
