"""Adversarial prompt search (UnlearnDiffAtk, Zhang et al. 2023): real tokens prepended to a prompt.

"To Generate or Not? Safety-Driven Unlearned Diffusion Models Are Still Easy To Generate
Unsafe Images ... For Now" prepends a few tokens to the concept's prompt and chooses them
with the *unlearned* model's own denoising loss on images of the concept: if some words
make the model denoise those images well again, the concept is still in it. Unlike
concept inversion (``attacks.inversion``) the result is a prompt anyone can type, made
of the tokenizer's own tokens. Here:

- ``tokens`` slots go between the start token and the prompt ("<slots> a handwritten three");
- the slots are searched PEZ-style ("Hard Prompts Made Easy", Wen et al. 2023): continuous
  embeddings are kept, projected at each step to their nearest vocabulary embeddings
  (cosine similarity to the text encoder's input embeddings, special tokens excluded), the
  loss is computed with the projected (real) tokens and its gradient applied to the
  continuous embeddings (straight-through);
- the loss is the scheduler's training objective (ε or v) at uniform timesteps on the
  latents of λO images (the original's images of the concept, training seeds);
- the prompt kept is the one with the lowest loss on one fixed evaluation batch (latents,
  timesteps, noise drawn once), so prompts of different steps are compared on the same draws.

The tokens are injected by a forward hook on the text encoder's input embeddings: no
pipeline, tokenizer or weight is modified. Deterministic for a seed: one CPU generator
draws the starting tokens, the evaluation batch and every training timestep, latent and
noise. SD 1.x/2.x and SDXL pipelines; SD3 and Flux are refused with a message naming the family.

On SDXL each slot holds one token id, used by both text encoders (their tokenizers must
share one vocabulary; refused otherwise): continuous embeddings are kept per encoder, each
slot is projected to the id whose input embeddings maximise the sum of the two cosine
similarities (the same candidate ids in both tables), and the straight-through gradient
reaches both continuous sets. Each encoder reads its row with its own tokenizer
(``tokenizer_2`` pads with "!"), and the loss feeds the UNet what the pipeline would
(``text_conditioning``: both penultimate states, the pooled embedding, the time ids).
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
from .inversion import _target
from .text_conditioning import TextConditioning, text_conditioning

__all__ = ["AmbiguousFoundPrompts", "FoundPrompt", "PromptSearchSettings", "check_shared_vocabulary",
           "found_prompts_override", "found_text", "prompt_row", "quiet_truncation", "search_prompt", "slot_override",
           "special_ids"]

#: AdamW's weight decay on the continuous embeddings (PEZ's; it keeps them near the embedding table's scale).
_WEIGHT_DECAY = 0.1


class AmbiguousFoundPrompts(ValueError):
    """Two found prompts' texts tokenize alike but stand for different token ids: draw them apart."""


@dataclass(frozen=True)
class PromptSearchSettings:
    """The search's budget: optimisation steps, prepended tokens, learning rate, latents per step, and its seed."""

    steps: int = 40
    tokens: int = 5
    lr: float = 0.1
    batch_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "tokens", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"prompt search {name} must be an integer >= 1, got {value!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not 0 < float(self.lr) < 10:
            raise ValueError(f"prompt search lr must be a number in (0, 10), got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"prompt search seed must be an integer, got {self.seed!r}")


@dataclass(frozen=True)
class FoundPrompt:
    """The prompt found for ``prompt``: its text, the prepended token ids, and what finding it cost.

    ``losses[k]`` is the loss, on the fixed evaluation batch, of the tokens the search held
    after ``k`` updates (``losses[0]``: the starting tokens); ``best_loss`` is the lowest, that
    of ``token_ids``. ``retokenizes`` says whether the tokenizer (on SDXL: each of both)
    reads ``text`` back as ``token_ids`` followed by the prompt's ids; when it does not, draw
    from the ids (``found_prompts_override``), not from the text alone.
    """

    prompt: str
    text: str
    token_ids: tuple[int, ...]
    losses: tuple[float, ...]
    best_loss: float
    unet_evals: int
    seconds: float
    retokenizes: bool
    #: Read from the cache (``unet_evals`` and ``seconds`` are then what finding it cost the first time).
    from_cache: bool = False


@contextlib.contextmanager
def quiet_truncation() -> Iterator[None]:
    """No transformers/diffusers warnings within the block (restored after).

    A found text whose decoded tokens read back as more tokens than the tokenizer's length
    is truncated by the pipeline, and both libraries warn about it; the ids drawn are the
    intended ones all the same (``found_prompts_override`` replaces the truncated row).
    """
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    levels = [(module, module.get_verbosity()) for module in (dlog, tlog)]
    for module, _ in levels:
        module.set_verbosity_error()
    try:
        yield
    finally:
        for module, level in levels:
            module.set_verbosity(level)


def special_ids(tokenizer: Any) -> set[int]:
    """The ids of the tokenizer's special tokens (start, end, padding, unknown, ...): never searched."""
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, *tokenizer.all_special_ids}
    return {int(i) for i in ids if i is not None}


