"""The engine reproduces the reference partial diffusion of docs/definitions.md exactly.

The reference is a plain ``StableDiffusionPipeline.__call__`` whose
``callback_on_step_end`` swaps in the unlearned UNet at the cutoff, with one CPU
generator per image (``pytest_uoc.diffusion.reference``). ``sweep`` and
``generate`` must give the same images to within 1e-4 (float32) for
deterministic and stochastic schedulers, whatever the batching.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest
import torch

from pytest_uoc.diffusion import PartialDiffusion as CompactPartialDiffusion
from pytest_uoc.diffusion import load_unlearned
from pytest_uoc.diffusion.reference import reference_partial_diffusion


def PartialDiffusion(*args, **kwargs):  # noqa: N802 - stands for the class in these comparisons
    """The engine keeping float32 images: compared with diffusers' float output to 1e-5, before rounding.

    The default engine keeps uint8 images; ``test_compact_images_are_the_float_images_rounded`` shows
    they are exactly these images rounded.
    """
    kwargs.setdefault("image_dtype", torch.float32)
    return CompactPartialDiffusion(*args, **kwargs)

PSIS = [0.0, 0.001, 0.05, 0.25, 0.55, 0.8, 1.0]
PROMPTS = ["a red handwritten three", "a green handwritten eight"]
SEEDS = [0, 7]
STEPS = 20
GUIDANCE = 7.5
ATOL = 1e-4


def scheduler_kinds():
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
    )

    return {
        # name: (scheduler class, config overrides, eta)
        "ddim-eta0": (DDIMScheduler, {}, 0.0),
        "ddim-eta1": (DDIMScheduler, {}, 1.0),
        # "trailing" starts at t = 999, so ψ = 0.001 (cutoff 999) hands off after one
        # step and the t == cutoff boundary is exercised.
        "ddim-trailing-eta1": (DDIMScheduler, {"timestep_spacing": "trailing"}, 1.0),
        "euler-ancestral": (EulerAncestralDiscreteScheduler, {}, 0.0),
        "dpm-multistep": (DPMSolverMultistepScheduler, {}, 0.0),
    }


KINDS = ["ddim-eta0", "ddim-eta1", "ddim-trailing-eta1", "euler-ancestral", "dpm-multistep"]


def with_scheduler(pipe, kind: str | None = None, **parts):
    """A new pipeline from ``pipe``'s parts (the session fixture is never mutated)."""
    from diffusers import StableDiffusionPipeline

    components = {**pipe.components, **parts}
    if kind is not None:
        cls, overrides, _ = scheduler_kinds()[kind]
        components["scheduler"] = cls.from_config(pipe.scheduler.config, **overrides)
    elif "scheduler" not in parts:
        components["scheduler"] = type(pipe.scheduler).from_config(pipe.scheduler.config)
    components["requires_safety_checker"] = False
    new = StableDiffusionPipeline(**components)
    new.set_progress_bar_config(disable=True)
    return new


def plain_call(pipe, prompts, seeds, *, eta=0.0, steps=STEPS):
    """The pipeline's own images, prompt-major and seed-minor, one generator per image."""
    generators = [torch.Generator("cpu").manual_seed(s) for _ in prompts for s in seeds]
    with torch.inference_mode():
        out = pipe(
            [p for p in prompts for _ in seeds], num_inference_steps=steps,
            guidance_scale=GUIDANCE, generator=generators, eta=eta, output_type="pt",
        )
    return out.images.float().cpu()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@dataclass
class Case:
    kind: str
    eta: float
    pipe: object
    unet: object
    engine: PartialDiffusion
    sweep: object


@pytest.fixture(scope="module", params=KINDS)
def case(request, tiny_pipe, tiny_unet):
    kind = request.param
    eta = scheduler_kinds()[kind][2]
    pipe = with_scheduler(tiny_pipe, kind)
    engine = PartialDiffusion(pipe, tiny_unet, num_inference_steps=STEPS, guidance_scale=GUIDANCE, eta=eta)
    return Case(kind, eta, pipe, tiny_unet, engine, engine.sweep(PROMPTS, PSIS, SEEDS))


