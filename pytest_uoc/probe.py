"""One concept's probe: runs sweeps and scores them, computing every image once.

The seeds are split in two halves: the first half's λO (ψ = 1) and λU (ψ = 0)
images train the domain classifier, the second half's images are what every
score is computed on (CCS, CRS, the held-out accuracy), so the classifier is
never scored on the noise it was trained on. Images are cached by hand-off
step: two ψ that hand over at the same step share their images, and a ψ asked
for twice (by several assertions or hypothesis examples) is computed once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .concept import Concept
from .diffusion import PartialDiffusion
from .diffusion.schedule import check_psi

__all__ = ["Probe", "ProbeSettings", "Threshold", "find_retrieval_threshold"]


@dataclass(frozen=True)
class ProbeSettings:
    """What a probe needs to know besides its models and concept."""

    seeds: tuple[int, ...] = tuple(range(32))
    psis: tuple[float, ...] = (0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.75)
    backbone: str = "resnet18"
    backbone_weights: str | None = None
    accuracy_floor: float = 0.75
    classifier_cache: str | None = None
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.seeds) < 4:
            raise ValueError(f"a probe needs at least 4 seeds (half train the classifier), got {len(self.seeds)}")


@dataclass
class Cost:
    """What the probe spent: sweeps run, UNet evaluations, seconds by phase."""

    sweeps: int = 0
    unet_evals: int = 0
    unlearned_unet_evals: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def to_dict(self) -> dict[str, Any]:
        return {"sweeps": self.sweeps, "unet_evals": self.unet_evals,
                "unlearned_unet_evals": self.unlearned_unet_evals,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "total_seconds": round(sum(self.seconds.values()), 3)}


class _ImageCache:
    """Images of one engine, prompt list and seed list, keyed by hand-off step."""

    def __init__(self, engine: PartialDiffusion, prompts: Sequence[str], seeds: Sequence[int], cost: Cost, phase: str):
        self.engine, self.prompts, self.seeds = engine, list(prompts), list(seeds)
        self.cost, self.phase = cost, phase
        self.by_handoff: dict[int, torch.Tensor] = {}

    def get(self, psis: Iterable[float]) -> dict[float, torch.Tensor]:
        wanted = {check_psi(p): self.engine.steps_for(p).handoff for p in psis}
        missing: dict[int, float] = {}
        for psi, handoff in wanted.items():
            if handoff not in self.by_handoff:
                missing.setdefault(handoff, psi)
        if missing:
            start = time.perf_counter()
            sweep = self.engine.sweep(self.prompts, list(missing.values()), self.seeds)
            for handoff, psi in missing.items():
                self.by_handoff[handoff] = sweep.images[psi]
            self.cost.sweeps += 1
            self.cost.unet_evals += sweep.unet_evals
            self.cost.unlearned_unet_evals += sweep.unlearned_unet_evals
            self.cost.add(self.phase, time.perf_counter() - start)
        return {psi: self.by_handoff[handoff] for psi, handoff in wanted.items()}


class Probe:
    """Partial-diffusion evidence about one concept for one pair of models.

    ``engine`` runs original → unlearned; ``reference_engine`` (optional) runs
    original → gold-standard model, for the concealment gap.
    """

    def __init__(
        self,
        concept: Concept,
        engine: PartialDiffusion,
        settings: ProbeSettings | None = None,
        *,
        reference_engine: PartialDiffusion | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.concept = concept
        self.engine = engine
        self.reference_engine = reference_engine
        self.settings = settings or ProbeSettings()
        self.labels = dict(labels or {})
        seeds = list(self.settings.seeds)
        half = len(seeds) // 2
        self.train_seeds, self.eval_seeds = seeds[:half], seeds[half:]
        self.cost = Cost()
        prompts = list(concept.prompts)
        self._eval = _ImageCache(engine, prompts, self.eval_seeds, self.cost, "sweeps")
        self._train = _ImageCache(engine, prompts, self.train_seeds, self.cost, "classifier images")
        self._reference = (
            _ImageCache(reference_engine, prompts, self.eval_seeds, self.cost, "reference sweeps")
            if reference_engine is not None else None
        )
        self._retain: dict[tuple[str, ...], _ImageCache] = {}
        self._classifier: Any = None
        self._heldout: float | None = None
        self._curves: dict[float, Any] = {}

    # -- images -----------------------------------------------------------------------

    def images(self, psis: Iterable[float]) -> dict[float, torch.Tensor]:
        """λP(ψ) images of the scoring seeds (prompt-major, seed-minor)."""
        return self._eval.get(psis)

    @property
    def original_images(self) -> torch.Tensor:
        """λO of the scoring seeds (the original model alone, ψ = 1)."""
        return self.images([1.0])[1.0]

    @property
    def unlearned_images(self) -> torch.Tensor:
        """λU of the scoring seeds (the unlearned model alone, ψ = 0)."""
        return self.images([0.0])[0.0]

    # -- classifier ---------------------------------------------------------------------

    @property
    def classifier(self) -> Any:
        """The domain classifier (λO = 1, λU = 0) trained on the training seeds."""
        if self._classifier is None:
            from .scoring import check_images, train_domain_classifier

            train = self._train.get([0.0, 1.0])
            for name, imgs in (("unlearned model's images", train[0.0]), ("original model's images", train[1.0])):
                check_images(imgs, name=name)
            start = time.perf_counter()
            groups = [s for _ in self.concept.prompts for s in self.train_seeds]
            self._classifier = train_domain_classifier(
                train[1.0], train[0.0], groups=groups, backbone=self.settings.backbone,
                pretrained_path=self.settings.backbone_weights, seed=self.settings.seed,
                cache_dir=self.settings.classifier_cache,
            )
            self.cost.add("classifier", time.perf_counter() - start)
        return self._classifier

    @property
    def heldout_accuracy(self) -> float:
        """Accuracy of the classifier on the scoring seeds' λO and λU (never trained on)."""
        if self._heldout is None:
            clf = self.classifier
            p_original = clf.probabilities(self.original_images)
            p_unlearned = clf.probabilities(self.unlearned_images)
            correct = (p_original > 0.5).sum() + (p_unlearned <= 0.5).sum()
            self._heldout = float(correct) / float(len(p_original) + len(p_unlearned))
        return self._heldout

    # -- scores -------------------------------------------------------------------------

    def ccs_curve(self, psis: Iterable[float] | None = None) -> Any:
        """CCS(ψ) with bootstrap 95% intervals."""
        from .scoring import ccs_curve

        wanted = [check_psi(p) for p in (psis if psis is not None else self.settings.psis)]
        missing = [p for p in wanted if p not in self._curves]
        if missing:
            images = self.images(missing)
            for name, imgs in images.items():
                from .scoring import check_images

                check_images(imgs, name=f"partial-diffusion images at psi={name}")
            curve = ccs_curve(self.classifier, images, n_boot=self.settings.n_boot, seed=self.settings.seed)
            for p in missing:
                self._curves[p] = curve.at(p)
        from .scoring.ccs import CCSCurve

        return CCSCurve.from_estimates({p: self._curves[p] for p in wanted},
                                       probabilities=self._probabilities(wanted))

    def _probabilities(self, psis: Sequence[float]) -> dict[float, torch.Tensor]:
        if not hasattr(self, "_probs"):
            self._probs: dict[float, torch.Tensor] = {}
        missing = [p for p in psis if p not in self._probs]
        if missing:
            images = self.images(missing)
            for p in missing:
                self._probs[p] = self.classifier.probabilities(images[p])
        return {p: self._probs[p] for p in psis}

    def ccs(self, psi: float) -> Any:
        """CCS at one ψ."""
        return self.ccs_curve([psi]).at(check_psi(psi))

    def crs(self, psis: Iterable[float] | None = None, kind: str = "forget") -> Any:
        """The paper-compatible Concept Retrieval Score over ``psis`` (default: the grid without 0 and 1)."""
        from .scoring import crs_paper

        grid = [p for p in (psis if psis is not None else self.settings.psis) if 0 < p < 1]
        if not grid:
            raise ValueError("CRS needs at least one psi strictly between 0 and 1")
        return crs_paper(self.classifier, self.images(grid), self.original_images, self.unlearned_images, kind=kind)

    def verdict(self, psi_limit: float, ccs_max: float) -> Any:
        """The verdict on this concept at ``psi_limit`` (see ``scoring.verdict.decide``)."""
        from .scoring import decide

        limit = check_psi(psi_limit, name="psi")
        curve = self.ccs_curve(self.verdict_grid(limit))
        differ = self._images_differ()
        return decide(curve, psi_limit=limit, ccs_max=ccs_max, heldout_accuracy=self.heldout_accuracy,
                      accuracy_floor=self.settings.accuracy_floor, images_differ=differ)

    def verdict_grid(self, psi_limit: float) -> list[float]:
        """The ψ values a verdict at ``psi_limit`` looks at: the grid up to the limit, 0 and the limit."""
        limit = check_psi(psi_limit, name="psi")
        return sorted({p for p in self.settings.psis if p <= limit} | {0.0, limit})

    def _images_differ(self, tolerance: float = 0.02) -> bool:
        """Whether λU differs visibly from λO (mean absolute pixel difference above ``tolerance``)."""
        return bool((self.original_images - self.unlearned_images).abs().mean() > tolerance)

    def retention(self, prompts: Sequence[str] | None = None, *, distance: str = "auto", lpips_path: str | None = None) -> Any:
        """Distance between original and unlearned images of retain prompts (same prompt, same seed)."""
        from .scoring import retention

        chosen = tuple(prompts) if prompts is not None else self.concept.retain
        if not chosen:
            raise ValueError(
                f"concept {self.concept.name!r} has no retain prompts: give retain=[...] to uoc_concept or prompts= here"
            )
        cache = self._retain.get(chosen)
        if cache is None:
            cache = self._retain[chosen] = _ImageCache(self.engine, chosen, self.eval_seeds, self.cost, "retain sweeps")
        images = cache.get([0.0, 1.0])
        return retention(images[1.0], images[0.0], distance=distance,
                         classifier=self._classifier if distance == "features" else None,
                         lpips_path=lpips_path, n_boot=self.settings.n_boot, seed=self.settings.seed)

    def concealment_gap(self, psis: Iterable[float] | None = None) -> Any:
        """CCS(unlearned) − CCS(reference) per ψ, paired by prompt and seed."""
        from .scoring import concealment_gap

        if self._reference is None:
            raise ValueError("the concealment gap needs a reference (gold-standard) model: give --uoc-reference")
        grid = [check_psi(p) for p in (psis if psis is not None else self.settings.psis)]
        return concealment_gap(self.classifier, self.images(grid), self._reference.get(grid),
                               n_boot=self.settings.n_boot, seed=self.settings.seed)

    def summary(self) -> dict[str, Any]:
        """Everything computed so far, for reports."""
        out: dict[str, Any] = {
            "concept": self.concept.to_dict(), "labels": self.labels,
            "seeds": {"train": self.train_seeds, "eval": self.eval_seeds},
            "cost": self.cost.to_dict(),
        }
        if self._classifier is not None:
            out["classifier"] = {"backbone": self.settings.backbone, "heldout_accuracy": self.heldout_accuracy}
        if self._curves:
            out["ccs"] = {str(p): est.to_dict() for p, est in sorted(self._curves.items())}
        return out


