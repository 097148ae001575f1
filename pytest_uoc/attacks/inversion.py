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

Deterministic for a seed: one CPU generator draws every timestep and noise. SD 1.x/2.x and
SDXL pipelines; SD3 and Flux are refused with a message naming the family. On SDXL the
placeholder is one unused token of both tokenizers (its ids may differ) and one vector is
learned per text encoder, each starting at that encoder's own row, both with the same Adam
(as diffusers' ``textual_inversion_sdxl`` example does); the loss feeds the UNet what the
pipeline would (``text_conditioning``: both encoders' penultimate states, the pooled
embedding, the time ids).
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
from .text_conditioning import text_conditioning

__all__ = ["InversionSettings", "LearnedToken", "embedding_override", "learn_token", "placeholder", "placeholder_token",
           "token_override", "token_prompts"]

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
    """A learned embedding: the placeholder it replaces, the vector, and what learning it cost.

    On SDXL ``token_id``/``vector`` are the first text encoder's and ``token_id_2``/``vector_2``
    the second's (None on SD 1.x/2.x); ``token_ids`` and ``vectors`` give them per encoder.
    """

    token: str
    token_id: int
    vector: torch.Tensor
    losses: tuple[float, ...]
    unet_evals: int
    seconds: float
    #: Read from the cache (``unet_evals`` and ``seconds`` are then what learning it cost the first time).
    from_cache: bool = False
    #: SDXL: the placeholder's id in ``tokenizer_2`` and the vector learned for ``text_encoder_2``.
    token_id_2: int | None = None
    vector_2: torch.Tensor | None = None

    @property
    def token_ids(self) -> tuple[int, ...]:
        """The placeholder's id per text encoder (one on SD 1.x/2.x, two on SDXL)."""
        return (self.token_id,) if self.token_id_2 is None else (self.token_id, self.token_id_2)

    @property
    def vectors(self) -> tuple[torch.Tensor, ...]:
        """The learned vector per text encoder (one on SD 1.x/2.x, two on SDXL)."""
        return (self.vector,) if self.vector_2 is None else (self.vector, self.vector_2)


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


def placeholder(pipe: Any, prompts: Sequence[str]) -> tuple[str, tuple[int, ...]]:
    """A placeholder string every tokenizer of ``pipe`` reads as one unused non-special id, and those ids.

    SD 1.x/2.x: ``placeholder_token`` of its tokenizer. SDXL: a string that is one unused token
    for both tokenizers (the ids may differ), tried in the same order.
    """
    tokenizers = text_conditioning(pipe).tokenizers
    if len(tokenizers) == 1:
        token, token_id = placeholder_token(tokenizers[0], prompts)
        return token, (token_id,)
    for candidate in _CANDIDATES:
        ids = [_unused_id(tokenizer, prompts, candidate) for tokenizer in tokenizers]
        found = tuple(i for i in ids if i is not None)
        if len(found) == len(tokenizers):
            return candidate, found
    raise ValueError(f"no placeholder token for concept inversion: none of {', '.join(_CANDIDATES)} is a single "
                     "unused token of both tokenizers (tokenizer and tokenizer_2)")


def _unused_id(tokenizer: Any, prompts: Sequence[str], candidate: str) -> int | None:
    """The one id ``tokenizer`` reads ``candidate`` as, if it is no special token and no prompt uses it; else None."""
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    used = {i for prompt in prompts for i in tokenizer(prompt, add_special_tokens=False).input_ids}
    ids = tokenizer(candidate, add_special_tokens=False).input_ids
    return int(ids[0]) if len(ids) == 1 and ids[0] not in special and ids[0] not in used else None


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


@contextlib.contextmanager
def token_override(pipe: Any, learned: LearnedToken) -> Iterator[None]:
    """Within the block, each text encoder of ``pipe`` embeds its placeholder id as its learned vector.

    ``embedding_override`` on every encoder (both on SDXL); no weight changes.
    """
    encoders = text_conditioning(pipe).encoders
    if len(encoders) != len(learned.vectors):
        raise ValueError(f"the learned token {learned.token!r} holds {len(learned.vectors)} vector(s) but this "
                         f"{type(pipe).__name__} has {len(encoders)} text encoder(s)")
    with contextlib.ExitStack() as stack:
        for encoder, token_id, vector in zip(encoders, learned.token_ids, learned.vectors, strict=True):
            stack.enter_context(embedding_override(encoder, token_id, vector))
        yield


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
                settings: InversionSettings, *, device: torch.device | str = "cpu",
                token_id_2: int | None = None) -> LearnedToken:
    """Learn ``token``'s embedding with ``pipe``'s frozen UNet and text encoder(s) on ``latents`` (scaled, N×4×h×w).

    ``prompts[i]`` (each holding ``token``) belongs with ``latents[i]``. The vector starts at the
    placeholder's own embedding; Adam on that one vector, the scheduler's objective at uniform timesteps.
    On SDXL one vector per text encoder, each starting at its own encoder's row, under one Adam;
    ``token_id_2`` is the placeholder's id in ``tokenizer_2`` (default: ``token`` read by it).
    """
    text = text_conditioning(pipe)  # refuses SD3 and Flux (``check_attack_family``)
    if len(prompts) != len(latents):
        raise ValueError(f"inversion needs one prompt per latent: {len(prompts)} prompts, {len(latents)} latents")
    token_ids = _token_ids(text, token, token_id, token_id_2)
    device = torch.device(device)
    scheduler = pipe.scheduler
    start = time.perf_counter()
    vectors = [encoder.get_input_embeddings().weight[i].detach().float().clone().to(device).requires_grad_(True)
               for encoder, i in zip(text.encoders, token_ids, strict=True)]
    optimizer = torch.optim.Adam(vectors, lr=float(settings.lr))
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    ids = text.ids(prompts, device)
    x0_all = latents.float()
    size = text.image_size(x0_all)
    steps_total = int(scheduler.config.num_train_timesteps)
    losses: list[float] = []
    params = [p for module in text.modules for p in module.parameters()]
    grads = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad(), contextlib.ExitStack() as overrides:
            for encoder, i, vector in zip(text.encoders, token_ids, vectors, strict=True):
                overrides.enter_context(embedding_override(encoder, i, vector))
            for step in range(settings.steps):
                progress.report(step, settings.steps, unit="steps")
                pick = torch.randint(0, len(x0_all), (settings.batch_size,), generator=generator)
                t = torch.randint(0, steps_total, (settings.batch_size,), generator=generator)
                noise = torch.randn((settings.batch_size, *x0_all.shape[1:]), generator=generator)
                x_t, target = _target(scheduler, x0_all[pick], noise, t)
                cond = text.encode([rows[pick.to(device)] for rows in ids], size)
                out = text.predict(x_t, t, cond, device)
                loss = F.mse_loss(out.float(), target.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            progress.report(settings.steps, settings.steps, unit="steps")
    finally:
        for p, flag in zip(params, grads, strict=True):
            p.requires_grad_(flag)
    learned = [vector.detach().cpu() for vector in vectors]
    second = {"token_id_2": token_ids[1], "vector_2": learned[1]} if len(learned) > 1 else {}
    return LearnedToken(token, token_ids[0], learned[0], tuple(losses), settings.steps * settings.batch_size,
                        time.perf_counter() - start, **second)


def _token_ids(text: Any, token: str, token_id: int, token_id_2: int | None) -> tuple[int, ...]:
    """The placeholder's id per text encoder: ``token_id`` and, on SDXL, ``token_id_2`` (checked) or ``token``'s."""
    if len(text.encoders) == 1:
        if token_id_2 is not None:
            raise ValueError(f"token_id_2 is for SDXL's second tokenizer; this pipeline has one text encoder, got "
                             f"token_id_2={token_id_2!r}")
        return (token_id,)
    if token_id_2 is None:
        ids = text.tokenizers[1](token, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"concept inversion on SDXL: tokenizer_2 reads the placeholder {token!r} as {len(ids)} "
                             "tokens, not one; choose it with placeholder(pipe, prompts)")
        token_id_2 = int(ids[0])
    return (token_id, token_id_2)