@pytest.mark.parametrize("psi", PSIS)
def test_sweep_generate_and_reference_agree(case, psi):
    reference = reference_partial_diffusion(
        case.pipe, case.unet, PROMPTS, psi, SEEDS,
        num_inference_steps=STEPS, guidance_scale=GUIDANCE, eta=case.eta,
    )
    generated = case.engine.generate(PROMPTS, psi, SEEDS)
    swept = case.sweep[psi]
    assert swept.shape == (len(PROMPTS) * len(SEEDS), 3, 16, 16)
    assert swept.dtype == torch.float32
    assert 0.0 <= float(swept.min()) and float(swept.max()) <= 1.0
    assert max_diff(swept, reference) <= ATOL, f"sweep vs reference at psi={psi} ({case.kind})"
    assert max_diff(generated.images, reference) <= ATOL, f"generate vs reference at psi={psi}"
    # Same batch composition (all four images in one batch): bit-identical.
    assert torch.equal(swept, generated.images)
    assert generated.psi == psi
    assert generated.prompts == PROMPTS and generated.seeds == SEEDS


def test_the_grid_exercises_distinct_handoffs(case):
    handoffs = [case.sweep.splits[psi].handoff for psi in PSIS]
    assert handoffs == sorted(handoffs)
    assert handoffs[0] == 0 and handoffs[-1] == STEPS
    assert len(set(handoffs)) >= 5, handoffs
    if case.kind == "ddim-trailing-eta1":
        assert case.sweep.splits[0.001].handoff == 1
    # Distinct hand-offs give distinct images: the comparison above is not vacuous.
    first = {}
    for psi in PSIS:
        first.setdefault(case.sweep.splits[psi].handoff, case.sweep[psi])
    images = list(first.values())
    for a, b in zip(images, images[1:], strict=False):
        assert max_diff(a, b) > 1e-3


def test_psi_one_is_the_original_pipelines_own_output(case):
    own = plain_call(case.pipe, PROMPTS, SEEDS, eta=case.eta)
    assert max_diff(case.sweep[1.0], own) <= ATOL


def test_psi_zero_is_the_unlearned_pipelines_own_output(case):
    unlearned = load_unlearned(case.pipe, case.unet)
    assert unlearned.unet is case.unet
    own = plain_call(unlearned, PROMPTS, SEEDS, eta=case.eta)
    assert max_diff(case.sweep[0.0], own) <= ATOL
    assert max_diff(case.sweep[0.0], case.sweep[1.0]) > 1e-3


@pytest.mark.parametrize("kind", ["pndm", "heun"])
def test_schedulers_with_more_steps_than_num_inference_steps(tiny_pipe, tiny_unet, kind):
    # PNDM (SD 1.x's own default) repeats a timestep; Heun evaluates every interior
    # timestep twice. The engine must walk all scheduled timesteps, as the pipeline does.
    from diffusers import HeunDiscreteScheduler, PNDMScheduler

    cls, overrides = {
        "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
        "heun": (HeunDiscreteScheduler, {}),
    }[kind]
    pipe = with_scheduler(tiny_pipe, scheduler=cls.from_config(tiny_pipe.scheduler.config, **overrides))
    steps = 6
    engine = PartialDiffusion(pipe, tiny_unet, num_inference_steps=steps)
    total = len(engine.timesteps)
    assert total > steps
    psis = [0.0, 0.55, 1.0]
    rows, handles = count_rows(pipe.unet, tiny_unet)
    try:
        sweep = engine.sweep(PROMPTS[:1], psis, SEEDS)
    finally:
        for handle in handles:
            handle.remove()
    assert sweep.splits[1.0].handoff == total
    handoffs = sorted({sweep.splits[psi].handoff for psi in psis})
    assert sweep.unet_evals == (total + sum(total - k for k in handoffs)) * len(SEEDS)
    assert rows["n"] == 2 * sweep.unet_evals
    for psi in psis:
        reference = reference_partial_diffusion(
            pipe, tiny_unet, PROMPTS[:1], psi, SEEDS, num_inference_steps=steps
        )
        assert max_diff(sweep[psi], reference) <= ATOL, psi