def prompt_row(tokenizer: Any, prompt: str, token_ids: Sequence[int]) -> list[int]:
    """The padded input ids of ``prompt`` with ``token_ids`` right after the start token.

    What the tokenizer gives for the found text when it retokenizes; refused (ValueError)
    when the slots and the prompt do not fit in the tokenizer's length together.
    """
    length = int(tokenizer.model_max_length)
    own = tokenizer(prompt, add_special_tokens=False).input_ids
    if 2 + len(token_ids) + len(own) > length:
        raise ValueError(f"prompt search: {len(token_ids)} tokens and the prompt {prompt!r} ({len(own)} tokens) do "
                         f"not fit in the tokenizer's {length} tokens with the start and end tokens")
    base = tokenizer(prompt, padding="max_length", max_length=length, truncation=True).input_ids
    return [base[0], *(int(i) for i in token_ids), *base[1:length - len(token_ids)]]


@contextlib.contextmanager
def slot_override(text_encoder: Any, start: int, vectors: torch.Tensor) -> Iterator[None]:
    """Within the block, every sequence's positions ``start``, ``start + 1``, ... are embedded as ``vectors`` (k×D).

    A forward hook on the input embeddings (no weight changes); gradients reach ``vectors``.
    """
    embedding = text_encoder.get_input_embeddings()
    stop = start + len(vectors)

    def hook(_module: Any, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        slots = vectors.to(output.device, output.dtype).unsqueeze(0).expand(output.shape[0], -1, -1)
        return torch.cat([output[:, :start], slots, output[:, stop:]], dim=1)

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def found_prompts_override(pipe: Any, found: Sequence[FoundPrompt]) -> Iterator[None]:
    """Within the block, ``pipe``'s text encoder(s) read each found text as its token ids (no weight changes).

    Texts that retokenize need nothing; one that does not is embedded, whole sequence, as
    ``prompt_row`` of its ids (a forward hook matching the tokenizer's ids of the text). On
    SDXL each encoder gets its own hook, its rows built with its own tokenizer (``tokenizer_2``
    pads with "!"). ``AmbiguousFoundPrompts`` when two found prompts' texts tokenize alike but
    stand for different ids: draw those apart, one override each.
    """
    text = text_conditioning(pipe, "prompt search")
    pairs = list(zip(text.tokenizers, text.encoders, strict=True))
    # Every encoder's rows first, so an ambiguity is raised before any hook is set.
    replacements = [(encoder, _replaced_rows(tokenizer, found)) for tokenizer, encoder in pairs]
    with contextlib.ExitStack() as stack:
        for encoder, replaced in replacements:
            if replaced:
                stack.enter_context(_rows_override(encoder, replaced))
        yield


def _replaced_rows(tokenizer: Any, found: Sequence[FoundPrompt]) -> dict[tuple[int, ...], tuple[int, ...]]:
    """The rows ``tokenizer`` reads found texts as, mapped to the rows meant (only those that differ)."""
    length = int(tokenizer.model_max_length)
    rows: dict[tuple[int, ...], tuple[int, ...]] = {}
    for item in found:
        read = tuple(tokenizer(item.text, padding="max_length", max_length=length, truncation=True).input_ids)
        meant = tuple(prompt_row(tokenizer, item.prompt, item.token_ids))
        if rows.setdefault(read, meant) != meant:
            raise AmbiguousFoundPrompts(f"prompt search: the found text {item.text!r} tokenizes like another found "
                                        "prompt with other ids; draw them apart")
    return {read: meant for read, meant in rows.items() if read != meant}


@contextlib.contextmanager
def _rows_override(text_encoder: Any, replaced: dict[tuple[int, ...], tuple[int, ...]]) -> Iterator[None]:
    """Within the block, ``text_encoder`` embeds each row of ``replaced`` as the row it maps to (a forward hook)."""
    embedding = text_encoder.get_input_embeddings()

    def hook(_module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        matches = [(i, replaced[tuple(row)]) for i, row in enumerate(inputs[0].tolist()) if tuple(row) in replaced]
        if not matches:
            return output
        output = output.clone()
        for i, meant in matches:
            output[i] = embedding.weight[torch.tensor(meant, device=embedding.weight.device)].to(output.device,
                                                                                                  output.dtype)
        return output

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def check_shared_vocabulary(pipe: Any) -> None:
    """Refuse (ValueError, naming both) an SDXL pipeline whose two tokenizers do not share one vocabulary.

    Prompt search puts one token id per slot into both text encoders: the id must mean the
    same token to both tokenizers (``get_vocab()`` equal). Nothing to check with one tokenizer.
    """
    tokenizers = text_conditioning(pipe, "prompt search").tokenizers
    if len(tokenizers) < 2 or tokenizers[0] is tokenizers[1]:
        return
    first, second = tokenizers
    if first.get_vocab() != second.get_vocab():
        raise ValueError(f"prompt search on SDXL puts one token id per slot into both text encoders, so tokenizer "
                         f"({type(first).__name__}, {len(first)} tokens) and tokenizer_2 ({type(second).__name__}, "
                         f"{len(second)} tokens) must share one vocabulary (get_vocab()); theirs differ")


def _vocabulary(tokenizer: Any, rows: int, vocabulary: Sequence[int] | None,
                others: Sequence[Any] = ()) -> torch.Tensor:
    """The ids searched: ``vocabulary`` (checked) or every id of the tokenizer and the table but the special ones.

    ``others`` (SDXL: ``tokenizer_2``): their special ids are excluded too, and ids beyond any of them.
    """
    special = special_ids(tokenizer).union(*(special_ids(other) for other in others))
    size = min(len(tokenizer), rows, *(len(other) for other in others))
    if vocabulary is None:
        ids = [i for i in range(size) if i not in special]
    else:
        ids = list(vocabulary)
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < size or i in special]
        if bad:
            raise ValueError(f"prompt search vocabulary must hold non-special token ids in [0, {size}), got {bad[0]!r}")
        ids = sorted(set(ids))
    if not ids:
        raise ValueError("prompt search vocabulary is empty: give at least one token id")
    return torch.tensor(ids, dtype=torch.long)


def _start(settings: PromptSearchSettings, n_candidates: int, latents: torch.Tensor, steps_total: int,
           generator: torch.Generator) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The starting tokens (indices into the vocabulary searched) and the fixed evaluation batch, drawn in that order."""
    first = torch.randint(0, n_candidates, (settings.tokens,), generator=generator)
    return first, _draw(settings.batch_size, latents, steps_total, generator)


def _draw(n: int, latents: torch.Tensor, steps_total: int,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` latent picks, uniform timesteps below ``steps_total`` and noise, from ``generator``."""
    pick = torch.randint(0, len(latents), (n,), generator=generator)
    t = torch.randint(0, steps_total, (n,), generator=generator)
    noise = torch.randn((n, *latents.shape[1:]), generator=generator)
    return pick, t, noise


def _nearest(continuous: Sequence[torch.Tensor], unit_tables: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per slot, the row of the tables (one per encoder, rows normalised, same ids) nearest the continuous embeddings.

    Nearest by cosine similarity; with several encoders (SDXL) by the sum of each encoder's
    cosine similarity, so one id serves every encoder.
    """
    scores = F.normalize(continuous[0].detach(), dim=-1) @ unit_tables[0].T
    for own, unit in zip(continuous[1:], unit_tables[1:], strict=True):
        scores = scores + F.normalize(own.detach(), dim=-1) @ unit.T
    return scores.argmax(dim=-1)


def _loss(pipe: Any, latents: torch.Tensor, row: torch.Tensor | Sequence[torch.Tensor],
          slots: torch.Tensor | Sequence[torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
          device: torch.device | str, text: TextConditioning | None = None) -> torch.Tensor:
    """The denoising loss on ``batch`` with the prompt ``row`` (1×L ids) whose slots are embedded as ``slots``.

    On SDXL ``row`` and ``slots`` hold one per text encoder (each encoder's row from its own
    tokenizer, its slots in its own width); a single tensor stands for the one encoder of SD 1.x/2.x.
    """
    text = text or text_conditioning(pipe, "prompt search")
    rows = (row,) if isinstance(row, torch.Tensor) else tuple(row)
    vectors = (slots,) if isinstance(slots, torch.Tensor) else tuple(slots)
    pick, t, noise = batch
    x_t, target = _target(pipe.scheduler, latents[pick], noise, t)
    with contextlib.ExitStack() as stack:
        for encoder, own in zip(text.encoders, vectors, strict=True):
            stack.enter_context(slot_override(encoder, 1, own))
        cond = text.expand(text.encode(rows, text.image_size(latents)), len(pick))
    out = text.predict(x_t, t, cond, device)
    return F.mse_loss(out.float(), target.to(device))


def search_prompt(pipe: Any, latents: torch.Tensor, prompt: str, settings: PromptSearchSettings, *,
                  device: torch.device | str = "cpu", vocabulary: Sequence[int] | None = None) -> FoundPrompt:
    """Search ``settings.tokens`` real tokens to prepend to ``prompt`` so ``pipe`` denoises ``latents`` best.

    ``latents`` (scaled, N×4×h×w) are images of the concept; ``pipe``'s UNet and text encoder(s)
    stay frozen. ``vocabulary`` limits the ids searched (default: every non-special id).
    The starting tokens are drawn at random from the vocabulary; AdamW on their continuous
    embeddings, straight-through the projection (see the module's docstring; on SDXL one
    continuous set per encoder, one id per slot for both).
    """
    text = text_conditioning(pipe, "prompt search")  # refuses SD3 and Flux, naming them
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or len(latents) == 0:
        raise ValueError(f"prompt search needs latents N×C×h×w with N >= 1, got "
                         f"{tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__}")
    check_shared_vocabulary(pipe)
    device = torch.device(device)
    tokenizers, scheduler = text.tokenizers, pipe.scheduler
    tokenizer = tokenizers[0]
    start = time.perf_counter()
    weights = [encoder.get_input_embeddings().weight for encoder in text.encoders]
    candidates = _vocabulary(tokenizer, min(weight.shape[0] for weight in weights), vocabulary, tokenizers[1:])
    # One table per encoder, the same candidate ids in each.
    tables = [weight.detach()[candidates.to(weight.device)].float().to(device) for weight in weights]
    unit_tables = [F.normalize(table, dim=-1) for table in tables]
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    x0_all = latents.float()
    steps_total = int(scheduler.config.num_train_timesteps)
    first, evaluation = _start(settings, len(candidates), x0_all, steps_total, generator)
    # The slots' ids in ``bases`` are the starting ones; the hooks give them the searched embeddings.
    bases = [torch.tensor([prompt_row(own, prompt, candidates[first].tolist())], device=device) for own in tokenizers]
    continuous = [table[first.to(device)].clone().requires_grad_(True) for table in tables]
    optimizer = torch.optim.AdamW(continuous, lr=float(settings.lr), weight_decay=_WEIGHT_DECAY)
    seen: dict[tuple[int, ...], float] = {}
    losses: list[float] = []
    evals = 0

    def project() -> torch.Tensor:
        """Indices (into ``candidates``) of the vocabulary embeddings nearest the continuous ones (``_nearest``)."""
        return _nearest(continuous, unit_tables)

    def evaluate(nearest: torch.Tensor) -> None:
        """Book the fixed-batch loss of the projected tokens (computed once per distinct token ids)."""
        nonlocal evals
        ids = tuple(int(i) for i in candidates[nearest.cpu()])
        if ids not in seen:
            with torch.no_grad():
                seen[ids] = float(_loss(pipe, x0_all, bases, [table[nearest] for table in tables], evaluation,
                                        device, text))
            evals += len(evaluation[0])
        losses.append(seen[ids])

    params = [p for module in text.modules for p in module.parameters()]
    grads = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            for step in range(settings.steps):
                progress.report(step, settings.steps, unit="steps")
                nearest = project()
                evaluate(nearest)
                # Straight-through: the forward sees the real tokens, the gradient reaches the continuous embeddings.
                slots = [own + (table[nearest] - own).detach() for own, table in zip(continuous, tables, strict=True)]
                batch = _draw(settings.batch_size, x0_all, steps_total, generator)
                loss = _loss(pipe, x0_all, bases, slots, batch, device, text)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                evals += settings.batch_size
            evaluate(project())
            progress.report(settings.steps, settings.steps, unit="steps")
    finally:
        for p, flag in zip(params, grads, strict=True):
            p.requires_grad_(flag)
    best = min(seen, key=seen.__getitem__)  # the first token ids seen with the lowest loss
    text_found = found_text(tokenizer, prompt, best)
    with quiet_truncation():
        retokenizes = all(own(text_found, add_special_tokens=False).input_ids
                          == [*best, *own(prompt, add_special_tokens=False).input_ids] for own in tokenizers)
    return FoundPrompt(prompt, text_found, best, tuple(losses), seen[best], evals, time.perf_counter() - start,
                       retokenizes)


def found_text(tokenizer: Any, prompt: str, token_ids: Sequence[int]) -> str:
    """The tokens decoded, then the prompt: what a person would type."""
    words = tokenizer.decode(list(token_ids), clean_up_tokenization_spaces=False).strip()
    return f"{words} {prompt}".strip()

