"""The persistent trajectory cache: hit, miss, invalidation, corruption, exactness."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache, fingerprint_module
from pytest_uoc.zoo.build import TEST_SIZE, build_unet

PROMPTS = ["a red handwritten three", "drei"]
SEEDS = [0, 1, 2]
PSIS = [0.0, 0.25, 0.55, 1.0]


def _engine(pipe, unet, cache=None, **kwargs):
    # These tests are about the original's states; finished images are tested at the end.
    kwargs.setdefault("cache_images", False)
    return PartialDiffusion(pipe, unet, num_inference_steps=8, batch_size=4, cache=cache, **kwargs)


def test_second_run_reuses_the_original_and_is_exact(tiny_pipe, tiny_unet, tmp_path) -> None:
    plain = _engine(tiny_pipe, tiny_unet).sweep(PROMPTS, PSIS, SEEDS)
    cache = TrajectoryCache(tmp_path)
    cold = _engine(tiny_pipe, tiny_unet, cache).sweep(PROMPTS, PSIS, SEEDS)
    assert cold.original_unet_evals == plain.original_unet_evals > 0
    assert cache.misses > 0 and cache.hits == 0
    other = build_unet(TEST_SIZE, seed=7)
    warm_cache = TrajectoryCache(tmp_path)
    warm = _engine(tiny_pipe, other, warm_cache).sweep(PROMPTS, PSIS, SEEDS)
    assert warm.original_unet_evals == 0, "a new unlearned model must not redo the original's work"
    assert warm_cache.hits == len(PROMPTS) * len(SEEDS) * len(PSIS)
    reference = _engine(tiny_pipe, other).sweep(PROMPTS, PSIS, SEEDS)
    for psi in PSIS:
        assert torch.equal(cold[psi], plain[psi])
        assert torch.equal(warm[psi], reference[psi])


def test_a_new_psi_resumes_from_the_nearest_cached_state(tiny_pipe, tiny_unet, tmp_path) -> None:
    cache = TrajectoryCache(tmp_path)
    _engine(tiny_pipe, tiny_unet, cache).sweep(PROMPTS, [0.25], SEEDS)
    engine = _engine(tiny_pipe, tiny_unet, TrajectoryCache(tmp_path))
    handoff = engine.steps_for(0.25).handoff
    later = engine.steps_for(0.8).handoff
    sweep = engine.sweep(PROMPTS, [0.8], SEEDS)
    assert sweep.original_unet_evals == (later - handoff) * len(PROMPTS) * len(SEEDS)
    expected = _engine(tiny_pipe, tiny_unet).sweep(PROMPTS, [0.8], SEEDS)
    assert torch.allclose(sweep[0.8], expected[0.8], atol=1e-6)


def test_changed_original_weights_invalidate(tiny_pipe, tiny_unet, tmp_path) -> None:
    _engine(tiny_pipe, tiny_unet, TrajectoryCache(tmp_path)).sweep(PROMPTS, PSIS, SEEDS)
    edited = copy.copy(tiny_pipe)
    edited_unet = copy.deepcopy(tiny_pipe.unet)
    with torch.no_grad():
        next(edited_unet.parameters()).add_(0.01)
    from pytest_uoc.diffusion.loading import _pipeline_with_unet

    edited = _pipeline_with_unet(tiny_pipe, edited_unet)
    assert fingerprint_module(edited_unet) != fingerprint_module(tiny_pipe.unet)
    cache = TrajectoryCache(tmp_path)
    sweep = _engine(edited, tiny_unet, cache).sweep(PROMPTS, PSIS, SEEDS)
    assert cache.hits == 0
    assert sweep.original_unet_evals > 0


def test_corrupt_entry_is_reported_and_recomputed(tiny_pipe, tiny_unet, tmp_path) -> None:
    expected = _engine(tiny_pipe, tiny_unet, TrajectoryCache(tmp_path)).sweep(PROMPTS, PSIS, SEEDS)
    entries = sorted(tmp_path.rglob("*.pt"))
    assert len(entries) == len(PROMPTS) * len(SEEDS) * len(PSIS)
    entries[0].write_bytes(entries[0].read_bytes()[:40])  # truncated
    entries[1].write_bytes(entries[1].read_bytes()[:-1] + b"x")  # flipped byte
    cache = TrajectoryCache(tmp_path)
    with pytest.warns(UserWarning, match="trajectory cache entry .* is checksum mismatch") as caught:
        again = _engine(tiny_pipe, tiny_unet, cache).sweep(PROMPTS, PSIS, SEEDS)
    assert cache.corrupt == 2
    assert sum("trajectory cache entry" in str(w.message) for w in caught) == 1  # one warning per damaged cache
    assert again.original_unet_evals > 0
    for psi in PSIS:
        assert torch.equal(again[psi], expected[psi])
    assert len(sorted(tmp_path.rglob("*.pt"))) == len(entries)  # rewritten


@pytest.mark.parametrize("scheduler_name", ["EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_stateful_schedulers_stay_exact_through_the_cache(tiny_pipe, tiny_unet, tmp_path, scheduler_name) -> None:
    import diffusers

    from pytest_uoc.diffusion.loading import _pipeline_with_unet

    pipe = _pipeline_with_unet(tiny_pipe, tiny_pipe.unet)
    pipe.scheduler = getattr(diffusers, scheduler_name).from_config(tiny_pipe.scheduler.config)
    expected = _engine(pipe, tiny_unet).sweep(PROMPTS, PSIS, SEEDS)
    _engine(pipe, tiny_unet, TrajectoryCache(tmp_path)).sweep(PROMPTS, PSIS, SEEDS)
    cache = TrajectoryCache(tmp_path)
    warm = _engine(pipe, tiny_unet, cache).sweep(PROMPTS, PSIS, SEEDS)
    assert warm.original_unet_evals == 0 and cache.hits > 0
    for psi in PSIS:
        assert torch.allclose(warm[psi], expected[psi], atol=1e-6), psi


# -- finished images: a re-run against the same checkpoint ---------------------------------


def test_rerun_against_the_same_checkpoint_costs_no_unet_evaluation(tiny_pipe, tiny_unet, tmp_path) -> None:
    cache = TrajectoryCache(tmp_path)
    first = _engine(tiny_pipe, tiny_unet, cache, cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    again = _engine(tiny_pipe, tiny_unet, cache, cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    assert first.unet_evals > 0 and again.unet_evals == 0
    for psi in PSIS:
        assert torch.equal(first[psi], again[psi])


def test_finished_images_are_keyed_by_the_unlearned_weights(tiny_pipe, tiny_unet, tmp_path) -> None:

    cache = TrajectoryCache(tmp_path)
    _engine(tiny_pipe, tiny_unet, cache, cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    edited = copy.deepcopy(tiny_unet)
    with torch.no_grad():
        edited.conv_out.bias.add_(0.05)
    other = _engine(tiny_pipe, edited, cache, cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    plain = _engine(tiny_pipe, edited).sweep(PROMPTS, PSIS, SEEDS)
    # A new checkpoint reuses the original's states but none of the old finished images.
    assert other.original_unet_evals == 0 and other.unlearned_unet_evals == plain.unlearned_unet_evals
    for psi in PSIS:
        assert torch.allclose(other[psi], plain[psi], atol=1e-6)


def test_corrupt_finished_image_is_recomputed(tiny_pipe, tiny_unet, tmp_path) -> None:
    cache = TrajectoryCache(tmp_path)
    before = set(tmp_path.rglob("*.pt"))
    _engine(tiny_pipe, tiny_unet, TrajectoryCache(tmp_path), cache_images=False).sweep(PROMPTS, PSIS, SEEDS)
    states = set(tmp_path.rglob("*.pt")) - before
    expected = _engine(tiny_pipe, tiny_unet, cache, cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    images = sorted(set(tmp_path.rglob("*.pt")) - states)
    assert len(images) == len(PROMPTS) * len(SEEDS) * len(PSIS)
    for image in images:  # every finished image truncated: each is reported and recomputed
        image.write_bytes(image.read_bytes()[:50])
    reread = TrajectoryCache(tmp_path)
    with pytest.warns(UserWarning, match="is checksum mismatch"):
        again = _engine(tiny_pipe, tiny_unet, reread, cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    assert reread.corrupt == len(images)
    for psi in PSIS:
        assert torch.equal(again[psi], expected[psi])
    # Recomputed from the cached states: the unlearned steps again, none of the original's.
    assert again.original_unet_evals == 0 and again.unlearned_unet_evals == expected.unlearned_unet_evals


def test_fingerprints_are_the_same_in_every_process() -> None:
    # diffusers stores _use_default_values as a list made from a set: its order follows the
    # process's hash seed. A key that included it would miss the cache in every new process.
    import subprocess
    import sys

    code = (
        "from pytest_uoc.zoo.build import build_pipeline\n"
        "from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache\n"
        "pipe = build_pipeline(['a red handwritten three'])\n"
        "print(TrajectoryCache('unused').model_key(pipe, {'steps': 8}))\n"
    )
    keys = set()
    for hash_seed in ("1", "2", "3"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**__import__("os").environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"})
        keys.add(out.stdout.strip().splitlines()[-1])
    assert len(keys) == 1, keys


# -- issue 27 item 1: every scheduler a Stable Diffusion user runs, SD 1.4's PNDM as it ships ------------------

SD14_SCHEDULER = Path(__file__).parent / "data" / "sd-v1-4-scheduler_config.json"
SCHEDULERS = [
    ("PNDMScheduler", {}),  # SD 1.4's own: skip_prk_steps, steps_offset 1 (tests/data)
    ("EulerDiscreteScheduler", {}),
    ("EulerAncestralDiscreteScheduler", {}),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    ("LMSDiscreteScheduler", {}),
    ("UniPCMultistepScheduler", {}),
    ("DDIMScheduler", {}),
]


@pytest.mark.parametrize(("scheduler_name", "extra"), SCHEDULERS,
                         ids=[f"{n}-{e.get('algorithm_type', 'default')}" for n, e in SCHEDULERS])
def test_cache_with_sd_schedulers_second_checkpoint_and_rerun(tiny_pipe, tiny_unet, tmp_path, scheduler_name,
                                                              extra) -> None:
    """A second checkpoint costs the original nothing, a re-run nothing at all, images bit-identical to no cache."""
    import json

    import diffusers

    from pytest_uoc.diffusion.loading import _pipeline_with_unet

    config = json.loads(SD14_SCHEDULER.read_text())
    assert config["_class_name"] == "PNDMScheduler" and config["skip_prk_steps"] and config["steps_offset"] == 1
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    config["prediction_type"] = tiny_pipe.scheduler.config.prediction_type
    pipe = _pipeline_with_unet(tiny_pipe, tiny_pipe.unet)
    pipe.scheduler = getattr(diffusers, scheduler_name).from_config({**config, **extra})
    other = build_unet(TEST_SIZE, seed=7)
    plain = _engine(pipe, tiny_unet).sweep(PROMPTS, PSIS, SEEDS)
    plain_other = _engine(pipe, other).sweep(PROMPTS, PSIS, SEEDS)
    cold = _engine(pipe, tiny_unet, TrajectoryCache(tmp_path), cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    assert cold.original_unet_evals == plain.original_unet_evals > 0
    second = _engine(pipe, other, TrajectoryCache(tmp_path), cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    assert second.original_unet_evals == 0, "a second checkpoint must not redo the original's walk"
    rerun = _engine(pipe, tiny_unet, TrajectoryCache(tmp_path), cache_images=True).sweep(PROMPTS, PSIS, SEEDS)
    assert rerun.unet_evals == 0, "a re-run must cost nothing"
    for psi in PSIS:
        assert torch.equal(cold[psi], plain[psi]), psi
        assert torch.equal(second[psi], plain_other[psi]), psi
        assert torch.equal(rerun[psi], plain[psi]), psi
