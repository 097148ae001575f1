"""The probe's image bank: every image a probe makes and every per-image score of them, each computed once.

Images are keyed by what made them:

- a *sweep* of a source on the scoring seeds: "unlearned" (λP(ψ): the original hands over to the
  unlearned model), "upper" and "lower" (the calibration nulls, ``diffusion.NullFinish``), "reference"
  (the original hands over to the gold standard);
- the training seeds' sweeps ("unlearned", and the "lower" null the concept classifier trains on);
- any prompt list's sweeps (retain prompts, paraphrases, neighbours), by the unlearned or the reference engine;
- restorations of reference images (``diffusion.restore``) by the unlearned model or a null.

Within a sweep, images are keyed by hand-off step: two ψ that hand over at the same step share their
images. Per-image values (the domain classifier's P(original domain), whether an image shows the
concept) are keyed by the images they score (:data:`ImageKey`), so images shared between two ψ, or
between the ψ = 0 sweep and a restoration at strength 1 (generation from noise), are scored once.
The bank also holds what the probe trains on these images (the two classifiers, the held-out accuracy)
and the CCS intervals it bootstrapped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import progress
from .diffusion import PartialDiffusion
from .diffusion.engine import NullFinish
from .pixels import float_images
from .units import check_psi

if TYPE_CHECKING:
    from .scoring import Estimate
    from .scoring.ccs import ProbabilityModel

__all__ = ["KINDS", "SOURCES", "Cost", "ImageBank", "ImageKey", "ImageSet", "ReferenceImages"]

#: The sweeps on the scoring seeds: the model under test, the two calibration nulls, the gold standard.
SOURCES = ("unlearned", "upper", "lower", "reference")
#: What a per-image value is: the domain classifier's P(original domain), or whether the image shows the concept.
KINDS = ("domain", "concept")
#: The images a per-image value scores: (image set, hand-off or start step).
ImageKey = tuple[str, int]
#: What a restoration starts from: None (the original's images), a tensor N×3×H×W in [0, 1], or image files.
ReferenceImages = torch.Tensor | Sequence[str | Path] | None


@dataclass
class Cost:
    """What the probe spent: sweeps run, UNet evaluations, seconds by phase."""

    sweeps: int = 0
    unet_evals: int = 0
    unlearned_unet_evals: int = 0
    #: Evaluations of the original finishing hand-offs for the calibration nulls (0 when cached).
    null_unet_evals: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    #: Bytes of the decoded images the probe keeps (uint8: 1 byte per pixel channel).
    kept_image_bytes: int = 0

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def to_dict(self) -> dict[str, Any]:
        from .memory import peak_gpu_bytes, peak_host_bytes

        return {"sweeps": self.sweeps, "unet_evals": self.unet_evals,
                "unlearned_unet_evals": self.unlearned_unet_evals, "null_unet_evals": self.null_unet_evals,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "total_seconds": round(sum(self.seconds.values()), 3),
                "kept_image_bytes": self.kept_image_bytes, "peak_host_memory_bytes": peak_host_bytes(),
                "peak_gpu_memory_bytes": peak_gpu_bytes()}

    def count(self, phase: str, start: float, unet_evals: int, *, unlearned: int = 0, null: int = 0) -> None:
        """Book one sweep or restoration begun at ``start`` (``time.perf_counter()``)."""
        self.sweeps += 1
        self.unet_evals += unet_evals
        self.unlearned_unet_evals += unlearned
        self.null_unet_evals += null
        self.add(phase, time.perf_counter() - start)


class ImageSet:
    """Images of one engine, prompt list and seed list, keyed by hand-off step."""

    def __init__(self, engine: PartialDiffusion, prompts: Sequence[str], seeds: Sequence[int], cost: Cost, phase: str,
                 *, unlearned_cost: bool = True, null: NullFinish | None = None):
        self.engine, self.prompts, self.seeds = engine, list(prompts), list(seeds)
        self.cost, self.phase = cost, phase
        #: A null finish: the original finishes the hand-offs (see ``NullFinish``).
        self.null = null
        # A reference engine's second model is the gold standard, not the model under test.
        self.unlearned_cost = unlearned_cost
        self.by_handoff: dict[int, torch.Tensor] = {}

    def step(self, psi: float) -> int:
        """The hand-off step of ``psi``: what the images at ``psi`` are keyed by."""
        return self.engine.steps_for(psi).handoff

    def get(self, psis: Iterable[float]) -> dict[float, torch.Tensor]:
        """The images at each ψ, sweeping once for every hand-off step not made yet."""
        wanted = {check_psi(p): self.step(p) for p in psis}
        missing: dict[int, float] = {}
        for psi, handoff in wanted.items():
            if handoff not in self.by_handoff:
                missing.setdefault(handoff, psi)
        if missing:
            start = time.perf_counter()
            with progress.phase(self.phase):
                sweep = self.engine.sweep(self.prompts, list(missing.values()), self.seeds, null=self.null)
            for handoff, psi in missing.items():
                self.by_handoff[handoff] = sweep.images[psi]
                self.cost.kept_image_bytes += sweep.images[psi].nbytes
            self.cost.count(self.phase, start, sweep.unet_evals, null=sweep.null_unet_evals,
                            unlearned=sweep.unlearned_unet_evals if self.unlearned_cost else 0)
        return {psi: self.by_handoff[handoff] for psi, handoff in wanted.items()}


class ImageBank:
    """Every image of one probe and every per-image value of them; see the module docstring.

    ``engine`` runs original → unlearned, ``reference_engine`` (optional) original → gold standard.
    ``prompts`` are the concept's prompts, ``anchors`` their anchors (the nulls' prompts).
    """

    def __init__(self, engine: PartialDiffusion, prompts: Sequence[str], train_seeds: Sequence[int],
                 eval_seeds: Sequence[int], anchors: Sequence[str], cost: Cost, *,
                 reference_engine: PartialDiffusion | None = None) -> None:
        self.engine, self.reference_engine, self.cost = engine, reference_engine, cost
        self.prompts, self.train_seeds, self.eval_seeds = list(prompts), list(train_seeds), list(eval_seeds)
        nulls = {finish.name: finish for finish in (NullFinish(tuple(anchors), "empty"),
                                                    NullFinish(tuple(anchors), "concept"))}
        #: The scoring seeds' sweeps by source (``SOURCES``; "reference" only with a reference engine).
        self.sweeps: dict[str, ImageSet] = {"unlearned": ImageSet(engine, prompts, eval_seeds, cost, "sweeps")}
        for name, finish in nulls.items():
            self.sweeps[name] = ImageSet(engine, prompts, eval_seeds, cost, "null finishes", unlearned_cost=False,
                                         null=finish)
        if reference_engine is not None:
            self.sweeps["reference"] = ImageSet(reference_engine, prompts, eval_seeds, cost, "reference sweeps",
                                                unlearned_cost=False)
        #: The training seeds' sweeps: "unlearned" (λO, λU) and the "lower" null.
        self.training: dict[str, ImageSet] = {
            "unlearned": ImageSet(engine, prompts, train_seeds, cost, "classifier images"),
            "lower": ImageSet(engine, prompts, train_seeds, cost, "null finishes", unlearned_cost=False,
                              null=nulls["lower"]),
        }
        self._prompt_sets: dict[tuple[bool, tuple[str, ...]], ImageSet] = {}
        self._references: dict[str, torch.Tensor] = {}
        self._restored: dict[tuple[str, int], torch.Tensor] = {}
        self._values: dict[str, dict[ImageKey, torch.Tensor]] = {kind: {} for kind in KINDS}
        #: The domain classifier (λO = 1, λU = 0), its held-out accuracy, and the concept classifier, once trained.
        self.classifier: ProbabilityModel | None = None
        self.heldout: float | None = None
        self.concept_classifier: ProbabilityModel | None = None
        #: CCS(ψ) intervals bootstrapped so far (the report's ``ccs``).
        self.ccs_estimates: dict[float, Estimate] = {}

    # -- images -----------------------------------------------------------------------------------

    @property
    def nulls(self) -> tuple[str, ...]:
        """The calibration nulls' names, sorted: ("lower", "upper")."""
        return tuple(sorted(s for s in self.sweeps if s not in ("unlearned", "reference")))

    def sweep_set(self, source: str) -> ImageSet:
        """The scoring seeds' sweeps of ``source`` (``SOURCES``)."""
        if source == "reference" and "reference" not in self.sweeps:
            raise ValueError("no reference (gold-standard) model: give --uoc-reference")
        if source not in self.sweeps:
            raise ValueError(f"which must be one of {list(self.nulls)}, got {source!r}")
        return self.sweeps[source]

    def sweep(self, psis: Iterable[float], source: str = "unlearned") -> dict[float, torch.Tensor]:
        """Images of the scoring seeds at each ψ from ``source`` (prompt-major, seed-minor)."""
        return self.sweep_set(source).get(psis)

    def prompt_set(self, prompts: tuple[str, ...], *, reference: bool = False, phase: str = "prompt sweeps") -> ImageSet:
        """The sweeps of any prompt list on the scoring seeds; ``phase`` books the first one's cost."""
        if reference and self.reference_engine is None:
            raise ValueError("no reference (gold-standard) model: give --uoc-reference")
        key = (reference, prompts)
        if key not in self._prompt_sets:
            if reference:
                self._prompt_sets[key] = ImageSet(self.reference_engine, prompts, self.eval_seeds, self.cost,
                                                  "reference sweeps", unlearned_cost=False)
            else:
                self._prompt_sets[key] = ImageSet(self.engine, prompts, self.eval_seeds, self.cost, phase)
        return self._prompt_sets[key]

    def references(self, reference_images: ReferenceImages = None) -> tuple[str, torch.Tensor]:
        """The images a restoration starts from, one per (prompt, scoring seed), and their key.

        None: λO of the scoring seeds, each item given the image of the *next* seed of its
        prompt (the restoring noise is independent of the reference's). Given images (a
        tensor N×3×H×W in [0, 1], or image files) are used in turn: item ``i`` gets image ``i % N``.
        """
        n_seeds = len(self.eval_seeds)
        n_items = len(self.prompts) * n_seeds
        if reference_images is None:
            if "original" not in self._references:
                order = [p * n_seeds + (j + 1) % n_seeds for p in range(len(self.prompts)) for j in range(n_seeds)]
                self._references["original"] = self.sweep([1.0])[1.0][order]
            return "original", self._references["original"]
        if isinstance(reference_images, torch.Tensor):
            images = float_images(reference_images.detach().cpu())
        else:
            from .diffusion.restore import load_reference_images

            images = load_reference_images(reference_images, self.engine.height, self.engine.width)
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"reference_images must be N×3×H×W with N ≥ 1, got shape {tuple(images.shape)}")
        key = "user:" + hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest()
        if key not in self._references:
            self._references[key] = images[[i % images.shape[0] for i in range(n_items)]]
        return key, self._references[key]

    def restore_starts(self, strengths: Iterable[float]) -> dict[float, int]:
        """Each strength's start step (strengths with the same start share their restorations)."""
        from .diffusion.restore import check_strength, restore_start

        return {check_strength(s): restore_start(self.engine, s) for s in strengths}

    def restored(self, strengths: Iterable[float], *, reference_images: ReferenceImages = None,
                 source: str = "unlearned") -> dict[float, torch.Tensor]:
        """Restorations of the reference images at each strength by ``source`` (see ``Probe.restore_images``)."""
        if source != "unlearned" and source not in self.nulls:
            raise ValueError(f"source must be 'unlearned', 'upper' or 'lower', got {source!r}")
        wanted = self.restore_starts(strengths)
        if not wanted:
            raise ValueError("strengths must not be empty: give at least one strength")
        key, references = self.references(reference_images)
        slot = key if source == "unlearned" else f"{key}:{source}"
        missing: dict[int, float] = {}
        for strength, start in wanted.items():
            if start > 0 and (slot, start) not in self._restored:
                missing.setdefault(start, strength)
        if missing:
            from .diffusion.restore import restore

            begin = time.perf_counter()
            null = None if source == "unlearned" else self.sweeps[source].null
            result = restore(self.engine, references, self.prompts, list(missing.values()), self.eval_seeds, null=null)
            for start, strength in missing.items():
                self._restored[(slot, start)] = result[strength]
                self.cost.kept_image_bytes += result[strength].nbytes
            self.cost.count("restore" if null is None else "null finishes", begin, result.unet_evals,
                            unlearned=result.unet_evals if null is None else 0,
                            null=0 if null is None else result.unet_evals)
        from_noise = self.sweep([0.0], source)[0.0]  # strength 1: generation from noise, the ψ = 0 images
        return {s: from_noise if start == 0 else self._restored[(slot, start)] for s, start in wanted.items()}

    # -- per-image values ---------------------------------------------------------------------------

    def sweep_keys(self, psis: Iterable[float], source: str = "unlearned") -> dict[float, ImageKey]:
        """The images ``source``'s sweep holds at each ψ, as value keys."""
        points = [check_psi(p) for p in psis]
        images = self.sweep_set(source)
        return {p: (source, images.step(p)) for p in points}

    def restore_keys(self, strengths: Iterable[float], *, reference_images: ReferenceImages = None,
                     source: str = "unlearned") -> dict[float, ImageKey]:
        """The restorations at each strength, as value keys; strength 1 (start 0) is the ψ = 0 sweep's images."""
        key, _ = self.references(reference_images)
        zero = self.sweep_keys([0.0], source)[0.0]
        return {s: zero if start == 0 else (f"restore:{key}:{source}", start)
                for s, start in self.restore_starts(strengths).items()}

    def values(self, kind: str, keys: Mapping[float, ImageKey],
               images: Callable[[list[float]], Mapping[float, torch.Tensor]],
               score: Callable[[torch.Tensor, float], torch.Tensor]) -> dict[float, torch.Tensor]:
        """Per-image values of ``kind`` at each point of ``keys``, each set of images scored once.

        ``images(points)`` makes the images of the points not scored yet (one call, so one
        sweep); ``score(images, point)`` scores one point's images.
        """
        memo = self._values[kind]
        missing = [p for p, key in keys.items() if key not in memo]
        if missing:
            made = images(missing)
            for p in missing:
                if keys[p] not in memo:
                    memo[keys[p]] = score(made[p], p)
        return {p: memo[key] for p, key in keys.items()}

    def forget(self, kind: str) -> None:
        """Drop every value of ``kind`` (the concept's scorer changed)."""
        self._values[kind].clear()

    def share(self, other: ImageBank, *, reference: bool = True) -> None:
        """Use ``other``'s images, domain classifier and domain scores (same engine, prompts and seeds).

        For a second probe of the same models that only decides differently (another judge
        or rule); the concept values stay this bank's own. ``reference=False`` keeps this
        bank without a gold standard.
        """
        self.sweeps = {s: images for s, images in other.sweeps.items() if reference or s != "reference"}
        self.reference_engine = other.reference_engine if reference else None
        self.training, self._prompt_sets = other.training, other._prompt_sets
        self._references, self._restored = other._references, other._restored
        self._values["domain"] = other._values["domain"]
        self.classifier = other.classifier
