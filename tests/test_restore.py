"""The restoration attack reproduces diffusers' img2img with the unlearned UNet exactly.

``restore`` encodes reference images with the original's VAE, noises them to
a strength as ``StableDiffusionImg2ImgPipeline`` does and lets the unlearned
model denoise the rest; given the same latents and one CPU generator per
image, diffusers' own pipeline must give the same images to within 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from pytest_uoc.diffusion import PartialDiffusion as CompactPartialDiffusion
from pytest_uoc.diffusion import restore, restore_start
from pytest_uoc.diffusion.restore import encode_references, load_reference_images


def PartialDiffusion(*args, **kwargs):  # noqa: N802 - stands for the class in these comparisons
    """The engine keeping float32 images, compared with diffusers' float output before rounding
    (tests/test_families.py shows the default uint8 images are these rounded)."""
    kwargs.setdefault("image_dtype", torch.float32)
    return CompactPartialDiffusion(*args, **kwargs)

PROMPTS = ["a red handwritten three", "trois"]
SEEDS = [0, 5]
STEPS = 6
GUIDANCE = 7.5
ATOL = 1e-4


def img2img(pipe, unet, scheduler_cls=None):
    from diffusers import StableDiffusionImg2ImgPipeline

    components = {**pipe.components, "unet": unet}
    cls = scheduler_cls or type(pipe.scheduler)
    components["scheduler"] = cls.from_config(pipe.scheduler.config)
    new = StableDiffusionImg2ImgPipeline(**components, requires_safety_checker=False)
    new.set_progress_bar_config(disable=True)
    return new


def diffusers_img2img(pipe, latents, strength, *, eta=0.0):
    generators = [torch.Generator("cpu").manual_seed(s) for _ in PROMPTS for s in SEEDS]
    with torch.inference_mode():
        out = pipe(
            [p for p in PROMPTS for _ in SEEDS], image=latents, strength=strength,
            num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=generators, eta=eta, output_type="pt",
        )
    return out.images.float().cpu()


@pytest.fixture(scope="module")
def engine(tiny_pipe, tiny_unet):
    return PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS, guidance_scale=GUIDANCE, batch_size=3)


@pytest.fixture(scope="module")
def references(engine):
    """λO of the items: the original model's own images (prompt-major, seed-minor)."""
    return engine.generate(PROMPTS, 1.0, SEEDS).images


def max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.mark.parametrize("strength", [0.3, 0.5, 0.85])
def test_restore_matches_diffusers_img2img(engine, references, tiny_pipe, tiny_unet, strength):
    latents = encode_references(engine, references)
    ours = restore(engine, references, PROMPTS, [strength], SEEDS)
    theirs = diffusers_img2img(img2img(tiny_pipe, tiny_unet), latents, strength)
    assert ours[strength].shape == (4, 3, 16, 16)
    assert max_diff(ours[strength], theirs) <= ATOL
    # and it differs from what the unlearned model draws from pure noise
    assert max_diff(ours[strength], engine.generate(PROMPTS, 0.0, SEEDS).images) > 1e-2


def test_restore_matches_diffusers_with_stochastic_ddim(engine, references, tiny_pipe, tiny_unet):
    """eta = 1: the per-image generators also drive the scheduler's noise, in diffusers' order."""
    stochastic = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS, guidance_scale=GUIDANCE, eta=1.0)
    latents = encode_references(stochastic, references)
    ours = restore(stochastic, latents, PROMPTS, [0.5], SEEDS)[0.5]
    assert max_diff(ours, diffusers_img2img(img2img(tiny_pipe, tiny_unet), latents, 0.5, eta=1.0)) <= ATOL


