"""Concept inversion run on a probe's models: learn a token against each, draw with it, score the drawings.

The same attack, with the same budget, seeds and λO training images, is run against
the unlearned model, the original (where the concept must come back: the attack's
own check) and, when the probe has one, the gold standard. Each model gets its own
learned token; the drawings are of the scoring seeds (never the training seeds the
token learned from), scored like every other image of the probe (the judge, or the
concept classifier). What share of them shows the concept is the result; deciding
from them is the gate's (``gates.attacked``, ``scoring.attack_verdict``; docs/attacks.md).

With the probe's cache folder (the plugin's, ``ProbeSettings.classifier_cache``), each
learned token and its drawings are kept as ``inversion-<key>.pt``, the key holding the
attacked model's and the original's fingerprints, the training latents, prompts, token,
budget and drawing settings: a re-run learns and draws nothing. On SDXL the entry holds
both encoders' vectors (``vector``, ``vector_2``) and the key fingerprints ``text_encoder_2``
and ``tokenizer_2`` too (``on_probe.model_key``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import progress
from .inversion import (
    InversionSettings,
    LearnedToken,
    learn_token,
    placeholder,
    token_override,
    token_prompts,
)
from .on_probe import (
    AttackShares,
    attacked_models,
    book,
    cache_store,
    drawer,
    model_key,
    shared_key,
    training_latents,
)

__all__ = ["InversionResult", "run_inversion"]


@dataclass
class InversionResult(AttackShares):
    """Per attacked model ("unlearned", "original", "reference"): its learned token, drawings and concept values."""

    settings: InversionSettings
    token: str
    prompts: list[str]
    seeds: list[int]
    tokens: dict[str, LearnedToken] = field(default_factory=dict)
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": "inversion", "token": self.token, "prompts": self.prompts, "seeds": self.seeds,
            "settings": {"steps": self.settings.steps, "lr": self.settings.lr, "batch_size": self.settings.batch_size,
                         "seed": self.settings.seed},
            "models": {name: {"share": self.share(name).to_dict(), "final_loss": round(token.losses[-1], 5),
                              "unet_evals": token.unet_evals, "seconds": round(token.seconds, 2)}
                       for name, token in self.tokens.items()},
        }


def run_inversion(probe: Any, settings: InversionSettings | None = None) -> InversionResult:
    """Concept inversion against the probe's unlearned model, its original and (if any) its gold standard."""
    from .text_conditioning import check_attack_family

    engine = probe.engine
    check_attack_family(engine.original)
    settings = settings or InversionSettings(seed=probe.settings.seed)
    prompts = list(probe.concept.prompts)
    token, token_ids = placeholder(engine.original, [*prompts, *probe.anchors])  # one id per text encoder
    token_id, token_id_2 = token_ids[0], (token_ids[1] if len(token_ids) > 1 else None)
    attack_prompts = token_prompts(probe.anchors, token)
    latents = training_latents(probe)  # what the token learns from
    train_prompts = [attack_prompts[i] for i in range(len(prompts)) for _ in probe.train_seeds]
    result = InversionResult(settings, token, attack_prompts, list(probe.eval_seeds))
    store = cache_store(probe, "inversion")
    # What every key shares (the original's fingerprints, the training latents, prompts, budget): hashed once.
    shared = shared_key(engine, latents, _fields(train_prompts, token, token_ids, settings, probe.eval_seeds,
                                                 attack_prompts)) if store is not None else ""
    for name, pipe in attacked_models(probe).items():
        start = time.perf_counter()
        key = model_key(shared, pipe) if store is not None else ""
        kept = _load(store, key, token, token_id, token_id_2)
        if kept is not None:
            (learned, images), evals = kept, 0
        else:
            with progress.phase(f"inversion, learning the token ({name})"):
                learned = learn_token(pipe, latents, train_prompts, token, token_id, settings, device=engine.device,
                                      token_id_2=token_id_2)
            with (torch.inference_mode(), token_override(pipe, learned),
                  progress.phase(f"inversion, drawing with the token ({name})")):
                drawn = drawer(engine, pipe).generate(attack_prompts, 0.0, list(probe.eval_seeds))
            images, evals = drawn.images, learned.unet_evals + drawn.unet_evals
            if store is not None:
                store.save(key, _payload(learned, images))
        result.tokens[name], result.images[name] = learned, images
        result.values[name] = book(probe, "inversion", name, start, evals, images)
    return result


def _fields(train_prompts: list[str], token: str, token_ids: tuple[int, ...], settings: InversionSettings,
            eval_seeds: Any, attack_prompts: list[str]) -> dict[str, Any]:
    """The inversion's own part of the shared cache key: its training prompts, token, budget and drawing prompts.

    ``token_id_2`` only where there is a second tokenizer (SDXL), so SD 1.x/2.x keys stay what they were.
    """
    fields = {"train_prompts": train_prompts, "token": token, "token_id": token_ids[0], "settings": asdict(settings),
              "eval_seeds": list(eval_seeds), "prompts": attack_prompts}
    if len(token_ids) > 1:
        fields["token_id_2"] = token_ids[1]
    return fields


def _payload(learned: LearnedToken, images: torch.Tensor) -> dict[str, Any]:
    """What is kept of one model's inversion: its vector(s), losses, cost and drawings (``vector_2`` on SDXL)."""
    payload = {"vector": learned.vector, "losses": torch.tensor(learned.losses), "unet_evals": learned.unet_evals,
               "seconds": learned.seconds, "images": images}
    if learned.vector_2 is not None:
        payload["vector_2"] = learned.vector_2
    return payload


def _load(store: Any, key: str, token: str, token_id: int,
          token_id_2: int | None = None) -> tuple[LearnedToken, torch.Tensor] | None:
    """A kept token and its drawings, or None (none kept; an unreadable entry is warned about and redone).

    With ``token_id_2`` (SDXL) the entry must hold ``vector_2``; an SD 1.x/2.x entry has only ``vector``.
    """
    if store is None:
        return None
    try:
        payload = store.load(key)
        if payload is None:
            return None
        second: dict[str, Any] = {}
        if token_id_2 is not None:
            if "vector_2" not in payload:
                raise ValueError("no vector_2 for the second text encoder")
            second = {"token_id_2": token_id_2, "vector_2": payload["vector_2"]}
        learned = LearnedToken(token, token_id, payload["vector"], tuple(float(x) for x in payload["losses"]),
                               int(payload["unet_evals"]), float(payload["seconds"]), from_cache=True, **second)
        return learned, payload["images"]
    except Exception as exc:  # noqa: BLE001 - a damaged entry is recomputed, never trusted
        warnings.warn(f"pytest-uoc: unreadable inversion cache entry {Path(store.path(key))} ({exc}); "
                      "learning the token again", stacklevel=3)
        return None
