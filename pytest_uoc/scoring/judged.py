"""Scores from a judge's labels: alignment and pinpoint-ness.

Alignment (HUB, arXiv 2410.05664): on general prompts the unlearned model's
images still show what was asked, as a judge reads them. Pinpoint-ness:
concepts close to the target survive, measured by the retention distance on
neighbour prompts and, with a judge, the fraction of neighbour images judged
correct. Labels are compared with ``==``: booleans, integers or strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .retention import RetentionResult
from .stats import Estimate, bootstrap_mean

__all__ = ["JudgedAccuracy", "Pinpoint", "judged_accuracy"]


@dataclass(frozen=True)
class JudgedAccuracy:
    """The fraction of images whose label equals the expected one, overall and per prompt.

    ``expected`` says where the expected labels came from ("given", or
    "original": the judge's label of the original model's image of the same
    prompt and seed); ``baseline`` is the original model's own accuracy
    against the given labels, when known.
    """

    accuracy: Estimate
    per_prompt: dict[str, float]
    expected: str = "given"
    baseline: float | None = None
    correct: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy.to_dict(), "per_prompt": dict(self.per_prompt),
                "expected": self.expected, "baseline": self.baseline}


@dataclass(frozen=True)
class Pinpoint:
    """Neighbour concepts after unlearning: retention distance and (with a judge) accuracy."""

    neighbors: tuple[str, ...]
    retention: RetentionResult
    accuracy: JudgedAccuracy | None = None

    def to_dict(self) -> dict[str, Any]:
        r = self.retention
        return {"neighbors": list(self.neighbors),
                "retention": {"mean": r.mean, "low": r.low, "high": r.high, "n": r.n, "distance": r.distance},
                "accuracy": None if self.accuracy is None else self.accuracy.to_dict()}


def _equal(labels: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.array([bool(a == b) for a, b in zip(labels.tolist(), expected.tolist(), strict=True)], dtype=bool)


def judged_accuracy(
    labels: Any,
    expected: Any,
    prompts: Sequence[str],
    *,
    expected_source: str = "given",
    baseline_labels: Any = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> JudgedAccuracy:
    """Accuracy of per-image ``labels`` (prompt-major) against per-image ``expected`` labels."""
    got, want = np.asarray(labels, dtype=object), np.asarray(expected, dtype=object)
    if got.ndim != 1 or got.shape != want.shape:
        raise ValueError(f"labels and expected labels must be 1-D of equal length, got {got.shape} and {want.shape}")
    prompt_list = list(prompts)
    if not prompt_list or got.size % len(prompt_list):
        raise ValueError(f"{got.size} labels cannot be split evenly over {len(prompt_list)} prompts")
    correct = _equal(got, want)
    per = got.size // len(prompt_list)
    per_prompt = {p: float(correct[i * per:(i + 1) * per].mean()) for i, p in enumerate(prompt_list)}
    baseline = None
    if baseline_labels is not None:
        baseline = float(_equal(np.asarray(baseline_labels, dtype=object), want).mean())
    return JudgedAccuracy(bootstrap_mean(correct.astype(float), n_boot=n_boot, seed=seed), per_prompt,
                          expected_source, baseline, correct)