def test_restore_matches_diffusers_with_euler(tiny_pipe, tiny_unet, references):
    """A sigma scheduler: the begin index and add_noise follow the img2img pipeline."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    components = {**tiny_pipe.components, "scheduler": EulerDiscreteScheduler.from_config(tiny_pipe.scheduler.config)}
    pipe = StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    euler = PartialDiffusion(pipe, tiny_unet, num_inference_steps=STEPS, guidance_scale=GUIDANCE)
    latents = encode_references(euler, references)
    ours = restore(euler, latents, PROMPTS, [0.5], SEEDS)[0.5]
    theirs = diffusers_img2img(img2img(tiny_pipe, tiny_unet, EulerDiscreteScheduler), latents, 0.5)
    assert max_diff(ours, theirs) <= ATOL


def test_strength_zero_is_the_reference_and_one_is_pure_generation(engine, references):
    out = restore(engine, references, PROMPTS, [0.0, 1.0], SEEDS)
    vae = engine.original.vae
    with torch.inference_mode():
        latents = vae.encode(references * 2 - 1).latent_dist.mean
        redecoded = (vae.decode(latents, return_dict=False)[0] / 2 + 0.5).clamp(0, 1)
    assert max_diff(out[0.0], redecoded) <= 1e-5
    assert max_diff(out[1.0], engine.generate(PROMPTS, 0.0, SEEDS).images) <= 1e-5
    assert out.starts == {0.0: STEPS, 1.0: 0}
    assert out.unet_evals == len(PROMPTS) * len(SEEDS) * STEPS  # strength 0 costs no UNet call


def test_strengths_sharing_a_start_step_share_images_and_batching_does_not_matter(tiny_pipe, tiny_unet, references):
    one = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS, guidance_scale=GUIDANCE, batch_size=1)
    four = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=STEPS, guidance_scale=GUIDANCE, batch_size=4)
    assert restore_start(one, 0.5) == restore_start(one, 0.55) == 3  # int(6 * 0.55) = 3
    assert restore_start(one, 0.1) == STEPS and restore_start(one, 1.0) == 0
    a = restore(one, references, PROMPTS, [0.5, 0.55], SEEDS)
    b = restore(four, references, PROMPTS, [0.5], SEEDS)
    assert a[0.5] is a[0.55]
    assert a.unet_evals == 4 * 3
    assert max_diff(a[0.5], b[0.5]) <= 1e-5


def test_one_reference_serves_every_item(engine, references):
    out = restore(engine, references[:1], PROMPTS, [0.5], SEEDS)
    tiled = restore(engine, references[:1].expand(4, -1, -1, -1), PROMPTS, [0.5], SEEDS)
    assert max_diff(out[0.5], tiled[0.5]) <= 1e-5
    # different seeds noise the same reference differently
    assert max_diff(out[0.5][0], out[0.5][1]) > 1e-3


def test_reference_files_load_and_resize(tmp_path, engine):
    from PIL import Image

    path = tmp_path / "three.png"
    Image.new("RGB", (40, 24), (255, 0, 0)).save(path)
    images = load_reference_images([path], engine.height, engine.width)
    assert images.shape == (1, 3, 16, 16)
    assert float(images[0, 0].min()) > 0.99 and float(images[0, 1].max()) < 0.01
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_reference_images([tmp_path / "missing.png"], 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strengths": [1.5]}, ValueError, r"every strength must be a finite number in \[0, 1\].*1.5"),
        ({"strengths": [-0.1]}, ValueError, r"in \[0, 1\]"),
        ({"strengths": ["half"]}, TypeError, "every strength must be a number"),
        ({"strengths": []}, ValueError, "strengths must not be empty"),
        ({"references": torch.rand(3, 3, 16, 16)}, ValueError, r"one reference per \(prompt, seed\) item.*got 3"),
        ({"references": torch.rand(4, 3, 8, 8)}, ValueError, r"N×3×16×16 images.*N×4×8×8 latents"),
        ({"references": torch.rand(4, 3, 16, 16) * 2 - 1}, ValueError, r"values in \[0, 1\]"),
        ({"references": [[0.5]]}, TypeError, "must be a torch.Tensor"),
    ],
)
def test_bad_inputs_are_clear(engine, references, kwargs, error, match):
    args = {"references": references, "prompts": PROMPTS, "strengths": [0.5], "seeds": SEEDS, **kwargs}
    with pytest.raises(error, match=match):
        restore(engine, **args)
