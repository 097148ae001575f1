"""Concept Retrieval Score, exactly as the paper's reference code computes it.

Features ``f`` are the domain classifier's penultimate outputs, L2-normalised.
Two images score ``s(a, b) = (1 - arctan(cos(f(a), f(b)))) / (π/2)``.
``S_O(ψ)`` is the mean of ``s`` over all pairs (λP(ψ) image, λO image) and
``S_U(ψ)`` the same against λU. The paper's CRS for a forget concept is the
mean over ψ of ``|S_U(ψ) - S_O(ψ)|``; for a retain concept ``1 -`` that.

Read the direction with care. ``s`` *decreases* as the cosine grows: it is a
dissimilarity despite its name (cos = 1 gives 0.137, cos = 0 gives 0.637,
cos = -1 gives 1.137). So:

* ``S_U(ψ) - S_O(ψ) > 0``: λP(ψ) is closer to λO than to λU (the original
  concept is coming back); ``< 0``: closer to λU (the unlearned look wins).
* ``|S_U - S_O|`` is large whenever λP sits clearly on *either* side and small
  when λP sits between the two domains (or the features cannot tell them
  apart). The absolute value discards which side, so the paper's CRS alone
  cannot distinguish "looks unlearned" from "concept retrieved"; read the
  signed per-ψ values (``CRSResult.signed``) or CCS for the direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from .ccs import _check_psi, find_psi
from .images import check_images, float_batches

__all__ = ["CRSResult", "FeatureModel", "crs_paper", "crs_similarity"]

_KINDS = ("forget", "retain")


class FeatureModel(Protocol):
    """Anything with ``features(images) -> Tensor[N, D]`` (a DomainClassifier, or a fake)."""

    def features(self, images: torch.Tensor) -> torch.Tensor: ...


def crs_similarity(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Pairwise paper similarity ``(1 - arctan(cos)) / (π/2)`` between rows of ``fa`` and ``fb``.

    Returns a float64 matrix [len(fa), len(fb)]. Rows are L2-normalised here,
    so raw features may be passed. Lower values mean *more* similar features.
    """
    a, b = torch.as_tensor(fa).double(), torch.as_tensor(fb).double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features must be 2-D [N, D] with the same D, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("features contain NaN or inf")
    cosine = (F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).clamp(-1.0, 1.0)
    return (1.0 - torch.atan(cosine)) / (math.pi / 2)


@dataclass(frozen=True)
class CRSResult:
    """The paper's CRS and its per-ψ parts.

    ``per_psi[ψ] = (S_O, S_U, |S_U - S_O|)``; ``value`` is the mean of the third
    entry over ψ (``kind="forget"``) or one minus it (``kind="retain"``).
    ``signed[ψ] = S_U - S_O`` is the per-ψ variant that keeps the direction:
    positive means λP(ψ) is closer to λO (the concept is retrieved).
    """

    value: float
    per_psi: dict[float, tuple[float, float, float]] = field(compare=True)
    kind: str = "forget"

    @property
    def signed(self) -> dict[float, float]:
        """Per-ψ ``S_U - S_O``: > 0 when λP(ψ) is closer to the original domain λO."""
        return {psi: s_u - s_o for psi, (s_o, s_u, _) in self.per_psi.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "kind": self.kind,
            "value": self.value,
            "definition": "paper-compatible CRS (arXiv 2409.05668 reference code)",
            "per_psi": [
                {"psi": psi, "S_O": s_o, "S_U": s_u, "abs_diff": d, "signed": s_u - s_o}
                for psi, (s_o, s_u, d) in self.per_psi.items()
            ],
        }


def _features(classifier: FeatureModel, images: torch.Tensor, name: str) -> torch.Tensor:
    checked = check_images(images, name=name)
    features = torch.cat([torch.as_tensor(classifier.features(batch)).detach().cpu()
                          for batch in float_batches(checked)])
    if features.ndim != 2 or features.shape[0] != checked.shape[0]:
        raise ValueError(
            f"the classifier returned features of shape {tuple(features.shape)} for {checked.shape[0]} images"
        )
    return features


def crs_paper(
    classifier: FeatureModel,
    images_by_psi: Mapping[float, torch.Tensor],
    original_images: torch.Tensor,
    unlearned_images: torch.Tensor,
    *,
    kind: str = "forget",
) -> CRSResult:
    """Paper-compatible Concept Retrieval Score over the ψ values given.

    ``kind="forget"``: mean over ψ of ``|S_U(ψ) - S_O(ψ)|``; ``kind="retain"``:
    one minus that. See the module docstring for what each direction means:
    a *small* ``|S_U - S_O|`` means λP sits between the domains, not that it is
    close to λU. To reproduce the paper's number pass its ψ grid
    (``PAPER_PSI_GRID``).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if not images_by_psi:
        raise ValueError("images_by_psi is empty: CRS needs images for at least one ψ")
    f_orig = _features(classifier, original_images, "original_images")
    f_unl = _features(classifier, unlearned_images, "unlearned_images")
    per_psi: dict[float, tuple[float, float, float]] = {}
    for key in sorted(images_by_psi):
        psi = _check_psi(key)
        if find_psi(per_psi, psi) is not None:
            raise ValueError(f"ψ={psi} appears twice in images_by_psi")
        f_p = _features(classifier, images_by_psi[key], f"images at ψ={psi}")
        s_o = float(crs_similarity(f_p, f_orig).mean())
        s_u = float(crs_similarity(f_p, f_unl).mean())
        per_psi[psi] = (s_o, s_u, abs(s_u - s_o))
    mean_diff = sum(d for _, _, d in per_psi.values()) / len(per_psi)
    value = mean_diff if kind == "forget" else 1.0 - mean_diff
    return CRSResult(value=value, per_psi=per_psi, kind=kind)
