"""The sampling steps partial diffusion and restoration share: start, denoise one step, decode.

A ``Sampler`` is the body of a diffusers denoising loop taken apart, so that a caller
can stop between two steps, fork the state and finish it with another model:

    sampler = engine.sampler
    model = sampler.model(pipe, prompts)                  # encode the prompts once
    state = sampler.start([(0, seed) for seed in seeds])  # initial noise, one CPU generator per image
    embeddings = model.embeddings(prompt_index)
    for step in range(sampler.total_steps()):
        sampler.denoise(model, state, step, embeddings)   # scale, predict, guide, scheduler step
    images = sampler.decode(state.latents)                # N×3×H×W in [0, 1]

Everything model-specific (prompt encoding, the denoiser's call, latent packing,
decoding) comes from the family adapter (``families.py``). The sampler reads its
settings (steps, guidance, size, eta, device, dtype) from ``settings``, normally the
``PartialDiffusion`` engine, so that changing the engine changes the sampler.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .families import Family, family_of

__all__ = ["GuidedModel", "Sampler", "Trajectory", "chunks"]

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of at most ``size`` (the batches of denoiser calls)."""
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


@dataclass
class Trajectory:
    """The state of one batch of images between two denoising steps: latents, scheduler, generators.

    The scheduler and the per-image CPU generators travel with the latents, so a fork
    continues exactly as the unforked state would, on stochastic schedulers too.
    """

    latents: torch.Tensor
    scheduler: Any
    generators: list[torch.Generator]

    def fork(self) -> Trajectory:
        """An independent copy (latents cloned, scheduler deep-copied, generators at the same state)."""
        clones = []
        for gen in self.generators:
            clone = torch.Generator(device=gen.device)
            clone.set_state(gen.get_state())
            clones.append(clone)
        return Trajectory(self.latents.clone(), copy.deepcopy(self.scheduler), clones)


class GuidedModel:
    """A denoiser (UNet or transformer) with the prompt embeddings it is guided by.

    ``positive`` holds one conditioning row per prompt, ``negative`` the unconditional
    (or negative-prompt) rows under classifier-free guidance, else None. ``engine`` gives
    the family and the settings some families encode with (image size, sequence length);
    without it the pipeline is taken for SD 1.x/2.x. ``unet`` may be replaced (by a
    compiled wrapper, or another model's denoiser sharing these embeddings).
    """

    def __init__(self, pipe: Any, prompts: list[str], device: torch.device, cfg: bool, dtype: torch.dtype,
                 negative_prompts: list[str] | None = None, engine: Any = None):
        self.family: Family = engine.family if engine is not None else family_of(pipe)
        self.unet = self.family.denoiser(pipe)
        with torch.inference_mode():
            positive, negative = self.family.encode(pipe, prompts, device, cfg, negative_prompts, engine)
        self.positive = self.family.to_dtype(positive, dtype)
        self.negative = self.family.to_dtype(negative, dtype)

    def embeddings(self, prompt_index: torch.Tensor) -> Any:
        """The conditioning rows of ``prompt_index`` (negative rows first under CFG)."""
        return Family.select(self.positive, self.negative, prompt_index)


class Sampler:
    """Start, denoise and decode a batch of images with the settings of ``settings`` (the engine).

    ``settings`` needs ``family``, ``original`` (its scheduler drives every model and its
    VAE decodes), ``device``, ``dtype``, ``do_cfg`` and whatever the family reads
    (``num_inference_steps``, ``guidance_scale``, ``eta``, ``height``, ``width``, ...).
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.family: Family = settings.family
        #: The shape of one image's initial noise (channels, height, width, or tokens for Flux).
        self.latent_shape: tuple[int, ...] = tuple(self.family.latent_shape(settings))

    @property
    def device(self) -> torch.device:
        return self.settings.device

    @property
    def dtype(self) -> torch.dtype:
        return self.settings.dtype

    def new_scheduler(self) -> Any:
        """A fresh copy of the original's scheduler with this run's timesteps set."""
        scheduler = copy.deepcopy(self.settings.original.scheduler)
        self.family.set_timesteps(scheduler, self.settings)
        return scheduler

    def total_steps(self) -> int:
        """Denoiser steps of a full run (more than ``num_inference_steps`` on second-order schedulers)."""
        return len(self.new_scheduler().timesteps)

    def model(self, pipe: Any, prompts: list[str], negative_prompts: list[str] | None = None) -> GuidedModel:
        """``pipe``'s denoiser with ``prompts`` encoded (and ``negative_prompts`` as the unconditional side)."""
        return GuidedModel(pipe, prompts, self.device, self.settings.do_cfg, self.dtype, negative_prompts,
                           engine=self.settings)

    def noise(self, items: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, list[torch.Generator]]:
        """Initial noise for ``(prompt index, seed)`` items, from one CPU generator per item seeded by its seed."""
        from diffusers.utils.torch_utils import randn_tensor

        generators = [torch.Generator("cpu").manual_seed(seed) for _, seed in items]
        noise = [
            randn_tensor((1, *self.latent_shape), generator=gen, device=self.device, dtype=self.dtype)
            for gen in generators
        ]
        return torch.cat(noise), generators

    def start(self, items: Sequence[tuple[int, int]]) -> Trajectory:
        """The state before the first step: the items' noise, scaled (and packed) as the pipeline does."""
        scheduler = self.new_scheduler()
        noise, generators = self.noise(items)
        latents = self.family.initial(noise, scheduler, self.settings)
        return Trajectory(latents, scheduler, generators)

    def denoise(self, model: GuidedModel, state: Trajectory, step: int, embeddings: Any) -> None:
        """Advance ``state`` by scheduled step ``step`` with ``model`` (guided by ``embeddings``), in place."""
        t, latent_in = self.model_input(model, state, step)
        noise = self.predict(model, latent_in, t, embeddings)
        self.advance(model, state, step, noise)

    @staticmethod
    def model_input(model: GuidedModel, state: Trajectory, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The timestep and the scaled denoiser input of one step (doubled for classifier-free guidance)."""
        t = state.scheduler.timesteps[step]
        latent_in = torch.cat([state.latents] * 2) if model.negative is not None else state.latents
        return t, model.family.scale_input(state.scheduler, latent_in, t)

    def predict(self, model: GuidedModel, latent_in: torch.Tensor, t: torch.Tensor, embeddings: Any) -> torch.Tensor:
        """The denoiser's raw output for ``latent_in`` at ``t`` (one timestep, or one per row)."""
        return model.family.forward(model.unet, latent_in, t, embeddings, self.settings)

    def advance(self, model: GuidedModel, state: Trajectory, step: int, noise: torch.Tensor) -> None:
        """Apply guidance to the denoiser's output and take the scheduler step, in place."""
        if model.negative is not None:
            uncond, cond = noise.chunk(2)
            noise = uncond + self.family.cfg_scale(self.settings) * (cond - uncond)
        t = state.scheduler.timesteps[step]
        kwargs = self.family.step_kwargs(self.settings, state.scheduler, state.generators)
        state.latents = state.scheduler.step(noise, t, state.latents, **kwargs, return_dict=False)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents as images N×3×H×W in [0, 1], with the original's VAE."""
        return self.family.decode(self.settings.original.vae, latents, self.settings)
