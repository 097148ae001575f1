"""Adversarial prompt search run on a probe's models: search a prompt against each, draw with it, score.

The same search, with the same budget, seeds and λO training images, is run against
the unlearned model, the original (where the concept must come back: the attack's own
check) and, when the probe has one, the gold standard. For each concept prompt each
model gets its own found prompt (tokens prepended to that concept prompt), searched on
the original's λO images of that prompt (training seeds). The drawings are of the
scoring seeds (never the training seeds the search saw), prompt-major like every other
image set of the probe, so the values of two models are item-aligned (same prompt
position, same seed) for a paired comparison; they are scored like every other image of
the probe (the judge, or the concept classifier). Deciding from the shares is the
gate's (``gates.attacked``, ``scoring.attack_verdict``; docs/attacks.md).

With the probe's cache folder (the plugin's, ``ProbeSettings.classifier_cache``), each
model's found prompts and drawings are kept as ``prompt-attack-<key>.pt``, the key
holding the attacked model's and the original's fingerprints, the training latents,
prompts, budget and drawing settings: a re-run searches and draws nothing. On SDXL the key
fingerprints ``text_encoder_2`` and ``tokenizer_2`` too (``on_probe.model_key``).
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
from .prompt_search import (
    AmbiguousFoundPrompts,
    FoundPrompt,
    PromptSearchSettings,
    check_shared_vocabulary,
    found_prompts_override,
    quiet_truncation,
    search_prompt,
)

__all__ = ["PromptAttackResult", "run_prompt_attack"]


@dataclass
class PromptAttackResult(AttackShares):
    """Per attacked model ("unlearned", "original", "reference"): its found prompts, drawings and concept values.

    ``found[model][i]`` was searched for ``prompts[i]``; ``images[model]`` and ``values[model]``
    are prompt-major over ``prompts`` and seed-minor over ``seeds`` (the probe's scoring seeds).
    """

    settings: PromptSearchSettings
    prompts: list[str]
    seeds: list[int]
    found: dict[str, list[FoundPrompt]] = field(default_factory=dict)
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": "prompt_attack", "prompts": self.prompts, "seeds": self.seeds,
            "settings": asdict(self.settings),
            "models": {name: {
                "share": self.share(name).to_dict(),
                "found": [{"prompt": item.prompt, "text": item.text, "token_ids": list(item.token_ids),
                           "best_loss": round(item.best_loss, 5), "retokenizes": item.retokenizes}
                          for item in found],
                "unet_evals": sum(item.unet_evals for item in found),
                "seconds": round(sum(item.seconds for item in found), 2)}
                for name, found in self.found.items()},
        }


def run_prompt_attack(probe: Any, settings: PromptSearchSettings | None = None) -> PromptAttackResult:
    """Adversarial prompt search against the probe's unlearned model, its original and (if any) its gold standard."""
    from .text_conditioning import check_attack_family

    engine = probe.engine
    check_attack_family(engine.original, "prompt search")
    check_shared_vocabulary(engine.original)
    settings = settings or PromptSearchSettings(seed=probe.settings.seed)
    prompts = list(probe.concept.prompts)
    latents = training_latents(probe)  # prompt-major: prompt i's images are rows i·n .. (i+1)·n
    n = len(probe.train_seeds)
    result = PromptAttackResult(settings, prompts, list(probe.eval_seeds))
    store = cache_store(probe, "prompt-attack")
    # What every key shares (the original's fingerprints, the training latents, prompts, budget): hashed once.
    shared = shared_key(engine, latents, _fields(prompts, settings, probe.eval_seeds)) if store is not None else ""
    for name, pipe in attacked_models(probe).items():
        start = time.perf_counter()
        key = _key(shared, pipe) if store is not None else ""
        kept = _load(store, key, prompts)
        if kept is not None:
            (found, images), evals = kept, 0
        else:
            with progress.phase(f"prompt attack, searching ({name})"):
                found = [search_prompt(pipe, latents[i * n:(i + 1) * n], prompt, settings, device=engine.device)
                         for i, prompt in enumerate(prompts)]
            with (torch.inference_mode(), quiet_truncation(),
                  progress.phase(f"prompt attack, drawing with the found prompts ({name})")):
                images, drawn = _draw(drawer(engine, pipe), pipe, found, list(probe.eval_seeds))
            evals = sum(item.unet_evals for item in found) + drawn
            if store is not None:
                store.save(key, _payload(found, images))
        result.found[name], result.images[name] = found, images
        result.values[name] = book(probe, "prompt_attack", name, start, evals, images)
    return result


def _draw(drawer: Any, pipe: Any, found: list[FoundPrompt], seeds: list[int]) -> tuple[torch.Tensor, int]:
    """The drawings of every found prompt at ψ = 0 (prompt-major), and their UNet evaluations.

    All in one call when the found texts can be told apart by their tokens; otherwise one
    call per found prompt (each with its own override), concatenated in prompt order.
    """
    try:
        with found_prompts_override(pipe, found):
            drawn = drawer.generate([item.text for item in found], 0.0, seeds)
        return drawn.images, drawn.unet_evals
    except AmbiguousFoundPrompts:
        pass
    parts, evals = [], 0
    for item in found:
        with found_prompts_override(pipe, [item]):
            drawn = drawer.generate([item.text], 0.0, seeds)
        parts.append(drawn.images)
        evals += drawn.unet_evals
    return torch.cat(parts), evals


def _fields(prompts: list[str], settings: PromptSearchSettings, eval_seeds: Any) -> dict[str, Any]:
    """The search's own part of the shared cache key: the concept prompts, the budget and the scoring seeds."""
    return {"prompts": prompts, "settings": asdict(settings), "eval_seeds": list(eval_seeds)}


def _key(shared: str, pipe: Any) -> str:
    """The key of one attacked model's prompts and drawings: its UNet, text encoder, tokenizer, scheduler, ``shared``.

    On SDXL ``model_key`` adds ``text_encoder_2`` and ``tokenizer_2`` (SD 1.x/2.x keys are unchanged).
    """
    from ..stores import describe_part

    return model_key(shared, pipe, describe_part(pipe.tokenizer))


def _payload(found: list[FoundPrompt], images: torch.Tensor) -> dict[str, Any]:
    """What is kept of one model's search: the found prompts (tensors and plain values) and the drawings."""
    return {"texts": [item.text for item in found],
            "token_ids": torch.tensor([list(item.token_ids) for item in found], dtype=torch.long),
            "losses": torch.tensor([list(item.losses) for item in found], dtype=torch.float64),
            "best_loss": [item.best_loss for item in found], "unet_evals": [item.unet_evals for item in found],
            "seconds": [item.seconds for item in found], "retokenizes": [item.retokenizes for item in found],
            "images": images}


def _load(store: Any, key: str, prompts: list[str]) -> tuple[list[FoundPrompt], torch.Tensor] | None:
    """Kept prompts and drawings, or None (none kept; an unreadable entry is warned about and redone)."""
    if store is None:
        return None
    try:
        payload = store.load(key)
        if payload is None:
            return None
        fields = [payload[name] for name in ("texts", "token_ids", "losses", "best_loss", "unet_evals", "seconds",
                                             "retokenizes")]
        if any(len(values) != len(prompts) for values in fields):
            raise ValueError(f"{len(fields[0])} found prompts for {len(prompts)} concept prompts")
        found = [FoundPrompt(prompt, str(text), tuple(int(i) for i in ids), tuple(float(x) for x in losses),
                             float(best), int(evals), float(seconds), bool(retokenizes), from_cache=True)
                 for prompt, text, ids, losses, best, evals, seconds, retokenizes in zip(prompts, *fields,
                                                                                         strict=True)]
        return found, payload["images"]
    except Exception as exc:  # noqa: BLE001 - a damaged entry is recomputed, never trusted
        warnings.warn(f"pytest-uoc: unreadable prompt attack cache entry {Path(store.path(key))} ({exc}); "
                      "searching the prompts again", stacklevel=3)
        return None