# -- eta reaches the scheduler on both paths ----------------------------------------------


def test_pipeline_default_eta_is_zero():
    from diffusers import StableDiffusionPipeline

    # reference_partial_diffusion passes eta only when it is non-zero; that is right
    # only while the pipeline's own default is 0.
    assert inspect.signature(StableDiffusionPipeline.__call__).parameters["eta"].default == 0.0


def test_eta_is_passed_through_by_engine_and_reference(tiny_pipe, tiny_unet):
    pipe = with_scheduler(tiny_pipe, "ddim-eta0")
    psi = 0.55
    refs = {
        eta: reference_partial_diffusion(
            pipe, tiny_unet, PROMPTS[:1], psi, SEEDS, num_inference_steps=STEPS,
            guidance_scale=GUIDANCE, eta=eta,
        )
        for eta in (0.0, 1.0)
    }
    assert max_diff(refs[0.0], refs[1.0]) > 1e-2, "eta=1 must add noise in the reference"
    for eta in (0.0, 1.0):
        engine = PartialDiffusion(pipe, tiny_unet, num_inference_steps=STEPS, eta=eta)
        assert max_diff(engine.generate(PROMPTS[:1], psi, SEEDS).images, refs[eta]) <= ATOL
    # The reference's eta=0 (not passed) equals an explicit eta=0.0 pipeline call.
    assert max_diff(
        reference_partial_diffusion(pipe, tiny_unet, PROMPTS[:1], 1.0, SEEDS, num_inference_steps=STEPS),
        plain_call(pipe, PROMPTS[:1], SEEDS, eta=0.0),
    ) <= ATOL


def test_reference_restores_the_pipeline(tiny_pipe, tiny_unet):
    pipe = with_scheduler(tiny_pipe, "ddim-eta0")
    original_unet = pipe.unet
    reference_partial_diffusion(pipe, tiny_unet, PROMPTS[:1], 0.55, [0], num_inference_steps=4)
    assert pipe.unet is original_unet


# -- batching, ordering, per-image generators ---------------------------------------------


@pytest.mark.parametrize("kind", ["ddim-eta1", "euler-ancestral"])
def test_batching_does_not_change_images(tiny_pipe, tiny_unet, kind):
    pipe = with_scheduler(tiny_pipe, kind)
    eta = scheduler_kinds()[kind][2]
    psis = [0.0, 0.25, 0.55, 1.0]
    seeds = [1, 2, 3]
    sweeps = {
        size: PartialDiffusion(
            pipe, tiny_unet, num_inference_steps=8, eta=eta, batch_size=size
        ).sweep(PROMPTS, psis, seeds)
        for size in (1, 4, 16)  # 4: one full batch and a remainder of 2
    }
    for size in (4, 16):
        for psi in psis:
            assert sweeps[size][psi].shape[0] == len(PROMPTS) * len(seeds)
            assert max_diff(sweeps[size][psi], sweeps[16][psi]) <= 1e-6, (size, psi)
            # Batch-1 calls take other float32 kernels: one UNet call alone already differs
            # from the same rows in a batch by ~1e-6 on the CPU (measured 9e-7, VAE 2e-6),
            # which ten guided steps carry to ~1e-6 in the image. Still far below 1e-4.
            assert max_diff(sweeps[size][psi], sweeps[1][psi]) <= 1e-5, (size, psi)
        assert sweeps[size].unet_evals == sweeps[1].unet_evals


