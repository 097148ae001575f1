"""pytest-uoc: does a diffusion model truly unlearn a concept, or only conceal it?

Partial diffusion (the original model draws the first part, the unlearned
model finishes) exposes concepts that an unlearned model still holds; the
assertions here turn that attack and its scores (CCS, CRS, retention) into
pytest gates. Importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .assertions import (
    assert_aligned,
    assert_concept_erased,
    assert_concept_not_retrievable,
    assert_no_concealment_gap,
    assert_no_leakage,
    assert_pinpoint,
    assert_retained,
)

__all__ = ["Concept", "assert_aligned", "assert_concept_erased", "assert_concept_not_retrievable",
           "assert_no_concealment_gap", "assert_no_leakage", "assert_pinpoint", "assert_retained",
           "find_retrieval_threshold", "zoo_digit_judge"]

from .concept import Concept


def __getattr__(name: str) -> Any:
    if name == "find_retrieval_threshold":
        from .probe import find_retrieval_threshold

        return find_retrieval_threshold
    if name == "zoo_digit_judge":
        from .judges import zoo_digit_judge

        return zoo_digit_judge
    if name in ("Probe", "ProbeSettings"):
        from . import probe

        return getattr(probe, name)
    raise AttributeError(f"module 'pytest_uoc' has no attribute {name!r}")
