"""The fast path: mixed-ψ batches, compiled UNet calls, SDPA attention, half precision.

Mixed-ψ batches: branches of different ψ finished together give the same images.

With ``mix_branches=True`` every round of the unlearned model advances all
unfinished branches in shared UNet calls, each row at its own timestep. The
images must match the unmixed sweep (and therefore the reference) within float
rounding, for deterministic, stochastic and multistep schedulers, at the same
UNet-evaluation count and in fewer UNet calls.
"""

from __future__ import annotations

import pytest
import torch

from pytest_uoc.diffusion import PartialDiffusion

PSIS = [0.0, 0.05, 0.25, 0.55, 0.8, 1.0]
PROMPTS = ["a red handwritten three", "a green handwritten eight"]
SEEDS = [0, 7]
STEPS = 12


def pipeline_with(pipe, scheduler):
    from diffusers import StableDiffusionPipeline

    new = StableDiffusionPipeline(**{**pipe.components, "scheduler": scheduler, "requires_safety_checker": False})
    new.set_progress_bar_config(disable=True)
    return new


def schedulers(config):
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        HeunDiscreteScheduler,
        PNDMScheduler,
    )

    return {
        "ddim-eta1": (DDIMScheduler.from_config(config), 1.0),
        "euler-ancestral": (EulerAncestralDiscreteScheduler.from_config(config), 0.0),
        "dpm-multistep": (DPMSolverMultistepScheduler.from_config(config), 0.0),
        "pndm": (PNDMScheduler.from_config(config, skip_prk_steps=True), 0.0),
        "heun": (HeunDiscreteScheduler.from_config(config), 0.0),
    }


def count_calls(unet):
    calls = {"n": 0, "rows": 0}

    def hook(_module, args, _kwargs):
        calls["n"] += 1
        calls["rows"] += args[0].shape[0]

    return calls, unet.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("kind", ["ddim-eta1", "euler-ancestral", "dpm-multistep", "pndm", "heun"])
def test_mixed_branches_match_separate_branches(tiny_pipe, tiny_unet, kind):
    scheduler, eta = schedulers(tiny_pipe.scheduler.config)[kind]
    pipe = pipeline_with(tiny_pipe, scheduler)
    # Float images: the comparison is about float rounding, which uint8 quantisation (a default) would turn
    # into an occasional one-level flip (and uint8 subtraction would wrap it to 255).
    exact = {"eta": eta, "num_inference_steps": STEPS, "image_dtype": torch.float32}
    separate = PartialDiffusion(pipe, tiny_unet, mix_branches=False, **exact)
    mixed = PartialDiffusion(pipe, tiny_unet, mix_branches=True, **exact)
    assert mixed.mixing and not separate.mixing
    calls_separate, handle = count_calls(tiny_unet)
    try:
        expected = separate.sweep(PROMPTS, PSIS, SEEDS)
    finally:
        handle.remove()
    calls_mixed, handle = count_calls(tiny_unet)
    try:
        got = mixed.sweep(PROMPTS, PSIS, SEEDS)
    finally:
        handle.remove()
    for psi in PSIS:
        assert float((got[psi] - expected[psi]).abs().max()) <= 1e-5, (kind, psi)
    assert got.unet_evals == expected.unet_evals
    assert got.unlearned_unet_evals == expected.unlearned_unet_evals
    assert calls_mixed["rows"] == calls_separate["rows"]
    assert calls_mixed["n"] < calls_separate["n"]


def test_max_mixed_images_bounds_every_call(tiny_pipe, tiny_unet):
    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS, batch_size=4,
                              mix_branches=True, max_mixed_images=8)
    sizes: list[int] = []
    handle = tiny_unet.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    try:
        engine.sweep(PROMPTS, PSIS, SEEDS)
    finally:
        handle.remove()
    # classifier-free guidance doubles the rows: at most 8 images, 16 rows per call.
    assert sizes and max(sizes) == 16