@dataclass(frozen=True)
class Threshold:
    """The smallest ψ found to retrieve the concept, and what the search cost."""

    psi: float | None
    ccs_max: float
    tolerance: float
    evaluated: dict[float, float]
    sweeps: int

    def __str__(self) -> str:
        found = "never retrieved up to psi=1" if self.psi is None else f"psi={self.psi:.3f}"
        return f"retrieval threshold {found} (CCS > {self.ccs_max}; {len(self.evaluated)} psi values, {self.sweeps} sweeps)"


def find_retrieval_threshold(probe: Probe, ccs_max: float, tolerance: float = 0.02) -> Threshold:
    """Bisect for the smallest ψ whose mean CCS exceeds ``ccs_max``.

    Assumes CCS grows with ψ (more of the drawing comes from the original).
    ψ values handing over at the same step share images, so the search costs
    at most one sweep per distinct hand-off step it visits.
    """
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if not 0 <= ccs_max <= 1:
        raise ValueError(f"ccs_max must be in [0, 1], got {ccs_max!r}")
    sweeps_before = probe.cost.sweeps
    evaluated: dict[float, float] = {}

    def retrieved(psi: float) -> bool:
        evaluated[psi] = float(probe.ccs(psi).mean)
        return evaluated[psi] > ccs_max

    if retrieved(0.0):
        return Threshold(0.0, ccs_max, tolerance, evaluated, probe.cost.sweeps - sweeps_before)
    if not retrieved(1.0):
        return Threshold(None, ccs_max, tolerance, evaluated, probe.cost.sweeps - sweeps_before)
    low, high = 0.0, 1.0
    while high - low > tolerance:
        middle = round((low + high) / 2, 6)
        if retrieved(middle):
            high = middle
        else:
            low = middle
    return Threshold(high, ccs_max, tolerance, evaluated, probe.cost.sweeps - sweeps_before)
