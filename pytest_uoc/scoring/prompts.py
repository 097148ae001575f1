"""CCS per prompt: does the concept stay erased when asked for in other words or languages?

The unlearned model's own images (ψ = 0) of paraphrases and translations of
the concept's prompts, scored by the same domain classifier as CCS: a model
that only unlearned the words it was shown still draws the concept for "trois"
or "the digit 3". Images are prompt-major, seed-minor, as a sweep returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .ccs import ProbabilityModel, _as_array, _probabilities
from .stats import Estimate, bootstrap_mean

__all__ = ["PromptCCS", "prompt_ccs", "prompt_ccs_from_probabilities"]


@dataclass(frozen=True)
class PromptCCS:
    """CCS over all prompts and per prompt, with bootstrap 95% intervals.

    ``probabilities[prompt]`` keeps the per-image probabilities in seed order.
    """

    overall: Estimate
    per_prompt: dict[str, Estimate]
    probabilities: dict[str, np.ndarray]

    @property
    def prompts(self) -> list[str]:
        return list(self.per_prompt)

    def retrieving(self, ccs_max: float) -> list[str]:
        """Prompts whose whole interval lies above ``ccs_max`` (they clearly bring the concept back)."""
        return [p for p, est in self.per_prompt.items() if est.low > ccs_max]

    def worst(self) -> str:
        """The prompt with the highest mean CCS."""
        return max(self.per_prompt, key=lambda p: self.per_prompt[p].mean)

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.to_dict(),
                "per_prompt": [{"prompt": p, **est.to_dict()} for p, est in self.per_prompt.items()]}


def prompt_ccs(
    classifier: ProbabilityModel,
    images: torch.Tensor,
    prompts: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> PromptCCS:
    """CCS of images of ``prompts`` (prompt-major: ``len(images) / len(prompts)`` seeds each)."""
    _check_prompts(prompts)
    return prompt_ccs_from_probabilities(_probabilities(classifier, images, "images"), prompts, n_boot=n_boot,
                                         seed=seed)


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    prompt_list = list(prompts)
    if not prompt_list:
        raise ValueError("prompts is empty: give at least one prompt")
    if len(set(prompt_list)) != len(prompt_list):
        raise ValueError(f"prompts must be distinct, got {prompt_list}")
    return prompt_list


def prompt_ccs_from_probabilities(
    probabilities: np.ndarray | torch.Tensor,
    prompts: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> PromptCCS:
    """CCS per prompt from per-image probabilities the classifier already gave (prompt-major, seed-minor)."""
    prompt_list = _check_prompts(prompts)
    probs = _as_array(probabilities)
    if probs.shape[0] % len(prompt_list):
        raise ValueError(
            f"{probs.shape[0]} images cannot be split evenly over {len(prompt_list)} prompts "
            "(images must be prompt-major, the same seeds for every prompt)"
        )
    per = probs.shape[0] // len(prompt_list)
    split = {p: probs[i * per:(i + 1) * per] for i, p in enumerate(prompt_list)}
    return PromptCCS(
        overall=bootstrap_mean(probs, n_boot=n_boot, seed=seed),
        per_prompt={p: bootstrap_mean(v, n_boot=n_boot, seed=seed) for p, v in split.items()},
        probabilities=split,
    )