def test_mixing_is_off_on_the_cpu_by_default(tiny_pipe, tiny_unet):
    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS)
    assert engine.device.type == "cpu" and engine.mix_branches is None and not engine.mixing
    assert engine.max_mixed_images == 4 * engine.batch_size


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mix_branches": "yes"}, "mix_branches must be True, False or None"),
    ({"max_mixed_images": 0}, "max_mixed_images must be an integer >= 1"),
    ({"max_mixed_images": 2.5}, "max_mixed_images must be an integer >= 1"),
])
def test_bad_mixing_arguments_are_named(tiny_pipe, tiny_unet, kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        PartialDiffusion(tiny_pipe, tiny_unet, **kwargs)


def test_mixed_branches_work_from_a_warm_trajectory_cache(tiny_pipe, tiny_unet, tmp_path):
    from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache

    plain = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS, mix_branches=False,
                              image_dtype=torch.float32)
    expected = plain.sweep(PROMPTS[:1], PSIS, SEEDS)
    cache = TrajectoryCache(tmp_path)
    cold = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS, cache=cache, mix_branches=True,
                             image_dtype=torch.float32)
    cold.sweep(PROMPTS[:1], PSIS, SEEDS)
    warm = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS, cache=cache, mix_branches=True,
                             image_dtype=torch.float32)
    got = warm.sweep(PROMPTS[:1], PSIS, SEEDS)
    assert got.original_unet_evals == 0
    for psi in PSIS:
        assert torch.allclose(got[psi], expected[psi], atol=1e-5), psi


def test_compiled_unet_calls_give_the_same_images(tiny_pipe, tiny_unet):
    # The "eager" backend runs dynamo's capture without a C compiler, so this stays fast on CI;
    # the images must equal the uncompiled ones and the pipelines keep their own modules.
    plain = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=6)
    compiled = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=6, compile_unet={"backend": "eager"})
    expected = plain.sweep(PROMPTS[:1], [0.0, 0.55], SEEDS)
    got = compiled.sweep(PROMPTS[:1], [0.0, 0.55], SEEDS)
    for psi in (0.0, 0.55):
        assert torch.allclose(got[psi], expected[psi], atol=1e-6)
    assert len(compiled._compiled) == 2
    assert all(type(m).__name__ == "OptimizedModule" for m in compiled._compiled.values())
    assert compiled.unlearned.unet is tiny_unet and tiny_pipe.unet is not tiny_unet
    assert type(tiny_pipe.unet).__name__ == "UNet2DConditionModel"


def test_bad_compile_argument_is_named(tiny_pipe, tiny_unet):
    with pytest.raises(TypeError, match="compile_unet must be a bool or a dict"):
        PartialDiffusion(tiny_pipe, tiny_unet, compile_unet="max-autotune")


def test_attention_runs_through_scaled_dot_product_attention(tiny_pipe):
    # diffusers' default processor on torch 2 is SDPA (flash / memory-efficient kernels on GPUs).
    from diffusers.models.attention_processor import AttnProcessor2_0

    processors = tiny_pipe.unet.attn_processors
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())


def test_bfloat16_sweep_runs_and_stays_close_to_float32(tiny_pipe, tiny_unet):
    import copy

    from diffusers import StableDiffusionPipeline

    half = StableDiffusionPipeline(**{**copy.deepcopy(tiny_pipe.components), "requires_safety_checker": False})
    half.set_progress_bar_config(disable=True)
    half.to(dtype=torch.bfloat16)
    unet = copy.deepcopy(tiny_unet).to(torch.bfloat16)
    engine = PartialDiffusion(half, unet, num_inference_steps=6, mix_branches=True)
    assert engine.dtype == torch.bfloat16
    got = engine.sweep(PROMPTS[:1], [0.0, 0.55, 1.0], SEEDS)
    expected = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=6).sweep(PROMPTS[:1], [0.0, 0.55, 1.0], SEEDS)
    for psi in (0.0, 0.55, 1.0):
        assert got[psi].dtype == torch.uint8  # compact images, whatever the pipeline's dtype
        # bfloat16 keeps 8 bits of mantissa: images agree to a few percent, not bit for bit.
        assert float((got[psi].float() - expected[psi].float()).abs().mean()) / 255 < 0.05, psi


@pytest.mark.parametrize(("worker", "count", "expected"), [
    (None, 4, "cuda:0"), ("gw0", 4, "cuda:0"), ("gw3", 4, "cuda:3"), ("gw5", 4, "cuda:1"), ("gw2", 1, "cuda:0"),
])
def test_xdist_workers_map_to_gpus_round_robin(monkeypatch, worker, count, expected):
    from pytest_uoc.session import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert resolve_device("auto", worker) == expected
    assert resolve_device("cuda:1", worker) == "cuda:1"


def test_auto_device_is_the_cpu_without_cuda(monkeypatch):
    from pytest_uoc.session import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", "gw3") == "cpu"
    with pytest.raises(RuntimeError, match="--uoc-device cuda:0: CUDA is not available"):
        resolve_device("cuda:0")
