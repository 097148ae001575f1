"""The partial-diffusion engine.

``PartialDiffusion`` runs the original model for the steps with ``t >= c`` and
the unlearned model for the rest, exactly as a plain diffusers pipeline call
whose ``callback_on_step_end`` swaps ``pipe.unet`` at the cutoff would
(docs/definitions.md). ``sweep`` shares the original's trajectory between all ψ: it runs
the original once per image up to the largest ψ and branches every ψ from its
cutoff, carrying the scheduler and generator state so stochastic schedulers
stay exact. Each image has its own CPU generator seeded with its seed, so no
image depends on how images were batched.

The steps themselves (start from noise, denoise one step with classifier-free
guidance, decode) are the engine's ``Sampler`` (``sampler.py``), which
restoration uses too; what is kept between runs (the original's states at each
hand-off, finished images) is behind the engine's ``SweepStore`` (``store.py``).
A sweep per batch: take what the store has, walk the original from the latest
kept state (or from noise) forking a branch at every hand-off, finish each
branch with the unlearned model, decode, and give the store what it lacked.

Model families (``families.py``): SD 1.x/2.x, SDXL, SD3 and Flux run through
the same loop; prompt encoding, the denoiser's call, the schedule, latent
packing and decoding come from the family's adapter, detected from the
pipeline. ψ means the same on every family: the original runs the scheduled
steps with ``t >= c = round(N * (1 - ψ))``. On flow-matching schedules (SD3,
Flux) the timesteps are ``t = σ·N`` (N = ``num_train_timesteps`` = 1000), so
the original denoises while the noise level ``σ >= 1 - ψ``.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import progress
from ..units import check_psi, check_psis
from .families import Family, check_family_pipeline, family_of
from .loading import check_pipeline, load_unlearned
from .sampler import GuidedModel, Sampler, Trajectory, chunks
from .schedule import StepSplit, split_steps
from .store import Named, SweepStore

__all__ = [
    "NULL_NEGATIVES", "Images", "NullFinish", "PartialDiffusion", "Sweep", "check_anchors", "check_prompts",
    "check_seeds",
]

#: Accepted values of ``NullFinish.negative``: what the original's unconditional side is.
NULL_NEGATIVES = ("empty", "concept")


@dataclass(frozen=True)
class NullFinish:
    """The original finishing each hand-off without being asked for the concept (a calibration null).

    ``anchors`` holds one prompt per concept prompt (the prompt with the concept's
    words removed); the original denoises the steps after the hand-off with the anchor
    as its conditional prompt and, as its unconditional prompt, the empty prompt
    (``negative="empty"``, the *upper* null) or the concept prompt itself
    (``negative="concept"``, the *lower* null: guidance pushes away from the concept).
    """

    anchors: tuple[str, ...]
    negative: str = "empty"

    def __post_init__(self) -> None:
        if self.negative not in NULL_NEGATIVES:
            raise ValueError(f"NullFinish.negative must be one of {NULL_NEGATIVES}, got {self.negative!r}")
        if not self.anchors or not all(isinstance(a, str) for a in self.anchors):
            raise TypeError(f"NullFinish.anchors must be a non-empty tuple of strings, got {self.anchors!r}")

    @property
    def name(self) -> str:
        """``upper`` (anchor, empty negative) or ``lower`` (anchor, concept as negative)."""
        return "upper" if self.negative == "empty" else "lower"


def check_prompts(prompts: object) -> list[str]:
    """Return ``prompts`` as a non-empty list of strings, or raise."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, Iterable):
        raise TypeError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    items = list(prompts)
    if not items:
        raise ValueError("prompts must not be empty: give at least one prompt")
    bad = [p for p in items if not isinstance(p, str)]
    if bad:
        raise TypeError(f"every prompt must be a string, got {bad[0]!r} ({type(bad[0]).__name__})")
    return items


