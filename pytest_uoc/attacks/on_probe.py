"""What the learned attacks share when run on a probe: models, training latents, cache keys, shares.

Concept inversion (``inversion_probe``) and prompt search (``prompt_search_probe``) attack
the same models (the unlearned one, the original, the gold standard when there is one),
learn from the same λO latents of the training seeds, keep what they learned under keys
built the same way (the original's fingerprints, the training latents, the attack's own
fields and the drawing settings; then the attacked model's parts), and report a share with
the same bootstrap interval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["AttackShares", "attacked_models", "book", "cache_store", "describe_part", "drawer", "family_key_parts",
           "model_key", "shared_key", "training_latents"]


class AttackShares:
    """Mixin of an attack's result: ``values[model]`` per drawing, ``settings.seed`` for the bootstrap."""

    values: dict[str, np.ndarray]
    settings: Any

    def share(self, model: str) -> Any:
        """The share of ``model``'s drawings that show the concept, with a bootstrap 95% interval (items)."""
        from ..scoring.stats import bootstrap_mean

        return bootstrap_mean(self.values[model], n_boot=2000, seed=self.settings.seed)


def attacked_models(probe: Any) -> dict[str, Any]:
    """The pipelines an attack is run on: the unlearned model, the original and (if any) the gold standard."""
    engine = probe.engine
    targets = {"unlearned": engine.unlearned, "original": engine.original}
    if probe.reference_engine is not None:
        targets["reference"] = probe.reference_engine.unlearned
    return targets


def training_latents(probe: Any) -> torch.Tensor:
    """The latents of λO of the training seeds (prompt-major: prompt i's are rows i·n .. (i+1)·n), on the CPU."""
    from ..diffusion.restore import encode_references

    originals = probe.bank.training["unlearned"].get([1.0])[1.0]
    return encode_references(probe.engine, originals).cpu()


def cache_store(probe: Any, prefix: str) -> Any:
    """Where an attack keeps what it learned: the probe's classifier cache folder, or None (no cache)."""
    from ..stores import ClassifierStore

    folder = probe.settings.classifier_cache
    return None if folder is None else ClassifierStore(folder, prefix=prefix)


def shared_key(engine: Any, latents: torch.Tensor, fields: Mapping[str, Any]) -> str:
    """What every attacked model's key shares: the original's UNet and VAE, the latents, ``fields``, the drawing."""
    from ..stores import fingerprint_module

    drawing = {"steps": engine.num_inference_steps, "guidance": engine.guidance_scale,
               "size": [engine.height, engine.width], "device": engine.device.type, "dtype": str(engine.dtype),
               "image_dtype": str(engine.image_dtype)}
    parts = [fingerprint_module(engine.original.unet), fingerprint_module(engine.original.vae),
             hashlib.sha256(latents.numpy().tobytes()).hexdigest(),
             json.dumps({**fields, **drawing}, sort_keys=True)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def model_key(shared: str, pipe: Any, *extra: str) -> str:
    """One attacked model's key: ``shared``, its UNet and text encoder, ``extra`` parts and its scheduler's config.

    For a family with more text parts (SDXL: ``Family.cache_key_parts``, the second text encoder
    and its tokenizer) those parts and the pipeline's config (``force_zeros_for_empty_prompt``)
    follow, as in the trajectory cache's keys; an SD 1.x/2.x key has nothing more (unchanged).
    """
    from ..stores import fingerprint_module, stable_config

    parts = [shared, fingerprint_module(pipe.unet), fingerprint_module(pipe.text_encoder), *extra,
             stable_config(pipe.scheduler.config), *family_key_parts(pipe)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def family_key_parts(pipe: Any) -> list[str]:
    """The key parts of ``pipe``'s family's extra text parts (none for SD 1.x/2.x), then the pipeline's config."""
    from ..diffusion.families import family_of

    names = family_of(pipe).cache_key_parts
    if not names:
        return []
    config = {k: v for k, v in dict(getattr(pipe, "config", {})).items() if not str(k).startswith("_")}
    return [*(f"{name}={describe_part(getattr(pipe, name, None))}" for name in names),
            json.dumps(config, sort_keys=True, default=str)]


def describe_part(part: Any) -> str:
    """A key part for a pipeline part: a module's fingerprint, a tokenizer's kind, size, padding and vocabulary.

    A tokenizer's padding token and vocabulary are in it (beyond what ``TrajectoryCache.describe``
    keys): the attacks' rows are padded by it (SDXL's ``tokenizer_2`` pads with "!") and prompt
    search's ids are read through its vocabulary.
    """
    from ..stores import describe_part as describe

    base = describe(part)
    if part is None or hasattr(part, "state_dict"):
        return base
    vocab = part.get_vocab() if hasattr(part, "get_vocab") else {}
    digest = hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()
    return f"{base}:pad={getattr(part, 'pad_token', None)!r}:vocab={digest}"


def drawer(engine: Any, pipe: Any) -> Any:
    """An engine that draws with ``pipe`` at ψ = 0 as ``engine`` draws, without the trajectory cache.

    No cache: what an attack changes (a hook on the text encoder) is not in the weights' fingerprints.
    """
    from ..diffusion import PartialDiffusion

    return PartialDiffusion(engine.original, pipe, num_inference_steps=engine.num_inference_steps,
                            guidance_scale=engine.guidance_scale, batch_size=engine.batch_size)


def book(probe: Any, phase: str, model: str, start: float, evals: int, images: torch.Tensor) -> np.ndarray:
    """Count one attacked model's cost under ``phase`` and score its drawings (the judge, or the classifier)."""
    probe.cost.count(phase, start, evals, unlearned=evals if model == "unlearned" else 0)
    return probe._concept_of(images).numpy()