def test_images_are_prompt_major_and_seed_minor(tiny_pipe, tiny_unet):
    pipe = with_scheduler(tiny_pipe, "ddim-eta1")
    engine = PartialDiffusion(pipe, tiny_unet, num_inference_steps=10, eta=1.0)
    seeds = [3, 5]
    images = engine.sweep(PROMPTS, [0.55], seeds)[0.55]
    singles = []
    for p, prompt in enumerate(PROMPTS):
        for s, seed in enumerate(seeds):
            alone = engine.generate([prompt], 0.55, [seed]).images
            assert max_diff(images[p * len(seeds) + s: p * len(seeds) + s + 1], alone) <= 1e-6
            singles.append(alone)
    # Every (prompt, seed) gives a different image, so a wrong order would be caught.
    for i in range(len(singles)):
        for j in range(i + 1, len(singles)):
            assert max_diff(singles[i], singles[j]) > 1e-3, (i, j)


@pytest.mark.parametrize("kind", ["ddim-eta1", "euler-ancestral", "dpm-multistep"])
def test_each_image_has_its_own_generator(tiny_pipe, tiny_unet, kind):
    pipe = with_scheduler(tiny_pipe, kind)
    engine = PartialDiffusion(pipe, tiny_unet, num_inference_steps=10, eta=scheduler_kinds()[kind][2])
    prompt = PROMPTS[:1]
    many = engine.sweep(prompt, [0.25, 0.55], [3, 5, 7])
    alone = engine.sweep(prompt, [0.25, 0.55], [5])
    for psi in (0.25, 0.55):
        assert max_diff(many[psi][1:2], alone[psi]) <= 1e-6
        assert max_diff(many[psi][0:1], alone[psi]) > 1e-3
    # The reference (ground truth) agrees about seed 5 alone.
    ref = reference_partial_diffusion(
        pipe, tiny_unet, prompt, 0.55, [5], num_inference_steps=10, eta=engine.eta
    )
    assert max_diff(alone[0.55], ref) <= ATOL


def test_integer_psis_and_lookup(tiny_pipe, tiny_unet):
    engine = PartialDiffusion(with_scheduler(tiny_pipe), tiny_unet, num_inference_steps=4)
    sweep = engine.sweep(PROMPTS[:1], [0, 1], [0])
    assert torch.equal(sweep[0], sweep[0.0])
    assert torch.equal(sweep.at(1).images, sweep[1.0])
    with pytest.raises(KeyError, match="0.5"):
        sweep[0.5]


# -- evaluation counts --------------------------------------------------------------------


def count_rows(*unets):
    """Attach hooks counting the rows every UNet forward receives; returns (rows, handles)."""
    rows = {"n": 0, "calls": 0}

    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        rows["n"] += sample.shape[0]
        rows["calls"] += 1

    handles = [u.register_forward_pre_hook(hook, with_kwargs=True) for u in unets]
    return rows, handles


def test_unet_evals_are_the_theoretical_minimum(tiny_pipe, tiny_unet):
    pipe = with_scheduler(tiny_pipe)
    engine = PartialDiffusion(pipe, tiny_unet, num_inference_steps=STEPS, batch_size=16)
    psis = [0.0, 0.1, 0.25, 0.3, 0.55, 0.8, 0.9, 1.0]
    seeds = [0, 1, 2]
    n_images = len(PROMPTS) * len(seeds)
    handoffs = sorted({engine.steps_for(psi).handoff for psi in psis})
    expected = (max(handoffs) + sum(STEPS - k for k in handoffs)) * n_images
    rows, handles = count_rows(pipe.unet, tiny_unet)
    try:
        sweep = engine.sweep(PROMPTS, psis, seeds)
    finally:
        for handle in handles:
            handle.remove()
    assert sweep.unet_evals == expected
    assert sweep.original_unet_evals == max(handoffs) * n_images
    assert sweep.unlearned_unet_evals == sum(STEPS - k for k in handoffs) * n_images
    assert sweep.naive_unet_evals == len(psis) * STEPS * n_images
    assert sweep.unet_evals < sweep.naive_unet_evals
    # The count is what was actually spent: with CFG each evaluation is two UNet rows.
    assert rows["n"] == 2 * sweep.unet_evals
    assert sweep.splits[0.55] == engine.steps_for(0.55)