def check_seeds(seeds: object) -> list[int]:
    """Return ``seeds`` as a non-empty list of non-negative integers, or raise."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, Iterable) or isinstance(seeds, str | bytes):
        raise TypeError(f"seeds must be a list of non-negative integers, got {seeds!r}")
    items = list(seeds)
    if not items:
        raise ValueError("seeds must not be empty: give at least one seed")
    out = []
    for seed in items:
        if isinstance(seed, bool) or not hasattr(seed, "__index__"):
            raise TypeError(f"every seed must be a non-negative integer, got {seed!r}")
        value = int(seed.__index__())
        if value < 0 or value >= 2**63:
            raise ValueError(f"every seed must be a non-negative integer below 2**63, got {seed!r}")
        out.append(value)
    return out


@dataclass
class Images:
    """Images for one ψ: ``images`` is N×C×H×W in [0, 1], prompt-major, seed-minor."""

    images: torch.Tensor
    prompts: list[str]
    seeds: list[int]
    psi: float
    unet_evals: int
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Sweep:
    """Images for every ψ of a sweep, and what they cost.

    ``unet_evals`` counts guided denoising evaluations per image (the
    conditional and unconditional halves of classifier-free guidance count
    as one, since they go in one UNet call); ``naive_unet_evals`` is what one
    full generation per ψ would have cost.
    """

    psis: list[float]
    prompts: list[str]
    seeds: list[int]
    images: dict[float, torch.Tensor]
    unet_evals: int
    naive_unet_evals: int
    seconds: float = 0.0
    original_unet_evals: int = 0
    unlearned_unet_evals: int = 0
    splits: dict[float, StepSplit] = field(default_factory=dict)
    #: Evaluations of the original finishing hand-offs for a null (``sweep(null=...)``).
    null_unet_evals: int = 0

    def __getitem__(self, psi: float) -> torch.Tensor:
        key = check_psi(psi)
        if key not in self.images:
            raise KeyError(f"psi {psi!r} is not in this sweep; it has {sorted(self.images)}")
        return self.images[key]

    def at(self, psi: float) -> Images:
        """The images of one ψ as an ``Images`` record."""
        return Images(self[psi], self.prompts, self.seeds, check_psi(psi), 0)


class PartialDiffusion:
    """Partial diffusion between an original and an unlearned diffusers model.

    ``original`` is a StableDiffusionPipeline (or anything with the same
    parts), a StableDiffusionXLPipeline, StableDiffusion3Pipeline or
    FluxPipeline; ``unlearned`` is another pipeline of the same family, its
    denoiser (``UNet2DConditionModel``, ``SD3Transformer2DModel``,
    ``FluxTransformer2DModel``) or a path (see ``load_unlearned``). The
    original's scheduler drives both models. ``batch_size`` is the number of
    images per denoiser call (twice that many rows go in with classifier-free
    guidance).

    ψ on every family: the original runs the scheduled steps with
    ``t >= round(N * (1 - ψ))``, N = ``num_train_timesteps``; on SD3's and Flux's
    flow-matching schedules ``t = σ·N``, so the original runs while ``σ >= 1 - ψ``.
    ``max_sequence_length`` is the T5 length of SD3/Flux (None: the pipeline's
    default, 256 and 512); ``true_cfg_scale`` is Flux's classifier-free guidance
    with a negative prompt (off at 1.0, as in ``FluxPipeline``), while
    ``guidance_scale`` goes into Flux's guidance embedding. The trajectory cache
    runs for SD 1.x/2.x and SDXL (``Family.cache_off_reason`` says why not for SD3 and Flux).
    """

    def __init__(
        self,
        original: Any,
        unlearned: Any,
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        eta: float = 0.0,
        batch_size: int = 16,
        height: int | None = None,
        width: int | None = None,
        cache: Any = None,
        mix_branches: bool | None = None,
        max_mixed_images: int | None = None,
        compile_unet: bool | dict[str, Any] = False,
        cache_images: bool = True,
        max_sequence_length: int | None = None,
        true_cfg_scale: float = 1.0,
        image_dtype: torch.dtype = torch.uint8,
    ) -> None:
        #: The model family's adapter (``families.py``), detected from the original pipeline.
        self.family: Family = family_of(original)
        if self.family.name == "sd":
            check_pipeline(original, name="original")
        else:
            check_family_pipeline(original, self.family, name="original")
        if max_sequence_length is not None and (
            isinstance(max_sequence_length, bool) or not isinstance(max_sequence_length, int) or max_sequence_length < 1
        ):
            raise ValueError(f"max_sequence_length must be an integer >= 1 or None, got {max_sequence_length!r}")
        if isinstance(true_cfg_scale, bool) or not isinstance(true_cfg_scale, int | float) or not math.isfinite(
            true_cfg_scale
        ):
            raise ValueError(f"true_cfg_scale must be a finite number, got {true_cfg_scale!r}")
        if image_dtype not in (torch.uint8, torch.float32):
            raise ValueError(f"image_dtype must be torch.uint8 (compact, the default) or torch.float32, got {image_dtype!r}")
        #: Decoded images are kept as uint8 (1 byte per pixel channel, the values a saved PNG holds) or,
        #: for exactness checks against diffusers, float32 as the decoder gives them.
        self.image_dtype = image_dtype
        self.max_sequence_length = max_sequence_length
        self.true_cfg_scale = float(true_cfg_scale)
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise TypeError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for name, value in (("guidance_scale", guidance_scale), ("eta", eta)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if mix_branches is not None and not isinstance(mix_branches, bool):
            raise TypeError(f"mix_branches must be True, False or None (auto), got {mix_branches!r}")
        if max_mixed_images is not None and (
            isinstance(max_mixed_images, bool) or not isinstance(max_mixed_images, int) or max_mixed_images < 1
        ):
            raise ValueError(f"max_mixed_images must be an integer >= 1 or None, got {max_mixed_images!r}")
        if not isinstance(compile_unet, bool | dict):
            raise TypeError(f"compile_unet must be a bool or a dict of torch.compile arguments, got {compile_unet!r}")
        self.original = original
        self.unlearned = load_unlearned(original, unlearned)
        #: ``torch.compile`` the UNets' forward calls (True, or a dict of torch.compile arguments).
        #: Only the calls are compiled: the pipelines keep their own modules, so weight
        #: fingerprints, ``state_dict`` keys and the trajectory cache do not change.
        self.compile_unet = compile_unet
        self._compiled: dict[int, Any] = {}
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = float(guidance_scale)
        self.eta = float(eta)
        self.batch_size = batch_size
        self.height = height or self.family.default_size(original)
        self.width = width or self.family.default_size(original)
        #: The denoising steps (start, denoise, decode) with this engine's settings.
        self.sampler = Sampler(self)
        if cache is not None and self.family.cache_off_reason:
            warnings.warn(
                f"pytest-uoc: trajectory cache off for this {self.family.label} engine: "
                f"{self.family.cache_off_reason}", stacklevel=2,
            )
            cache = None
        #: What is kept between runs: the original's states at each hand-off (``cache``, a
        #: ``TrajectoryCache``) and, with ``cache_images``, each finished image keyed by both
        #: models, so a re-run against the same unlearned checkpoint (a CI re-run) costs no UNet
        #: evaluation at all.
        self.store = SweepStore(self, cache, cache_images=cache_images)
        #: Finish the branches of different ψ together, in UNet calls that mix their timesteps.
        #: None means on for CUDA (fewer, larger calls fill the GPU) and off on the CPU, where
        #: separate calls keep ``sweep`` bit-identical to ``generate``; mixed calls agree with
        #: them within float rounding (1e-6 in float32).
        self.mix_branches = mix_branches
        #: The most images one mixed call may hold (default: 4 × batch_size).
        self.max_mixed_images = max_mixed_images or 4 * batch_size

    # -- schedule -----------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.family.denoiser(self.original).device

    @property
    def dtype(self) -> torch.dtype:
        return self.family.denoiser(self.original).dtype

    @property
    def mixing(self) -> bool:
        """Whether branches of different ψ share UNet calls (see ``mix_branches``)."""
        if self.mix_branches is None:
            return self.device.type == "cuda"
        return self.mix_branches

    @property
    def do_cfg(self) -> bool:
        return self.family.cfg(self)

    @property
    def cache(self) -> Any:
        """The ``TrajectoryCache`` the store keeps states (and images) in, or None."""
        return self.store.cache

    @cache.setter
    def cache(self, cache: Any) -> None:
        self.store.cache = cache

    @property
    def cache_images(self) -> bool:
        """Whether finished images are kept too (with a cache)."""
        return self.store.cache_images

    @cache_images.setter
    def cache_images(self, value: bool) -> None:
        self.store.cache_images = bool(value)

    def _new_scheduler(self) -> Any:
        return self.sampler.new_scheduler()

    @property
    def timesteps(self) -> list[float]:
        """The scheduled timesteps, as the pipeline would run them."""
        return [float(t) for t in self._new_scheduler().timesteps]

    def steps_for(self, psi: float) -> StepSplit:
        """Which inference steps the original and the unlearned model run at ``psi``."""
        num_train = int(self.original.scheduler.config.num_train_timesteps)
        return split_steps(psi, self.timesteps, num_train)


    # -- public API ---------------------------------------------------------------

    def generate(self, prompts: Sequence[str], psi: float, seeds: Sequence[int]) -> Images:
        """Images of every (prompt, seed) at one ψ, prompt-major and seed-minor."""
        value = check_psi(psi)
        sweep = self.sweep(prompts, [value], seeds)
        return Images(sweep.images[value], sweep.prompts, sweep.seeds, value, sweep.unet_evals, sweep.seconds)

    def sweep(
        self, prompts: Sequence[str], psis: Sequence[float], seeds: Sequence[int], *, null: NullFinish | None = None,
    ) -> Sweep:
        """Images for every ψ in ``psis``, sharing the original's trajectory between them.

        With ``null``, the *original* finishes every hand-off, prompted with the null's
        anchors (see ``NullFinish``) instead of the unlearned model with the concept
        prompts: the same hand-off latents (and trajectory cache entries) as λP(ψ),
        so each null image is paired with the λP(ψ) image of the same prompt and seed.
        """
        prompt_list = check_prompts(prompts)
        seed_list = check_seeds(seeds)
        psi_list = check_psis(psis)
        if null is not None:
            if not isinstance(null, NullFinish):
                raise TypeError(f"null must be a NullFinish, got {type(null).__name__}")
            check_anchors(null, prompt_list)
        start = time.perf_counter()
        splits = {psi: self.steps_for(psi) for psi in psi_list}
        handoffs = sorted({split.handoff for split in splits.values()})
        # Second-order and PNDM schedulers run more UNet steps than num_inference_steps.
        total_steps = len(self.timesteps)
        items = [(p, s) for p in range(len(prompt_list)) for s in seed_list]
        # The two sides of the hand-off: the original, and who finishes (the unlearned model, or a null).
        original = self.sampler.model(self.original, prompt_list)
        original.unet = self._forward_of(original.unet)
        finisher = self._finisher(original, prompt_list, null)
        by_handoff: dict[int, list[torch.Tensor]] = {k: [] for k in handoffs}
        counts = {"original": 0, "unlearned": 0, "null": 0}
        psi_of = {split.handoff: psi for psi, split in sorted(splits.items(), reverse=True)}
        planned, done = len(items) * len(handoffs), 0
        with torch.inference_mode():
            for batch in chunks(items, self.batch_size):
                for handoff, images in self._branch_batch(batch, prompt_list, handoffs, original, finisher, counts):
                    by_handoff[handoff].append(images)
                    done += images.shape[0]
                    progress.report(done, planned, psi=psi_of[handoff])
        per_handoff = {k: torch.cat(v) for k, v in by_handoff.items()}
        images = {psi: per_handoff[split.handoff] for psi, split in splits.items()}
        evals = counts["original"] + counts["unlearned"] + counts["null"]
        return Sweep(
            psis=psi_list,
            prompts=prompt_list,
            seeds=seed_list,
            images=images,
            unet_evals=evals,
            naive_unet_evals=len(items) * total_steps * len(psi_list),
            seconds=time.perf_counter() - start,
            original_unet_evals=counts["original"],
            unlearned_unet_evals=counts["unlearned"],
            splits=splits,
            null_unet_evals=counts["null"],
        )

    # -- internals ----------------------------------------------------------------

    def _forward_of(self, unet: Any) -> Any:
        """``unet`` itself, or its compiled wrapper when ``compile_unet`` asks for one (made once)."""
        if self.compile_unet is False:
            return unet
        if id(unet) not in self._compiled:
            options = self.compile_unet if isinstance(self.compile_unet, dict) else {}
            self._compiled[id(unet)] = torch.compile(unet, **options)
        return self._compiled[id(unet)]

    def _finisher(self, original: GuidedModel, prompts: list[str], null: NullFinish | None) -> _Finisher:
        """Who denoises after the hand-off: the unlearned model with the prompts, or the original with a null."""
        if null is None:
            shared_text = all(
                getattr(self.unlearned, part, None) is getattr(self.original, part, None)
                for part in self.family.text_parts
            )
            model = copy.copy(original) if shared_text else self.sampler.model(self.unlearned, prompts)
            model.unet = self._forward_of(self.family.denoiser(self.unlearned))
            return _Finisher(model, "unlearned", None)
        negatives = prompts if null.negative == "concept" else None
        if negatives is not None and not self.do_cfg:
            warnings.warn(
                f"pytest-uoc: this {self.family.label} engine runs without classifier-free guidance "
                + ("(true_cfg_scale <= 1)" if self.family.name == "flux" else "(guidance_scale <= 1)")
                + ", so the negative prompt is ignored, as the pipeline ignores it: the lower null "
                "equals the upper null", stacklevel=3,
            )
        model = self.sampler.model(self.original, list(null.anchors), negatives)
        model.unet = original.unet
        images_key = self.store.null_key(null.anchors, null.negative) if self.cache is not None else None
        return _Finisher(model, "null", images_key)

    def _branch_batch(
        self,
        batch: list[tuple[int, int]],
        prompts: list[str],
        handoffs: list[int],
        original: GuidedModel,
        finisher: _Finisher,
        counts: dict[str, int],
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """The batch's finished images at every hand-off, as ``(hand-off, images)``.

        Images the store keeps come back as they are; every other hand-off branches from
        the original's trajectory (``_handoff_states``) and the finisher denoises it to the
        end, branch by branch or, when mixing, all branches together.
        """
        named = [(prompts[p], s) for p, s in batch]
        prompt_index = torch.tensor([p for p, _ in batch], device=self.device)
        original_embeddings = original.embeddings(prompt_index)
        embeddings = finisher.model.embeddings(prompt_index)
        total = self.sampler.total_steps()

        def keep(step: int, branch: Trajectory) -> torch.Tensor:
            return self.store.keep_images(named, step, self.sampler.decode(branch.latents), finisher.images_key)

        finished = self.store.images(named, handoffs, finisher.images_key)
        yield from sorted(finished.items())
        handoffs = [k for k in handoffs if k not in finished]
        if not handoffs:
            return
        mixing = self.mixing and len(handoffs) > 1
        branches: dict[int, Trajectory] = {}
        for step, branch in self._handoff_states(batch, named, handoffs, original, original_embeddings, counts):
            if mixing:
                branches[step] = branch
                continue
            for later in range(step, total):
                self.sampler.denoise(finisher.model, branch, later, embeddings)
                counts[finisher.role] += len(batch)
            yield step, keep(step, branch)
        if branches:
            self._finish_mixed(branches, finisher, embeddings, total, counts, len(batch))
            for step, branch in sorted(branches.items()):
                yield step, keep(step, branch)

    def _handoff_states(
        self,
        batch: list[tuple[int, int]],
        named: Named,
        handoffs: list[int],
        original: GuidedModel,
        embeddings: Any,
        counts: dict[str, int],
    ) -> Iterator[tuple[int, Trajectory]]:
        """The batch's state at every hand-off, each a branch of its own, in hand-off order.

        States the store keeps come first. The original then walks only as far as the
        others need, from the latest kept state before them (or from noise), keeping its
        state at each hand-off and forking a branch there.
        """
        kept = self.store.states(named, handoffs)
        pending = [k for k in handoffs if k not in kept]
        resume, state = None, None
        if pending:
            resume, state = self.store.resume_point(named, pending[0], kept)
            if state is None:
                state = self.sampler.start(batch)
        yield from sorted(kept.items())
        if state is None:
            return
        total = self.sampler.total_steps()
        for step in range(resume or 0, total + 1):
            if pending and pending[0] == step:
                pending.pop(0)
                self.store.keep_state(named, step, state)
                yield step, (state if not pending else state.fork())
            if not pending or step == total:
                break
            self.sampler.denoise(original, state, step, embeddings)
            counts["original"] += len(batch)

    def _finish_mixed(
        self,
        branches: dict[int, Trajectory],
        finisher: _Finisher,
        embeddings: Any,
        total: int,
        counts: dict[str, int],
        images: int,
    ) -> None:
        """Denoise every branch to the end, several branches (at different timesteps) per UNet call.

        Round r advances each unfinished branch by one step; branches are packed
        into calls of at most ``max_mixed_images`` images, each row carrying its
        own timestep. Scaling, guidance and the scheduler step stay per branch.
        """
        model = finisher.model
        position = {start: start for start in branches}
        per_call = max(1, self.max_mixed_images // max(1, images))
        while True:
            active = [k for k in sorted(branches) if position[k] < total]
            if not active:
                return
            for group in chunks(active, per_call):
                inputs, steps_in = [], []
                for key in group:
                    t, latent_in = self.sampler.model_input(model, branches[key], position[key])
                    inputs.append(latent_in)
                    steps_in.append(t.reshape(1).expand(latent_in.shape[0]))
                noise_all = self.sampler.predict(
                    model, torch.cat(inputs), torch.cat(steps_in), model.family.repeat(embeddings, len(group)),
                )
                for key, noise in zip(group, noise_all.split([x.shape[0] for x in inputs]), strict=True):
                    self.sampler.advance(model, branches[key], position[key], noise)
                    position[key] += 1
                    counts[finisher.role] += images


@dataclass
class _Finisher:
    """Who finishes the hand-offs: the model, the counter its evaluations go to, its images' store key."""

    model: GuidedModel
    role: str
    images_key: str | None


def check_anchors(null: NullFinish, prompts: list[str]) -> None:
    """Raise unless ``null`` has one anchor per prompt."""
    if len(null.anchors) != len(prompts):
        raise ValueError(
            f"a null finish needs one anchor per prompt: {len(prompts)} prompts, "
            f"{len(null.anchors)} anchors {list(null.anchors)}"
        )
