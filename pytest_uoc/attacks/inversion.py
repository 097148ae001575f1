"""Concept inversion (Pham et al. 2023): one new token embedding learned against a frozen model.

"Circumventing Concept Erasure Methods for Text-to-Image Generative Models" learns a
word embedding with the *unlearned* model's own denoising loss on images of the
concept, the UNet and every other text-encoder weight frozen; every erasure method
they tried drew the concept again from it. Here:

- the token is a placeholder string the tokenizer reads as one id that no concept
  prompt uses (``placeholder_token``); its embedding row is replaced, during the
  text encoder's forward, by the learned vector (``embedding_override``), so no
  pipeline, tokenizer or weight is modified and nothing else changes;
- the prompts are the concept's anchors with the token appended ("a handwritten" +
  token), so the token must carry the concept itself;
- the loss is the scheduler's training objective (ε or v) at uniform timesteps on
  the latents of λO images (the original's images of the concept, training seeds).

Deterministic for a seed: one CPU generator draws every timestep and noise. SD 1.x/2.x
pipelines only (one CLIP text encoder); SDXL, SD3 and Flux are refused with a message.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .. import progress

__all__ = ["InversionSettings", "LearnedToken", "embedding_override", "learn_token", "placeholder_token",
           "token_prompts"]

#: Strings tried, in order, as the placeholder (each must be one token the prompts do not use).
_CANDIDATES = ("sks", "*", "~", "@", "#", "xyz", "zzz")


@dataclass(frozen=True)
class InversionSettings:
    """The attack's budget: optimisation steps, learning rate, latents per step, and its seed."""

    steps: int = 300
    lr: float = 5e-3
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"inversion {name} must be an integer >= 1, got {value!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not 0 < float(self.lr) < 10:
            raise ValueError(f"inversion lr must be a number in (0, 10), got {self.lr!r}")


@dataclass(frozen=True)
class LearnedToken:
    """A learned embedding: the placeholder it replaces, the vector, and what learning it cost."""

    token: str
    token_id: int
    vector: torch.Tensor
    losses: tuple[float, ...]
    unet_evals: int
    seconds: float
    #: Read from the cache (``unet_evals`` and ``seconds`` are then what learning it cost the first time).
    from_cache: bool = False


def check_family(pipe: Any) -> None:
    """Refuse the families inversion does not support yet, naming them."""
    from ..diffusion.families import family_of

    family = family_of(pipe)
    if family.name != "sd":
        raise ValueError(f"concept inversion supports SD 1.x/2.x pipelines (one CLIP text encoder); {family.label} "
                         "is not supported yet")


def placeholder_token(tokenizer: Any, prompts: Sequence[str]) -> tuple[str, int]:
    """A string the tokenizer reads as exactly one id that is no special token and no prompt uses."""
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    used = {i for prompt in prompts for i in tokenizer(prompt, add_special_tokens=False).input_ids}
    for candidate in _CANDIDATES:
        ids = tokenizer(candidate, add_special_tokens=False).input_ids
        if len(ids) == 1 and ids[0] not in special and ids[0] not in used:
            return candidate, int(ids[0])
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and unk not in special and unk not in used:
        return tokenizer.unk_token, int(unk)
    raise ValueError(f"no placeholder token for concept inversion: none of {', '.join(_CANDIDATES)} is a single "
                     "unused token of this tokenizer")


def token_prompts(anchors: Sequence[str], token: str) -> list[str]:
    """Each anchor with the token appended (the prompts the learned token is trained and tried with)."""
    return [f"{anchor} {token}".strip() for anchor in anchors]


@contextlib.contextmanager
def embedding_override(text_encoder: Any, token_id: int, vector: torch.Tensor) -> Iterator[None]:
    """Within the block, ``text_encoder`` embeds ``token_id`` as ``vector`` (a forward hook; no weight changes)."""
    embedding = text_encoder.get_input_embeddings()

    def hook(_module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        mask = (inputs[0] == token_id).unsqueeze(-1)
        if not bool(mask.any()):
            return output
        return torch.where(mask, vector.to(output.device, output.dtype).expand_as(output), output)

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _target(scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noised latents and the model's training target (ε, or v for v-prediction schedulers)."""
    alpha_bar = scheduler.alphas_cumprod.to(x0.device, torch.float32)[t].view(-1, 1, 1, 1)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return x_t, noise
    if kind == "v_prediction":
        return x_t, alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0
    raise ValueError(f"concept inversion needs an epsilon or v_prediction scheduler, got prediction_type {kind!r}")


def learn_token(pipe: Any, latents: torch.Tensor, prompts: Sequence[str], token: str, token_id: int,
                settings: InversionSettings, *, device: torch.device | str = "cpu") -> LearnedToken:
    """Learn ``token``'s embedding with ``pipe``'s frozen UNet and text encoder on ``latents`` (scaled, N×4×h×w).

    ``prompts[i]`` (each holding ``token``) belongs with ``latents[i]``. The vector starts at the
    placeholder's own embedding; Adam on that one vector, the scheduler's objective at uniform timesteps.
    """
    check_family(pipe)
    if len(prompts) != len(latents):
        raise ValueError(f"inversion needs one prompt per latent: {len(prompts)} prompts, {len(latents)} latents")
    device = torch.device(device)
    unet, text_encoder, tokenizer, scheduler = pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler
    unet_dtype = next(unet.parameters()).dtype
    start = time.perf_counter()
    embedding = text_encoder.get_input_embeddings()
    vector = embedding.weight[token_id].detach().float().clone().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([vector], lr=float(settings.lr))
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    x0_all = latents.float()
    steps_total = int(scheduler.config.num_train_timesteps)
    losses: list[float] = []
    grads = [p.requires_grad for p in (*unet.parameters(), *text_encoder.parameters())]
    for p in (*unet.parameters(), *text_encoder.parameters()):
        p.requires_grad_(False)
    try:
        with torch.enable_grad(), embedding_override(text_encoder, token_id, vector):
            for step in range(settings.steps):
                progress.report(step, settings.steps, unit="steps")
                pick = torch.randint(0, len(x0_all), (settings.batch_size,), generator=generator)
                t = torch.randint(0, steps_total, (settings.batch_size,), generator=generator)
                noise = torch.randn((settings.batch_size, *x0_all.shape[1:]), generator=generator)
                x_t, target = _target(scheduler, x0_all[pick], noise, t)
                hidden = text_encoder(ids[pick.to(device)])[0]
                out = unet(x_t.to(device, unet_dtype), t.to(device), encoder_hidden_states=hidden.to(unet_dtype)).sample
                loss = F.mse_loss(out.float(), target.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            progress.report(settings.steps, settings.steps, unit="steps")
    finally:
        for p, flag in zip((*unet.parameters(), *text_encoder.parameters()), grads, strict=True):
            p.requires_grad_(flag)
    return LearnedToken(token, token_id, vector.detach().cpu(), tuple(losses), settings.steps * settings.batch_size,
                        time.perf_counter() - start)
