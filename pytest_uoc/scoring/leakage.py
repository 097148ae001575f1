"""Leakage without asking: the concept drawn under the empty prompt or unrelated prompts.

A UNet that still holds the concept draws it unconditionally more often than a
model that never learned it (docs/definitions.md: 10.9% of the original's empty-prompt
images showed a 3, 3.9% of the gold standard's). Both models start from the
same noise per (prompt, seed), so the comparison is paired: per-image
decisions ("shows the concept", from a judge or the domain classifier), a
paired bootstrap interval of the difference in rates, and McNemar's exact test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .stats import Estimate, mcnemar, paired_bootstrap_diff

__all__ = ["BASELINES", "Leakage", "leakage"]

#: What the unlearned model is compared with: the gold standard, or (without one) the original.
BASELINES = ("reference", "original")


@dataclass(frozen=True)
class Leakage:
    """Concept rate of the unlearned model against a baseline model on the same prompts and seeds.

    ``excess`` is mean(unlearned − baseline) of the 0/1 decisions with its
    paired bootstrap 95% interval; ``p_value`` is McNemar's exact two-sided test.
    """

    excess: Estimate
    unlearned_rate: float
    baseline_rate: float
    p_value: float
    baseline: str
    decided_by: str
    per_prompt: dict[str, tuple[float, float]]

    @property
    def n(self) -> int:
        return self.excess.n

    def to_dict(self) -> dict[str, Any]:
        return {"excess": self.excess.to_dict(), "unlearned_rate": self.unlearned_rate,
                "baseline_rate": self.baseline_rate, "p_value": self.p_value, "baseline": self.baseline,
                "decided_by": self.decided_by,
                "per_prompt": [{"prompt": p, "unlearned_rate": u, "baseline_rate": b}
                               for p, (u, b) in self.per_prompt.items()]}


def _flags(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one decision per image (1-D), got shape {array.shape}")
    if array.dtype != np.bool_:
        raise TypeError(f"{name} must be booleans (True where an image shows the concept), got {array.dtype}")
    return array


def leakage(
    unlearned: ArrayLike,
    baseline: ArrayLike,
    prompts: Sequence[str],
    *,
    baseline_name: str = "reference",
    decided_by: str = "judge",
    n_boot: int = 2000,
    seed: int = 0,
) -> Leakage:
    """Paired comparison of per-image concept decisions (prompt-major, the same seeds per prompt)."""
    if baseline_name not in BASELINES:
        raise ValueError(f"baseline_name must be one of {BASELINES}, got {baseline_name!r}")
    u, b = _flags(unlearned, "unlearned decisions"), _flags(baseline, "baseline decisions")
    if u.shape != b.shape:
        raise ValueError(f"paired decisions must have equal lengths, got {u.size} and {b.size}")
    prompt_list = list(prompts)
    if not prompt_list or u.size % len(prompt_list):
        raise ValueError(f"{u.size} decisions cannot be split evenly over {len(prompt_list)} prompts")
    per = u.size // len(prompt_list)
    per_prompt = {p: (float(u[i * per:(i + 1) * per].mean()), float(b[i * per:(i + 1) * per].mean()))
                  for i, p in enumerate(prompt_list)}
    return Leakage(
        excess=paired_bootstrap_diff(u.astype(float), b.astype(float), n_boot=n_boot, seed=seed),
        unlearned_rate=float(u.mean()), baseline_rate=float(b.mean()), p_value=mcnemar(u, b),
        baseline=baseline_name, decided_by=decided_by, per_prompt=per_prompt,
    )
