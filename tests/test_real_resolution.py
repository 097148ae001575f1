"""The judge-free instrument at SD 1.x's real size: 512 px images from an SD 1.x-shaped pipeline, offline.

The zoo's digits are 32 px; a user's Stable Diffusion draws 512 px. This runs the domain classifier,
its held-out accuracy and the concept classifier the calibrated rule falls back on, at 512 px through
SD 1.4's own scheduler config (PNDM), with narrow random weights (``sd_shapes``), as a user without a
judge and without ImageNet weights on disk would.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from sd_shapes import PROMPTS, build, unet

from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.probe import Probe, ProbeSettings

SEEDS = tuple(range(16))  # the fewest for 2 prompts: 8 train, 8 scored per prompt


@pytest.fixture(scope="module")
def probe_512(tmp_path_factory):
    """A probe of two SD 1.x-shaped 512 px models with no ImageNet weights on disk (and its warnings)."""
    import huggingface_hub.constants

    import pytest_uoc.probe as probe_module

    empty = tmp_path_factory.mktemp("no-weights")
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(empty / "hf"))
        patch.setattr(probe_module, "_WARNED_RANDOM_INIT", set())
        previous = torch.hub.get_dir()
        torch.hub.set_dir(str(empty / "torch-hub"))
        try:
            with torch.random.fork_rng():
                original, unlearned = build("sd1"), unet("sd1", 100)
            engine = PartialDiffusion(original, unlearned, num_inference_steps=2, batch_size=8)
            probe = Probe(Concept("old master", PROMPTS), engine, ProbeSettings(seeds=SEEDS, psis=(0.0, 0.55)))
            probe.heldout_accuracy  # noqa: B018 - trains the domain classifier under the patched caches
            probe.concept_classifier  # noqa: B018
        finally:
            torch.hub.set_dir(previous)
    return probe, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_images_are_512px_and_kept_one_byte_per_channel(probe_512):
    probe, _ = probe_512
    images = probe.images([0.0])[0.0]
    assert images.shape == (len(PROMPTS) * len(probe.eval_seeds), 3, 512, 512)
    assert images.dtype == torch.uint8
    assert probe.cost.to_dict()["kept_image_bytes"] >= images.numel()


def test_random_weights_at_512px_are_warned_with_the_file_to_fetch(probe_512):
    probe, caught = probe_512
    assert probe.backbone_weights.path is None and probe.backbone_weights.source == "none"
    advice = [message for message in caught if "timm/resnet18.a1_in1k" in message]
    assert len(advice) == 1, caught  # once per run, naming the repository to fetch


def test_the_domain_classifier_reads_512px_images_at_its_own_size_and_is_scored_on_unseen_seeds(probe_512):
    probe, _ = probe_512
    classifier = probe.classifier
    assert classifier.image_size == 128  # the small recipe's side for inputs larger than 64 px
    assert classifier.preprocess(probe.images([0.0])[0.0][:2]).shape == (2, 3, 128, 128)
    assert classifier.n_train + classifier.n_heldout == 2 * len(PROMPTS) * len(probe.train_seeds)
    assert set(probe.train_seeds).isdisjoint(probe.eval_seeds)
    # The gate's held-out accuracy is the classifier's own reading of the scoring seeds' λO and λU.
    p_original, p_unlearned = probe.scores([1.0])[1.0], probe.scores([0.0])[0.0]
    expected = float((p_original > 0.5).sum() + (p_unlearned <= 0.5).sum()) / (len(p_original) + len(p_unlearned))
    assert probe.heldout_accuracy == pytest.approx(expected)
    assert len(p_original) == len(PROMPTS) * len(probe.eval_seeds)


def test_without_a_judge_the_concept_classifier_decides_the_calibrated_verdict(probe_512):
    probe, _ = probe_512
    assert probe.concept_classifier.image_size == 128
    verdict = probe.verdict(0.55, 0.2)
    assert verdict.calibration is not None and verdict.calibration["scorer"] == "concept classifier"
    assert verdict.heldout_accuracy == probe.heldout_accuracy
    points = {point["psi"]: point for point in verdict.calibration["points"]}
    # SD 1.4's PNDM (skip_prk_steps) walks 3 scheduled steps for 2 inference steps; at ψ 0.55 the original
    # runs the first before handing over, so the rule tested that ψ.
    assert (points[0.55]["original_steps"], points[0.55]["total_steps"]) == (1, 3)
    assert verdict.calibration["averaged_over_tested"]["psis"] == [0.55]
    assert verdict.kind in ("forgotten", "inconclusive", "concealed", "not_erased"), verdict.reason
