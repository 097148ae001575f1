"""Concept inversion run on a probe's models: learn a token against each, draw with it, score the drawings.

The same attack, with the same budget, seeds and λO training images, is run against
the unlearned model, the original (where the concept must come back: the attack's
own check) and, when the probe has one, the gold standard. Each model gets its own
learned token; the drawings are of the scoring seeds (never the training seeds the
token learned from), scored like every other image of the probe (the judge, or the
concept classifier). What share of them shows the concept is the result; deciding
from it (a gate) is left to the caller until its null is measured (docs/attacks.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .inversion import (
    InversionSettings,
    LearnedToken,
    embedding_override,
    learn_token,
    placeholder_token,
    token_prompts,
)

__all__ = ["InversionResult", "run_inversion"]


@dataclass
class InversionResult:
    """Per attacked model ("unlearned", "original", "reference"): its learned token, drawings and concept values."""

    settings: InversionSettings
    token: str
    prompts: list[str]
    seeds: list[int]
    tokens: dict[str, LearnedToken] = field(default_factory=dict)
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def share(self, model: str) -> Any:
        """The share of ``model``'s drawings that show the concept, with a bootstrap 95% interval (items)."""
        from ..scoring.stats import bootstrap_mean

        return bootstrap_mean(self.values[model], n_boot=2000, seed=self.settings.seed)

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
    from ..diffusion import PartialDiffusion
    from ..diffusion.restore import encode_references
    from .inversion import check_family

    engine = probe.engine
    check_family(engine.original)
    settings = settings or InversionSettings(seed=probe.settings.seed)
    prompts = list(probe.concept.prompts)
    token, token_id = placeholder_token(engine.original.tokenizer, [*prompts, *probe.anchors])
    attack_prompts = token_prompts(probe.anchors, token)
    # λO of the training seeds (prompt-major): what the token learns from.
    originals = probe.bank.training["unlearned"].get([1.0])[1.0]
    latents = encode_references(engine, originals).cpu()
    train_prompts = [attack_prompts[i] for i in range(len(prompts)) for _ in probe.train_seeds]
    result = InversionResult(settings, token, attack_prompts, list(probe.eval_seeds))
    targets = {"unlearned": engine.unlearned, "original": engine.original}
    if probe.reference_engine is not None:
        targets["reference"] = probe.reference_engine.unlearned
    for name, pipe in targets.items():
        start = time.perf_counter()
        learned = learn_token(pipe, latents, train_prompts, token, token_id, settings, device=engine.device)
        # No trajectory cache: the hook changes what the text encoder gives, not its weights' fingerprint.
        drawer = PartialDiffusion(engine.original, pipe, num_inference_steps=engine.num_inference_steps,
                                  guidance_scale=engine.guidance_scale, batch_size=engine.batch_size)
        with torch.inference_mode(), embedding_override(pipe.text_encoder, token_id, learned.vector):
            drawn = drawer.generate(attack_prompts, 0.0, list(probe.eval_seeds))
        evals = learned.unet_evals + drawn.unet_evals
        probe.cost.count("inversion", start, evals, unlearned=evals if name == "unlearned" else 0)
        result.tokens[name], result.images[name] = learned, drawn.images
        result.values[name] = probe._concept_of(drawn.images).numpy()
    return result
