"""The restoration attack: img2img from reference images, finished by the unlearned model.

A second "intermediate guidance" path besides partial diffusion (HUB, arXiv
2410.05664): reference images of the concept are encoded with the original's
VAE (``latent_dist.mean * scaling_factor``), noised to a strength ``s`` the way
diffusers' ``StableDiffusionImg2ImgPipeline`` does (``init_timestep =
int(steps * s)``, ``t_start = steps - init_timestep``, ``scheduler.add_noise``
at the first remaining timestep with one CPU generator per image seeded by its
seed) and denoised over the remaining steps by the *unlearned* model with
classifier-free guidance and its own prompt embeddings. A model that still
holds the concept completes the noised drawing; one that forgot it draws
something else.

Strength 0 returns the reference re-decoded (no denoising); strength 1 is pure
unlearned generation from noise, exactly the ψ = 0 images of partial
diffusion. (Diffusers' img2img at strength 1 still keeps √ᾱ of the reference,
about 0.08 of it for Stable Diffusion's schedule; here strength 1 means none.)
Every strength strictly between 0 and 1 matches diffusers' img2img pipeline,
given the same latents, to float rounding.

Other families follow their own img2img pipeline (``families.py``): SDXL's
``StableDiffusionXLImg2ImgPipeline`` as above; SD3's and Flux's img2img encode
``(mean - shift_factor) * scaling_factor``, start at ``t_start = int(steps -
min(steps * s, steps))`` and noise with flow matching's ``scale_noise`` (σ·noise
+ (1 - σ)·latents; Flux packs the result into tokens). On flow matching, strength
1 is σ = 1: pure noise, as in diffusers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..pixels import float_images
from ..units import check_strength, check_strengths
from .engine import NullFinish, PartialDiffusion, check_anchors, check_prompts, check_seeds
from .sampler import Trajectory, chunks

__all__ = ["Restoration", "check_strength", "encode_references", "load_reference_images", "restore", "restore_start"]


def restore_start(engine: PartialDiffusion, strength: float) -> int:
    """The inference step the unlearned model starts from at ``strength`` (diffusers' ``t_start``).

    ``init_timestep = min(int(steps * strength), steps)``, ``t_start = steps -
    init_timestep``: the unlearned model runs steps ``t_start .. steps - 1``.
    ``steps`` means nothing is denoised (the reference comes back), 0 a full
    generation from noise.
    """
    value = check_strength(strength)
    return engine.family.restore_start(engine.num_inference_steps, value)


def load_reference_images(paths: Sequence[str | Path], height: int, width: int) -> torch.Tensor:
    """Image files as an N×3×H×W float tensor in [0, 1], resized to ``height``×``width``."""
    import numpy as np
    from PIL import Image

    if isinstance(paths, str | Path):
        paths = [paths]
    files = [Path(p) for p in paths]
    if not files:
        raise ValueError("reference image files: the list is empty; give at least one image file")
    out = []
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"reference image {str(file)!r} does not exist or is not a file")
        with Image.open(file) as image:
            rgb = image.convert("RGB").resize((width, height), Image.BICUBIC)
            out.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out)


def encode_references(engine: PartialDiffusion, references: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Reference images (N×3×H×W in [0, 1], or uint8) or latents (N×4×h×w, already scaled) as scaled latents.

    Images are encoded with the original's VAE: ``latent_dist.mean *
    scaling_factor`` (the mean, not a sample, so no generator is consumed).
    """
    if not isinstance(references, torch.Tensor):
        raise TypeError(
            "reference images must be a torch.Tensor N×3×H×W in [0, 1] (or N×4×h×w latents), "
            f"got {type(references).__name__}"
        )
    compact = references.dtype == torch.uint8 and references.ndim == 4 and references.shape[1] == 3
    if references.ndim != 4 or not (references.is_floating_point() or compact):
        raise ValueError(
            "reference images must be a float tensor N×3×H×W in [0, 1] (or uint8 N×3×H×W, or N×4×h×w latents), "
            f"got shape {tuple(references.shape)} and dtype {references.dtype}"
        )
    channels, h, w = engine.sampler.latent_shape
    if references.shape[0] == 0:
        raise ValueError("reference images: got 0 images; give at least one")
    if not compact and not bool(torch.isfinite(references).all()):
        raise ValueError("reference images contain NaN or inf values")
    if not compact and references.shape[1] == channels and tuple(references.shape[2:]) == (h, w):
        return references.to(engine.device, engine.dtype)
    if references.shape[1] != 3 or tuple(references.shape[2:]) != (engine.height, engine.width):
        raise ValueError(
            f"reference images must be N×3×{engine.height}×{engine.width} images in [0, 1] or "
            f"N×{channels}×{h}×{w} latents for this model, got shape {tuple(references.shape)}"
        )
    low, high = (0.0, 1.0) if compact else (float(references.min()), float(references.max()))
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(f"reference images must have values in [0, 1], got min {low:.4g} and max {high:.4g}")
    vae = engine.original.vae
    size = batch_size or engine.batch_size
    latents = []
    with torch.inference_mode():
        for start in range(0, references.shape[0], size):
            chunk = float_images(references[start:start + size]).clamp(0, 1).to(engine.device, vae.dtype) * 2 - 1
            latents.append(engine.family.encode_images(vae, chunk))
    return torch.cat(latents).to(engine.dtype)


class Restoration(dict):
    """Images per strength (``restoration[s]`` is N×3×H×W in [0, 1], prompt-major, seed-minor), and the cost.

    ``unet_evals`` counts guided denoising evaluations per image, all of them
    the unlearned model's; ``starts[s]`` is the step the unlearned model
    started from at strength ``s``.
    """

    def __init__(self, images: dict[float, torch.Tensor], *, prompts: list[str], seeds: list[int],
                 starts: dict[float, int], unet_evals: int, seconds: float) -> None:
        super().__init__(images)
        self.strengths = list(images)
        self.prompts, self.seeds, self.starts = prompts, seeds, starts
        self.unet_evals = self.unlearned_unet_evals = unet_evals
        self.seconds = seconds

    @property
    def images(self) -> dict[float, torch.Tensor]:
        return dict(self)


def restore(
    engine: PartialDiffusion,
    references: torch.Tensor,
    prompts: Sequence[str],
    strengths: Sequence[float],
    seeds: Sequence[int],
    *,
    null: NullFinish | None = None,
) -> Restoration:
    """Restore the concept from noised ``references`` with the engine's unlearned model.

    Items are ``(prompt, seed)`` prompt-major, seed-minor (as in a sweep);
    ``references`` holds one image (or latent) per item, or one for all. Item
    ``i`` is noised with ``torch.Generator("cpu").manual_seed(seed_i)`` and
    denoised with prompt ``i``'s embeddings under classifier-free guidance.
    Strengths with the same start step share their images.

    With ``null``, the *original* restores instead, prompted with the null's anchors
    (and the empty or the concept prompt as its negative): the calibration nulls of
    the restoration attack, paired with the unlearned model's restorations item by item.
    """
    prompt_list = check_prompts(prompts)
    seed_list = check_seeds(seeds)
    strength_list = check_strengths(strengths)
    items = [(p, s) for p in range(len(prompt_list)) for s in seed_list]
    latents = encode_references(engine, references)
    if latents.shape[0] == 1:
        latents = latents.expand(len(items), *latents.shape[1:])
    elif latents.shape[0] != len(items):
        raise ValueError(
            f"restore needs one reference per (prompt, seed) item ({len(prompt_list)} prompts × "
            f"{len(seed_list)} seeds = {len(items)}) or a single reference for all, got {latents.shape[0]}"
        )
    start = time.perf_counter()
    starts = {s: restore_start(engine, s) for s in strength_list}
    sampler = engine.sampler
    if null is not None:
        check_anchors(null, prompt_list)
        negatives = prompt_list if null.negative == "concept" else None
        model = sampler.model(engine.original, list(null.anchors), negatives)
    else:
        model = sampler.model(engine.unlearned, prompt_list)
    by_start: dict[int, list[torch.Tensor]] = {k: [] for k in sorted(set(starts.values()))}
    evals = 0
    with torch.inference_mode():
        for index in chunks(list(range(len(items))), engine.batch_size):
            batch = [items[i] for i in index]
            prompt_index = torch.tensor([p for p, _ in batch], device=engine.device)
            embeddings = model.embeddings(prompt_index)
            init = latents[index[0]:index[-1] + 1]
            for t_start in by_start:
                state = _noised(engine, init, batch, t_start)
                if state is None:  # strength 0: nothing to denoise
                    by_start[t_start].append(sampler.decode(engine.family.pack(init, engine)))
                    continue
                begin = t_start * getattr(state.scheduler, "order", 1)
                for step in range(begin, len(state.scheduler.timesteps)):
                    sampler.denoise(model, state, step, embeddings)
                    evals += len(batch)
                by_start[t_start].append(sampler.decode(state.latents))
    per_start = {k: torch.cat(v) for k, v in by_start.items()}
    return Restoration(
        {s: per_start[k] for s, k in starts.items()}, prompts=prompt_list, seeds=seed_list, starts=starts,
        unet_evals=evals, seconds=time.perf_counter() - start,
    )


def _noised(engine: PartialDiffusion, init: torch.Tensor, batch: list[tuple[int, int]], t_start: int) -> Trajectory | None:
    """The batch's state at ``t_start``: the references noised as img2img noises them (None: no steps)."""
    if t_start >= engine.num_inference_steps:
        return None
    if t_start == 0:  # strength 1: pure generation from noise, as partial diffusion at ψ = 0
        return engine.sampler.start(batch)
    scheduler = engine.sampler.new_scheduler()
    begin = t_start * getattr(scheduler, "order", 1)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    noise, generators = engine.sampler.noise(batch)
    timestep = scheduler.timesteps[begin:begin + 1].repeat(len(batch))
    latents = engine.family.noised(scheduler, init, noise, timestep, engine)
    return Trajectory(latents, scheduler, generators)
