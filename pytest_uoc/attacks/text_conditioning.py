"""Text conditioning with gradients, per model family, for the learned attacks' losses.

The engine encodes prompts with the pipeline's own ``encode_prompt`` (no gradients); concept
inversion and prompt search need the gradient of the denoising loss at a token's input
embedding, so they run the text encoders themselves. This layer runs them the way the
family's pipeline does, so that the UNet is fed in training exactly what it is fed when
drawing that prompt:

- SD 1.x/2.x (``TextConditioning``): the one CLIP text encoder's last hidden states as
  ``encoder_hidden_states``;
- SDXL (``SDXLConditioning``), as ``StableDiffusionXLPipeline.encode_prompt`` and
  ``_get_add_time_ids`` build it (no ``clip_skip``): both encoders' penultimate hidden states
  concatenated (``prompt_embeds``), ``text_encoder_2``'s pooled projection (``text_embeds``)
  and the time ids of (height, width), (0, 0), (height, width), the size being the latents'
  times the VAE's scale factor. Each encoder reads the prompt with its own tokenizer
  (``tokenizer_2`` pads with "!" in the released SDXL).

SD3 and Flux are refused (``check_attack_family``), naming the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["SDXLConditioning", "TextConditioning", "check_attack_family", "text_conditioning"]

#: The families the learned attacks support (``Family.name``).
SUPPORTED = ("sd", "sdxl")


def check_attack_family(pipe: Any, attack: str = "concept inversion") -> None:
    """Refuse (ValueError, naming the family) a pipeline whose family ``attack`` does not support."""
    from ..diffusion.families import family_of

    family = family_of(pipe)
    if family.name not in SUPPORTED:
        raise ValueError(f"{attack} supports SD 1.x/2.x and SDXL pipelines (CLIP text encoders and a UNet); "
                         f"{family.label} is not supported yet")


def text_conditioning(pipe: Any, attack: str = "concept inversion") -> TextConditioning:
    """The conditioning layer of ``pipe``'s family (``check_attack_family`` first)."""
    from ..diffusion.families import family_of

    check_attack_family(pipe, attack)
    if family_of(pipe).name == "sdxl":
        return SDXLConditioning(pipe)
    return TextConditioning(pipe)


class TextConditioning:
    """SD 1.x/2.x: one CLIP text encoder whose last hidden states condition the UNet."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    @property
    def encoders(self) -> tuple[Any, ...]:
        """The text encoders, in the pipeline's order (each reads the prompt with ``tokenizers[i]``)."""
        return (self.pipe.text_encoder,)

    @property
    def tokenizers(self) -> tuple[Any, ...]:
        return (self.pipe.tokenizer,)

    @property
    def modules(self) -> tuple[Any, ...]:
        """What the attacks keep frozen: the UNet and every text encoder."""
        return (self.pipe.unet, *self.encoders)

    def ids(self, prompts: Sequence[str], device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """Each tokenizer's padded input ids of ``prompts`` (N×L per encoder), as the pipeline tokenizes them."""
        return tuple(tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                               truncation=True, return_tensors="pt").input_ids.to(device)
                     for tokenizer in self.tokenizers)

    def image_size(self, latents: torch.Tensor) -> tuple[int, int]:
        """The image size (height, width) in pixels of latents N×C×h×w: their size times the VAE's scale."""
        from ..diffusion.families import Family

        scale = Family.vae_scale_of(self.pipe.vae)
        return int(latents.shape[-2]) * scale, int(latents.shape[-1]) * scale

    def encode(self, ids: Sequence[torch.Tensor], size: tuple[int, int]) -> Any:
        """The UNet's conditioning of ``ids`` (one tensor per encoder), with gradients; ``size`` unused here."""
        return self.pipe.text_encoder(ids[0])[0]

    def expand(self, cond: Any, n: int) -> Any:
        """A one-row conditioning as ``n`` rows (a view: gradients flow back to the one row)."""
        return cond.expand(n, -1, -1)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any, device: torch.device | str) -> torch.Tensor:
        """The UNet's output for noised latents ``x_t`` at timesteps ``t`` under ``cond`` (in the UNet's dtype)."""
        unet = self.pipe.unet
        dtype = next(unet.parameters()).dtype
        return unet(x_t.to(device, dtype), t.to(device), encoder_hidden_states=cond.to(dtype)).sample


class SDXLConditioning(TextConditioning):
    """SDXL: two CLIP text encoders, their penultimate states concatenated, pooled embeddings and time ids."""

    def __init__(self, pipe: Any) -> None:
        missing = [part for part in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
                   if getattr(pipe, part, None) is None]
        if missing:
            raise ValueError(f"the learned attacks on SDXL need both CLIP text encoders and tokenizers; this "
                             f"{type(pipe).__name__} has no {', '.join(missing)}")
        super().__init__(pipe)

    @property
    def encoders(self) -> tuple[Any, ...]:
        return (self.pipe.text_encoder, self.pipe.text_encoder_2)

    @property
    def tokenizers(self) -> tuple[Any, ...]:
        return (self.pipe.tokenizer, self.pipe.tokenizer_2)

    def encode(self, ids: Sequence[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """``prompt_embeds``, ``text_embeds`` and ``time_ids`` as ``encode_prompt`` and the pipeline build them."""
        pipe = self.pipe
        pooled: torch.Tensor | None = None
        states = []
        for encoder, rows in zip(self.encoders, ids, strict=True):
            out = encoder(rows, output_hidden_states=True)
            if pooled is None and out[0].ndim == 2:  # the pooled output of the (final) projection encoder
                pooled = out[0]
            states.append(out.hidden_states[-2])
        if pooled is None:
            raise ValueError(f"SDXL's text_encoder_2 must give a pooled projection (CLIPTextModelWithProjection), "
                             f"got {type(pipe.text_encoder_2).__name__}")
        embeds = torch.concat(states, dim=-1).to(dtype=pipe.text_encoder_2.dtype)
        time_ids = pipe._get_add_time_ids(tuple(size), (0, 0), tuple(size), dtype=embeds.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        time_ids = time_ids.to(embeds.device).repeat(len(embeds), 1)
        return {"prompt_embeds": embeds, "text_embeds": pooled, "time_ids": time_ids}

    def expand(self, cond: Any, n: int) -> Any:
        return {name: value.expand(n, *value.shape[1:]) for name, value in cond.items()}

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any, device: torch.device | str) -> torch.Tensor:
        from ..diffusion.families import family_of_name

        family = family_of_name("sdxl")
        unet = self.pipe.unet
        dtype = next(unet.parameters()).dtype
        return family.forward(unet, x_t.to(device, dtype), t.to(device), family.to_dtype(cond, dtype), None)