def test_generate_spends_one_full_trajectory_per_image(tiny_pipe, tiny_unet):
    engine = PartialDiffusion(with_scheduler(tiny_pipe), tiny_unet, num_inference_steps=8)
    rows, handles = count_rows(engine.original.unet, tiny_unet)
    try:
        images = engine.generate(PROMPTS, 0.55, SEEDS)
    finally:
        for handle in handles:
            handle.remove()
    assert images.unet_evals == 8 * len(images) == 8 * 4
    assert rows["n"] == 2 * images.unet_evals
    assert rows["calls"] == 8  # one batched call per step


def test_no_guidance_means_one_row_per_evaluation(tiny_pipe, tiny_unet):
    pipe = with_scheduler(tiny_pipe)
    engine = PartialDiffusion(pipe, tiny_unet, num_inference_steps=6, guidance_scale=1.0)
    assert not engine.do_cfg
    rows, handles = count_rows(pipe.unet, tiny_unet)
    try:
        images = engine.generate(PROMPTS[:1], 0.5, SEEDS)
    finally:
        for handle in handles:
            handle.remove()
    assert rows["n"] == images.unet_evals == 6 * 2
    ref = reference_partial_diffusion(
        pipe, tiny_unet, PROMPTS[:1], 0.5, SEEDS, num_inference_steps=6, guidance_scale=1.0
    )
    assert max_diff(images.images, ref) <= ATOL


# -- an unlearned pipeline with its own text encoder ----------------------------------------


def test_unlearned_text_encoder_is_used_for_its_steps(tiny_pipe, tiny_unet):
    from pytest_uoc.zoo.build import TEST_SIZE, build_text_encoder

    pipe = with_scheduler(tiny_pipe)
    edited = with_scheduler(
        tiny_pipe, unet=tiny_unet, text_encoder=build_text_encoder(TEST_SIZE, tiny_pipe.tokenizer, seed=5)
    )
    engine = PartialDiffusion(pipe, edited, num_inference_steps=10)
    assert engine.unlearned is edited
    psis = [0.0, 0.55, 1.0]
    sweep = engine.sweep(PROMPTS, psis, SEEDS)
    own = plain_call(edited, PROMPTS, SEEDS, steps=10)
    assert max_diff(sweep[0.0], own) <= ATOL
    # With the original's text encoder instead, the images differ: the test has teeth.
    shared = PartialDiffusion(pipe, tiny_unet, num_inference_steps=10).sweep(PROMPTS, [0.0], SEEDS)
    assert max_diff(shared[0.0], sweep[0.0]) > 1e-3
    assert max_diff(sweep[1.0], plain_call(pipe, PROMPTS, SEEDS, steps=10)) <= ATOL

    # Mid-way: a reference call that swaps the UNet *and* the prompt embeddings.
    with torch.inference_mode():
        positive, negative = edited.encode_prompt(
            [p for p in PROMPTS for _ in SEEDS], torch.device("cpu"), 1, True
        )
    edited_embeds = torch.cat([negative, positive])
    cutoff = engine.steps_for(0.55).cutoff

    def swap(p, step, timestep, kwargs):
        ts = p.scheduler.timesteps
        if step + 1 < len(ts) and ts[step + 1] < cutoff:
            p.unet = tiny_unet
            return {"prompt_embeds": edited_embeds}
        return {}

    ref_pipe = with_scheduler(tiny_pipe)
    generators = [torch.Generator("cpu").manual_seed(s) for _ in PROMPTS for s in SEEDS]
    with torch.inference_mode():
        ref = ref_pipe(
            [p for p in PROMPTS for _ in SEEDS], num_inference_steps=10, guidance_scale=GUIDANCE,
            generator=generators, output_type="pt", callback_on_step_end=swap,
            callback_on_step_end_tensor_inputs=["prompt_embeds"],
        ).images
    assert max_diff(sweep[0.55], ref.float()) <= ATOL
