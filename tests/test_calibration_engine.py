"""Null finishes in the engine and the probe: paired with λP(ψ), exact, and cached for the next checkpoint."""

from __future__ import annotations

import pytest
import torch

from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.diffusion.engine import NullFinish
from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache
from pytest_uoc.probe import Probe, ProbeSettings

PROMPTS = ["a red handwritten three", "trois"]
PSIS = [0.0, 0.3, 0.6]
SEEDS = [0, 1, 2]


def _engine(pipe, unet, cache=None):
    return PartialDiffusion(pipe, unet, num_inference_steps=4, guidance_scale=7.5, batch_size=4, cache=cache)


def test_a_null_that_asks_for_the_prompt_itself_is_the_original_alone(tiny_pipe, tiny_unet):
    """Anchors equal to the prompts with the empty negative: the original finishes its own drawing (ψ = 1)."""
    engine = _engine(tiny_pipe, tiny_unet)
    null = engine.sweep(PROMPTS, PSIS, SEEDS, null=NullFinish(tuple(PROMPTS), "empty"))
    original = engine.sweep(PROMPTS, [1.0], SEEDS)[1.0]
    for psi in PSIS:
        torch.testing.assert_close(null[psi], original, atol=1e-6, rtol=0)
    assert null.unlearned_unet_evals == 0 and null.null_unet_evals > 0


def test_null_finishes_start_from_the_same_hand_off_as_partial_diffusion(tiny_pipe, tiny_unet):
    """The lower null differs from the upper one (another negative), and both from λP, but share λP's hand-off."""
    engine = _engine(tiny_pipe, tiny_unet)
    anchors = ("a handwritten three", "a digit")
    upper = engine.sweep(PROMPTS, PSIS, SEEDS, null=NullFinish(anchors, "empty"))
    lower = engine.sweep(PROMPTS, PSIS, SEEDS, null=NullFinish(anchors, "concept"))
    partial = engine.sweep(PROMPTS, PSIS, SEEDS)
    assert not torch.equal(upper[0.3], lower[0.3])
    assert not torch.equal(upper[0.3], partial[0.3])
    # The original's share of the work is the same in every finish: only the finishing evaluations differ.
    assert upper.original_unet_evals == partial.original_unet_evals == lower.original_unet_evals
    assert upper.null_unet_evals == partial.unlearned_unet_evals


def test_a_null_needs_one_anchor_per_prompt(tiny_pipe, tiny_unet):
    engine = _engine(tiny_pipe, tiny_unet)
    with pytest.raises(ValueError, match="one anchor per prompt: 2 prompts, 1 anchors"):
        engine.sweep(PROMPTS, PSIS, SEEDS, null=NullFinish(("a digit",), "empty"))
    with pytest.raises(ValueError, match="negative must be one of"):
        NullFinish(("a digit",), "nothing")


def test_a_second_checkpoint_costs_no_original_evaluation_for_the_nulls(tiny_pipe, tiny_unet, tmp_path):
    """The null finishes depend on the original, prompts, anchors and seeds only: cached across checkpoints."""
    from pytest_uoc.zoo.build import TEST_SIZE, build_unet

    cache = TrajectoryCache(tmp_path / "trajectories")
    anchors = ("a handwritten three", "a digit")
    first = _engine(tiny_pipe, tiny_unet, cache).sweep(PROMPTS, PSIS, SEEDS, null=NullFinish(anchors, "concept"))
    other = _engine(tiny_pipe, build_unet(TEST_SIZE, seed=7), cache)
    second = other.sweep(PROMPTS, PSIS, SEEDS, null=NullFinish(anchors, "concept"))
    assert first.null_unet_evals > 0
    assert second.null_unet_evals == 0 and second.original_unet_evals == 0
    for psi in PSIS:
        assert torch.equal(first[psi], second[psi])
    # Other anchors are other nulls: not served from the cache.
    third = other.sweep(PROMPTS, PSIS, SEEDS, null=NullFinish(("a digit", "a digit"), "concept"))
    assert third.null_unet_evals > 0


def test_the_probe_counts_null_evaluations_and_reuses_them(tiny_pipe, tiny_unet, tmp_path):
    from pytest_uoc.zoo.build import TEST_SIZE, build_unet

    cache = TrajectoryCache(tmp_path / "trajectories")
    concept = Concept("three", tuple(PROMPTS), anchors=("a handwritten", "a digit"))
    settings = ProbeSettings(seeds=tuple(range(16)), psis=(0.0, 0.3), n_boot=100)
    probe = Probe(concept, _engine(tiny_pipe, tiny_unet, cache), settings)
    probe.null_images([0.0, 0.3], "upper")
    probe.null_images([0.0, 0.3], "lower")
    assert probe.cost.null_unet_evals > 0
    assert probe.summary()["cost"]["null_unet_evals"] == probe.cost.null_unet_evals
    again = Probe(concept, _engine(tiny_pipe, build_unet(TEST_SIZE, seed=9), cache), settings)
    again.null_images([0.0, 0.3], "upper")
    again.null_images([0.0, 0.3], "lower")
    assert again.cost.null_unet_evals == 0 and again.cost.unet_evals == 0


def test_too_few_steps_make_a_passing_absolute_verdict_inconclusive(tiny_pipe, tiny_unet):
    """With 4 steps ψ 0.05 hands over before the first step: it must not count as evidence of forgetting."""
    probe = Probe(Concept("three", tuple(PROMPTS)), _engine(tiny_pipe, tiny_unet),
                  ProbeSettings(seeds=tuple(range(16)), psis=(0.0, 0.05), n_boot=100, rule="absolute"))

    class Blind:
        def probabilities(self, images):
            return torch.zeros(images.shape[0])

    probe._classifier, probe._heldout = Blind(), 1.0
    assert probe.engine.steps_for(0.05).handoff == 0
    verdict = probe.verdict(0.05, 0.2)
    assert verdict.kind == "inconclusive"
    assert "ψ 0.05 gives the original 0 of 4 steps" in verdict.reason
    needed = probe.steps_needed([0.05])
    assert needed is not None and needed > 4 and f"use at least {needed} steps" in verdict.reason
    assert _engine(tiny_pipe, tiny_unet).steps_for(0.05).handoff == 0
    more = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=needed)
    assert more.steps_for(0.05).handoff >= 1


def test_a_grid_psi_without_an_original_step_is_warned_before_any_image(tiny_pipe, tiny_unet):
    from pytest_uoc.probe import FewStepsWarning

    probe = Probe(Concept("three", tuple(PROMPTS)), _engine(tiny_pipe, tiny_unet),
                  ProbeSettings(seeds=tuple(range(16)), psis=(0.0, 0.05, 0.3), n_boot=100))
    assert probe.idle_psis() == [0.05]
    with pytest.warns(FewStepsWarning, match=r"ψ 0.05 give the original 0 of 4 steps.*use at least \d+ steps"):
        probe.warn_idle_psis()
    assert probe.cost.unet_evals == 0
