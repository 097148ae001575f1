"""Model families: what differs between SD 1.x/2.x, SDXL, SD3 and Flux, behind one small interface.

The engine (``engine.py``) walks a scheduler and hands latents between two
denoisers; everything that depends on the model family lives here, so that the
engine's loop is the same for all of them and each family reproduces its own
diffusers pipeline (``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``,
``StableDiffusion3Pipeline``, ``FluxPipeline``) step for step:

- prompt encoding (one or two CLIP encoders, pooled embeddings, T5),
- the denoiser's call signature (UNet with ``added_cond_kwargs``; MMDiT with
  ``pooled_projections``; Flux with ``guidance``, ``txt_ids`` and ``img_ids``),
- the schedule (flow-matching sigmas, Flux's dynamic shift ``mu``),
- the initial latents (Flux packs 2×2 patches into tokens) and decoding
  (SD3/Flux VAEs have a ``shift_factor``),
- img2img noising for the restoration attack (``add_noise`` or flow matching's
  ``scale_noise``) and its start step.

ψ is the same definition for every family (docs/definitions.md): the cutoff is
``c = round(N * (1 - ψ))`` with ``N = num_train_timesteps`` (1000), and the
original runs every scheduled step whose timestep ``t >= c``. On flow-matching
schedules the timesteps are ``t = σ·N`` with σ in (0, 1], so ψ is the fraction
of the noise level σ the original denoises: the original runs while ``σ >= 1 - ψ``.

``family_of`` detects the family from the pipeline's class, or its denoiser's
class and configuration.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "DECODE_PIXELS", "FAMILIES", "decode_chunk", "Family", "denoiser_of", "family_name_of_model", "family_name_of_state", "family_of",
    "family_of_name", "pipeline_class_name_family",
]

#: Conditioning of one batch: a tensor (SD 1.x/2.x) or named tensors (other families), one row per image.
Cond = Any


def _encode_sd(
    pipe: Any, prompts: list[str], device: torch.device, cfg: bool, negative_prompts: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prompt and negative embeddings (empty prompt unless ``negative_prompts``), as the pipeline computes them."""
    if hasattr(pipe, "encode_prompt"):
        positive, negative = pipe.encode_prompt(prompts, device, 1, cfg, negative_prompt=negative_prompts)
        return positive, negative if cfg else None
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder

    def embed(texts: list[str]) -> torch.Tensor:
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids.to(device)
        return encoder(ids)[0]

    negatives = negative_prompts if negative_prompts is not None else [""] * len(prompts)
    return embed(prompts), embed(negatives) if cfg else None


#: Pixels the VAE decodes per call (images × height × width): 4 images at 512 px, 1 at 1024 px, all at 32 px.
DECODE_PIXELS = 4 * 512 * 512


def decode_chunk(pixels_per_image: int) -> int:
    """How many images of ``pixels_per_image`` pixels one VAE call decodes (at least 1)."""
    return max(1, DECODE_PIXELS // max(1, pixels_per_image))


class Family:
    """SD 1.x/2.x: a ``UNet2DConditionModel`` conditioned on one CLIP text encoder's hidden states.

    The base class is the SD 1.x/2.x family; the others override what differs.
    Every method does exactly what the family's diffusers pipeline does at that point.
    """

    name = "sd"
    label = "SD 1.x/2.x"
    denoiser_attr = "unet"
    pipeline_class = "StableDiffusionPipeline"
    img2img_class = "StableDiffusionImg2ImgPipeline"
    text_parts: tuple[str, ...] = ("text_encoder", "tokenizer")
    #: Text parts a pipeline of the family may lack (SD3 runs without its T5 encoder).
    optional_parts: tuple[str, ...] = ()
    #: Why the trajectory cache is off for this family (None: it works).
    cache_off_reason: str | None = None
    #: Parts beyond the denoiser, ``text_encoder`` and ``tokenizer`` that the trajectory cache's keys
    #: fingerprint (a text encoder's weights, a tokenizer's kind and size).
    cache_key_parts: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<model family {self.label}>"

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts every pipeline of the family has: denoiser, scheduler, VAE and the required text parts."""
        required = tuple(part for part in self.text_parts if part not in self.optional_parts)
        return (self.denoiser_attr, "scheduler", "vae", *required)

    # -- parts ------------------------------------------------------------------------------

    def denoiser(self, pipe: Any) -> Any:
        return getattr(pipe, self.denoiser_attr)

    def default_size(self, pipe: Any) -> int:
        """The pipeline's default image side in pixels."""
        sample = getattr(pipe, "default_sample_size", None) or self.denoiser(pipe).config.sample_size
        return int(sample) * self.vae_scale(pipe)

    @classmethod
    def vae_scale(cls, pipe: Any) -> int:
        return cls.vae_scale_of(pipe.vae)

    def latent_shape(self, engine: Any) -> tuple[int, int, int]:
        """One image's unpacked latent shape (channels, h, w), as the pipeline draws its noise."""
        scale = self.vae_scale(engine.original)
        channels = self.denoiser(engine.original).config.in_channels
        return (channels, engine.height // scale, engine.width // scale)

    def cfg(self, engine: Any) -> bool:
        time_cond = getattr(self.denoiser(engine.original).config, "time_cond_proj_dim", None)
        return engine.guidance_scale > 1.0 and time_cond is None

    def cfg_scale(self, engine: Any) -> float:
        return engine.guidance_scale

    # -- prompts ----------------------------------------------------------------------------

    def encode(self, pipe: Any, prompts: list[str], device: torch.device, cfg: bool,
               negative_prompts: list[str] | None, engine: Any) -> tuple[Cond, Cond | None]:
        """Positive and negative conditioning, one row per prompt (negative None without CFG)."""
        return _encode_sd(pipe, prompts, device, cfg, negative_prompts)

    def to_dtype(self, cond: Cond, dtype: torch.dtype) -> Cond:
        if cond is None or isinstance(cond, torch.Tensor):
            return None if cond is None else cond.to(dtype)
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in cond.items()}

    @staticmethod
    def select(positive: Cond, negative: Cond | None, index: torch.Tensor) -> Cond:
        """The rows of ``index``, with the negative rows first under CFG (as the pipelines concatenate)."""
        if isinstance(positive, torch.Tensor):
            if negative is None:
                return positive[index]
            return torch.cat([negative[index], positive[index]])
        if negative is None:
            return {k: v[index] for k, v in positive.items()}
        return {k: torch.cat([negative[k][index], v[index]]) for k, v in positive.items()}

    @staticmethod
    def repeat(cond: Cond, times: int) -> Cond:
        """``cond`` stacked ``times`` times (for calls that hold several branches)."""
        if isinstance(cond, torch.Tensor):
            return torch.cat([cond] * times)
        return {k: torch.cat([v] * times) for k, v in cond.items()}

    # -- schedule and denoiser --------------------------------------------------------------

    def set_timesteps(self, scheduler: Any, engine: Any) -> None:
        scheduler.set_timesteps(engine.num_inference_steps, device=engine.device)

    def scale_input(self, scheduler: Any, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return scheduler.scale_model_input(latents, t)

    def step_kwargs(self, engine: Any, scheduler: Any, generators: list[torch.Generator]) -> dict[str, Any]:
        """``eta`` and ``generator`` where the scheduler takes them (``prepare_extra_step_kwargs``)."""
        params = set(inspect.signature(scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in params:
            kwargs["eta"] = engine.eta
        if "generator" in params:
            kwargs["generator"] = generators
        return kwargs

    def forward(self, denoiser: Any, latents: torch.Tensor, t: torch.Tensor, cond: Cond, engine: Any) -> torch.Tensor:
        return denoiser(latents, t, encoder_hidden_states=cond, return_dict=False)[0]

    # -- latents ----------------------------------------------------------------------------

    def initial(self, noise: torch.Tensor, scheduler: Any, engine: Any) -> torch.Tensor:
        """The first latents from the stacked unpacked noise."""
        return noise * scheduler.init_noise_sigma

    def unpack(self, latents: torch.Tensor, engine: Any) -> torch.Tensor:
        return latents

    def pack(self, latents: torch.Tensor, engine: Any) -> torch.Tensor:
        return latents

    #: Whether the family's pipeline decodes an fp16 VAE in float32 when its config sets ``force_upcast``.
    upcasts_vae = False

    def vae_latents(self, vae: Any, latents: torch.Tensor, engine: Any) -> torch.Tensor:
        """The scheduler's latents as the VAE's decoder takes them (the pipeline's scaling)."""
        return latents / vae.config.scaling_factor

    def decode(self, vae: Any, latents: torch.Tensor, engine: Any) -> torch.Tensor:
        """Latents as compact images: uint8 N×3×H×W on the CPU, as the pipeline's PIL output holds them
        (float32 in [0, 1] when the engine's ``image_dtype`` is float32).

        The VAE decodes ``decode_chunk`` images per call (``DECODE_PIXELS`` pixels), so its peak
        memory does not grow with the batch; an fp16 VAE is decoded in float32 where the family's
        pipeline upcasts it (SDXL, ``force_upcast``). The VAE's own tiling, if the user enabled it
        (``vae.enable_tiling()``), applies as in the pipeline.
        """
        from ..pixels import compact_images

        latents = self.vae_latents(vae, latents, engine)
        chunk = decode_chunk(latents.shape[-2] * latents.shape[-1] * self.vae_scale_of(vae) ** 2)
        upcast = self.upcasts_vae and vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
        if upcast:
            vae.to(dtype=torch.float32)
        try:
            dtype, compact = vae.dtype, engine.image_dtype == torch.uint8
            images = []
            for i in range(0, latents.shape[0], chunk):
                image = (vae.decode(latents[i:i + chunk].to(dtype), return_dict=False)[0] / 2 + 0.5).clamp(0, 1)
                images.append(compact_images(image) if compact else image.float().cpu())
        finally:
            if upcast:
                vae.to(dtype=torch.float16)
        return torch.cat(images)

    @staticmethod
    def vae_scale_of(vae: Any) -> int:
        return 2 ** (len(vae.config.block_out_channels) - 1)

    def encode_images(self, vae: Any, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] as scaled latents (the mean of the latent distribution)."""
        return vae.encode(images).latent_dist.mean * vae.config.scaling_factor

    # -- img2img (restoration) --------------------------------------------------------------

    def restore_start(self, steps: int, strength: float) -> int:
        """The img2img pipeline's ``t_start``: ``steps - min(int(steps * s), steps)``."""
        init_timestep = min(int(steps * strength), steps)
        return max(steps - init_timestep, 0)

    def noised(self, scheduler: Any, init: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor,
               engine: Any) -> torch.Tensor:
        """Unpacked reference latents noised to ``timestep`` as the img2img pipeline noises them."""
        return scheduler.add_noise(init, noise, timestep)


class SDXL(Family):
    """SDXL: a UNet with two CLIP text encoders, pooled embeddings and added time ids."""

    name = "sdxl"
    label = "SDXL"
    pipeline_class = "StableDiffusionXLPipeline"
    img2img_class = "StableDiffusionXLImg2ImgPipeline"
    text_parts = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
    # The added conditioning (pooled embeddings, time ids) comes from the text encoders, the image size
    # and the pipeline's config (``force_zeros_for_empty_prompt``): all of them are in the cache's keys.
    cache_key_parts = ("text_encoder_2", "tokenizer_2")

    def encode(self, pipe: Any, prompts: list[str], device: torch.device, cfg: bool,
               negative_prompts: list[str] | None, engine: Any) -> tuple[Cond, Cond | None]:
        positive, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=cfg,
            negative_prompt=negative_prompts,
        )
        if pipe.text_encoder_2 is None:
            projection = int(pooled.shape[-1])
        else:
            projection = pipe.text_encoder_2.config.projection_dim
        size = (engine.height, engine.width)
        time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=positive.dtype,
                                          text_encoder_projection_dim=projection).to(device)
        rows = time_ids.repeat(len(prompts), 1)
        pos = {"prompt_embeds": positive, "text_embeds": pooled, "time_ids": rows}
        neg = {"prompt_embeds": negative, "text_embeds": negative_pooled, "time_ids": rows} if cfg else None
        return pos, neg

    def set_timesteps(self, scheduler: Any, engine: Any) -> None:
        scheduler.set_timesteps(engine.num_inference_steps, device=engine.device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)

    def forward(self, denoiser: Any, latents: torch.Tensor, t: torch.Tensor, cond: Cond, engine: Any) -> torch.Tensor:
        added = {"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]}
        return denoiser(latents, t, encoder_hidden_states=cond["prompt_embeds"], timestep_cond=None,
                        added_cond_kwargs=added, return_dict=False)[0]

    upcasts_vae = True

    def vae_latents(self, vae: Any, latents: torch.Tensor, engine: Any) -> torch.Tensor:
        mean = getattr(vae.config, "latents_mean", None)
        std = getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            return latents * std / vae.config.scaling_factor + mean
        return latents / vae.config.scaling_factor

    def encode_images(self, vae: Any, images: torch.Tensor) -> torch.Tensor:
        latents = vae.encode(images).latent_dist.mean
        mean = getattr(vae.config, "latents_mean", None)
        std = getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            return (latents - mean) * vae.config.scaling_factor / std
        return latents * vae.config.scaling_factor


class _FlowMatching(Family):
    """Shared by SD3 and Flux: a transformer denoiser on a flow-matching schedule (σ = t / N)."""

    denoiser_attr = "transformer"
    cache_off_reason = (
        "the trajectory cache keys fingerprint a UNet and one text encoder; a transformer pipeline "
        "with several text encoders is not covered by them"
    )
    default_max_sequence_length = 256

    def max_sequence_length(self, engine: Any) -> int:
        return engine.max_sequence_length or self.default_max_sequence_length

    def scale_input(self, scheduler: Any, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return latents  # flow-matching pipelines feed the latents unscaled

    def step_kwargs(self, engine: Any, scheduler: Any, generators: list[torch.Generator]) -> dict[str, Any]:
        return {}  # the pipelines call scheduler.step(noise, t, latents) with nothing else

    def initial(self, noise: torch.Tensor, scheduler: Any, engine: Any) -> torch.Tensor:
        return noise  # σ = 1 at the first step: the latents are the noise

    def vae_latents(self, vae: Any, latents: torch.Tensor, engine: Any) -> torch.Tensor:
        return self.unpack(latents, engine) / vae.config.scaling_factor + vae.config.shift_factor

    def encode_images(self, vae: Any, images: torch.Tensor) -> torch.Tensor:
        latents = vae.encode(images).latent_dist.mean
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    def restore_start(self, steps: int, strength: float) -> int:
        """SD3/Flux img2img's ``t_start = int(max(steps - min(steps * s, steps), 0))`` (no inner int)."""
        init_timestep = min(steps * strength, steps)
        return int(max(steps - init_timestep, 0))

    def noised(self, scheduler: Any, init: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor,
               engine: Any) -> torch.Tensor:
        return self.pack(scheduler.scale_noise(init, timestep, noise), engine)


class SD3(_FlowMatching):
    """SD3: ``SD3Transformer2DModel`` (MMDiT), two CLIP encoders (+ optional T5), pooled projections."""

    name = "sd3"
    label = "SD3"
    pipeline_class = "StableDiffusion3Pipeline"
    img2img_class = "StableDiffusion3Img2ImgPipeline"
    text_parts = ("text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3")
    optional_parts = ("text_encoder_3", "tokenizer_3")

    def cfg(self, engine: Any) -> bool:
        return engine.guidance_scale > 1.0

    def encode(self, pipe: Any, prompts: list[str], device: torch.device, cfg: bool,
               negative_prompts: list[str] | None, engine: Any) -> tuple[Cond, Cond | None]:
        positive, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompts, prompt_2=None, prompt_3=None, negative_prompt=negative_prompts,
            do_classifier_free_guidance=cfg, device=device, num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length(engine),
        )
        pos = {"prompt_embeds": positive, "pooled": pooled}
        neg = {"prompt_embeds": negative, "pooled": negative_pooled} if cfg else None
        return pos, neg

    def set_timesteps(self, scheduler: Any, engine: Any) -> None:
        kwargs: dict[str, Any] = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
                calculate_shift,
            )

            _, h, w = self.latent_shape(engine)
            patch = self.denoiser(engine.original).config.patch_size
            kwargs["mu"] = calculate_shift(
                (h // patch) * (w // patch),
                scheduler.config.get("base_image_seq_len", 256), scheduler.config.get("max_image_seq_len", 4096),
                scheduler.config.get("base_shift", 0.5), scheduler.config.get("max_shift", 1.16),
            )
        scheduler.set_timesteps(num_inference_steps=engine.num_inference_steps, device=engine.device, **kwargs)

    def forward(self, denoiser: Any, latents: torch.Tensor, t: torch.Tensor, cond: Cond, engine: Any) -> torch.Tensor:
        return denoiser(
            hidden_states=latents, timestep=t.expand(latents.shape[0]), encoder_hidden_states=cond["prompt_embeds"],
            pooled_projections=cond["pooled"], return_dict=False,
        )[0]


class Flux(_FlowMatching):
    """Flux: ``FluxTransformer2DModel``, CLIP pooled + T5 embeddings, packed latents, a guidance embedding.

    ``engine.guidance_scale`` goes into the guidance embedding (as ``FluxPipeline``'s
    ``guidance_scale``); classifier-free guidance with a negative prompt runs only with
    ``engine.true_cfg_scale > 1`` (``FluxPipeline``'s ``true_cfg_scale``).
    """

    name = "flux"
    label = "Flux"
    pipeline_class = "FluxPipeline"
    img2img_class = "FluxImg2ImgPipeline"
    text_parts = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
    default_max_sequence_length = 512

    def cfg(self, engine: Any) -> bool:
        return engine.true_cfg_scale > 1.0

    def cfg_scale(self, engine: Any) -> float:
        return engine.true_cfg_scale

    def default_size(self, pipe: Any) -> int:
        return int(getattr(pipe, "default_sample_size", 128)) * self.vae_scale(pipe)

    def latent_shape(self, engine: Any) -> tuple[int, int, int]:
        scale = self.vae_scale(engine.original)
        channels = self.denoiser(engine.original).config.in_channels // 4
        return (channels, 2 * (engine.height // (scale * 2)), 2 * (engine.width // (scale * 2)))

    def encode(self, pipe: Any, prompts: list[str], device: torch.device, cfg: bool,
               negative_prompts: list[str] | None, engine: Any) -> tuple[Cond, Cond | None]:
        length = self.max_sequence_length(engine)

        def embed(texts: list[str]) -> dict[str, torch.Tensor]:
            embeds, pooled, _ = pipe.encode_prompt(prompt=texts, prompt_2=None, device=device,
                                                   num_images_per_prompt=1, max_sequence_length=length)
            return {"prompt_embeds": embeds, "pooled": pooled}

        pos = embed(prompts)
        neg = embed(negative_prompts if negative_prompts is not None else [""] * len(prompts)) if cfg else None
        return pos, neg

    def set_timesteps(self, scheduler: Any, engine: Any) -> None:
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        steps = engine.num_inference_steps
        sigmas = np.linspace(1.0, 1 / steps, steps)
        if getattr(scheduler.config, "use_flow_sigmas", False):
            sigmas = None
        _, h, w = self.latent_shape(engine)
        mu = calculate_shift(
            (h // 2) * (w // 2),
            scheduler.config.get("base_image_seq_len", 256), scheduler.config.get("max_image_seq_len", 4096),
            scheduler.config.get("base_shift", 0.5), scheduler.config.get("max_shift", 1.15),
        )
        if sigmas is None:
            scheduler.set_timesteps(steps, device=engine.device, mu=mu)
        else:
            scheduler.set_timesteps(sigmas=sigmas, device=engine.device, mu=mu)
        scheduler.set_begin_index(0)

    def pack(self, latents: torch.Tensor, engine: Any) -> torch.Tensor:
        b, c, h, w = latents.shape
        latents = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
        return latents.reshape(b, (h // 2) * (w // 2), c * 4)

    def unpack(self, latents: torch.Tensor, engine: Any) -> torch.Tensor:
        _, h, w = self.latent_shape(engine)
        b, _, channels = latents.shape
        latents = latents.view(b, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return latents.reshape(b, channels // 4, h, w)

    def initial(self, noise: torch.Tensor, scheduler: Any, engine: Any) -> torch.Tensor:
        return self.pack(noise, engine)

    def _ids(self, engine: Any, cond: Cond, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        _, h, w = self.latent_shape(engine)
        img = torch.zeros(h // 2, w // 2, 3)
        img[..., 1] = img[..., 1] + torch.arange(h // 2)[:, None]
        img[..., 2] = img[..., 2] + torch.arange(w // 2)[None, :]
        img = img.reshape((h // 2) * (w // 2), 3).to(device=device, dtype=dtype)
        txt = torch.zeros(cond["prompt_embeds"].shape[1], 3).to(device=device, dtype=dtype)
        return txt, img

    def forward(self, denoiser: Any, latents: torch.Tensor, t: torch.Tensor, cond: Cond, engine: Any) -> torch.Tensor:
        rows = latents.shape[0]
        timestep = t.expand(rows).to(latents.dtype)
        guidance = None
        if denoiser.config.guidance_embeds:
            guidance = torch.full([1], engine.guidance_scale, device=latents.device, dtype=torch.float32).expand(rows)
        txt_ids, img_ids = self._ids(engine, cond, latents.device, cond["prompt_embeds"].dtype)
        return denoiser(
            hidden_states=latents, timestep=timestep / 1000, guidance=guidance, pooled_projections=cond["pooled"],
            encoder_hidden_states=cond["prompt_embeds"], txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
        )[0]


FAMILIES: dict[str, Family] = {f.name: f for f in (Family(), SDXL(), SD3(), Flux())}

_PIPELINE_PREFIXES = (("StableDiffusionXL", "sdxl"), ("StableDiffusion3", "sd3"), ("Flux", "flux"))


def family_of_name(name: str) -> Family:
    return FAMILIES[name]


def family_name_of_model(model: Any) -> str | None:
    """The family of a denoiser (UNet or transformer) from its class and configuration; None if unknown."""
    cls = type(model).__name__
    if cls.startswith("SD3Transformer"):
        return "sd3"
    if cls.startswith("FluxTransformer"):
        return "flux"
    config = getattr(model, "config", None)
    if cls == "UNet2DConditionModel" or (config is not None and "cross_attention_dim" in dict(config)):
        return "sdxl" if dict(config or {}).get("addition_embed_type") == "text_time" else "sd"
    return None


def family_name_of_config(config: Mapping[str, Any]) -> str | None:
    """The family of a denoiser from its ``config.json`` (``_class_name`` and ``addition_embed_type``)."""
    cls = str(config.get("_class_name", ""))
    if cls.startswith("SD3Transformer"):
        return "sd3"
    if cls.startswith("FluxTransformer"):
        return "flux"
    if cls == "UNet2DConditionModel" or "cross_attention_dim" in config:
        return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd"
    return None


def family_name_of_state(keys: list[str]) -> str | None:
    """The family a state dict was made for, from marker keys (diffusers or original layouts); None if unsure."""
    def has(*markers: str) -> bool:
        return any(m in k for k in keys for m in markers)

    if has("single_transformer_blocks.", "single_blocks.", "double_blocks.", "x_embedder.", "guidance_in."):
        return "flux"
    if has("joint_blocks.", "context_embedder.", "transformer_blocks.0.attn.add_q_proj"):
        return "sd3"
    if has("add_embedding.linear_1.", "label_emb.0.0.", "conditioner.embedders.1."):
        return "sdxl"
    if has("down_blocks.", "input_blocks.", "mid_block.", "middle_block."):
        return "sd"
    return None


def family_of(pipe: Any) -> Family:
    """The family of a pipeline: from its class name, else from its denoiser."""
    cls = type(pipe).__name__
    for prefix, name in _PIPELINE_PREFIXES:
        if cls.startswith(prefix):
            return FAMILIES[name]
    for attr in ("transformer", "unet"):
        model = getattr(pipe, attr, None)
        if model is not None:
            name = family_name_of_model(model)
            if name is not None:
                return FAMILIES[name]
    return FAMILIES["sd"]


def denoiser_of(pipe: Any) -> Any:
    """The pipeline's denoiser: ``pipe.unet`` (SD 1.x/2.x, SDXL) or ``pipe.transformer`` (SD3, Flux)."""
    return family_of(pipe).denoiser(pipe)


def pipeline_class_name_family(class_name: str) -> str | None:
    """The family of a pipeline class name (``model_index.json``'s ``_class_name``); None if not supported.

    Only the text-to-image pipelines the engine reproduces count: ``StableDiffusionPipeline``,
    ``StableDiffusionXLPipeline``, ``StableDiffusion3Pipeline`` and ``FluxPipeline``.
    """
    for family in FAMILIES.values():
        if class_name == family.pipeline_class:
            return family.name
    return None


def check_family_pipeline(pipe: Any, family: Family, *, name: str) -> None:
    """Raise a TypeError naming the parts a pipeline of ``family`` lacks."""
    missing = [part for part in family.parts if getattr(pipe, part, None) is None]
    if missing:
        raise TypeError(
            f"{name} looks like a {family.label} pipeline ({family.pipeline_class}) but "
            f"{type(pipe).__name__} lacks {', '.join(missing)}"
        )
