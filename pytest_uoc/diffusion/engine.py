"""The partial-diffusion engine.

``PartialDiffusion`` runs the original model for the steps with ``t >= c`` and
the unlearned model for the rest, exactly as a plain diffusers pipeline call
whose ``callback_on_step_end`` swaps ``pipe.unet`` at the cutoff would
(DESIGN.md). ``sweep`` shares the original's trajectory between all ψ: it runs
the original once per image up to the largest ψ and branches every ψ from its
cutoff, carrying the scheduler and generator state so stochastic schedulers
stay exact. Each image has its own CPU generator seeded with its seed, so no
image depends on how images were batched.

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
import hashlib
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .families import Family, _encode_sd, check_family_pipeline, family_of
from .loading import check_pipeline, load_unlearned
from .schedule import StepSplit, check_psi, split_steps

__all__ = ["NULL_NEGATIVES", "Images", "NullFinish", "PartialDiffusion", "Sweep", "check_prompts", "check_seeds"]

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


def _check_psis(psis: object) -> list[float]:
    if isinstance(psis, int | float):
        psis = [psis]
    if not isinstance(psis, Iterable):
        raise TypeError(f"psis must be a list of numbers in [0, 1], got {psis!r}")
    values = [check_psi(p, name="every psi") for p in psis]
    if not values:
        raise ValueError("psis must not be empty: give at least one psi")
    return values


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


@dataclass
class _Trajectory:
    """The state of one batch of images between two denoising steps."""

    latents: torch.Tensor
    scheduler: Any
    generators: list[torch.Generator]

    def fork(self) -> _Trajectory:
        clones = []
        for gen in self.generators:
            clone = torch.Generator(device=gen.device)
            clone.set_state(gen.get_state())
            clones.append(clone)
        return _Trajectory(self.latents.clone(), copy.deepcopy(self.scheduler), clones)


#: SD 1.x/2.x prompt encoding (kept under its old name).
_encode = _encode_sd


class _Model:
    """One side of the hand-off: a denoiser (UNet or transformer) with the conditioning it uses.

    ``engine`` gives the family and the settings some families encode with (image
    size, sequence length); without it the pipeline is taken for SD 1.x/2.x.
    """

    def __init__(self, pipe: Any, prompts: list[str], device: torch.device, cfg: bool, dtype: torch.dtype,
                 negative_prompts: list[str] | None = None, engine: Any = None):
        self.family: Family = engine.family if engine is not None else family_of(pipe)
        self.unet = self.family.denoiser(pipe)
        with torch.inference_mode():
            positive, negative = self.family.encode(pipe, prompts, device, cfg, negative_prompts, engine)
        self.positive = self.family.to_dtype(positive, dtype)
        self.negative = self.family.to_dtype(negative, dtype)

    def embeddings(self, prompt_index: torch.Tensor) -> Any:
        """The conditioning rows of ``prompt_index`` (negative rows first under CFG)."""
        return Family.select(self.positive, self.negative, prompt_index)


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
    runs for SD 1.x/2.x only (``Family.cache_off_reason`` says why not elsewhere).
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
        #: With a cache, also keep each finished image, keyed by both models: a re-run against
        #: the same unlearned checkpoint (a CI re-run) then costs no UNet evaluation at all.
        self.cache_images = bool(cache_images)
        self._image_key: str | None = None
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = float(guidance_scale)
        self.eta = float(eta)
        self.batch_size = batch_size
        self.height = height or self.family.default_size(original)
        self.width = width or self.family.default_size(original)
        self._latent_shape = self.family.latent_shape(self)
        if cache is not None and self.family.cache_off_reason:
            warnings.warn(
                f"pytest-uoc: trajectory cache off for this {self.family.label} engine: "
                f"{self.family.cache_off_reason}", stacklevel=2,
            )
            cache = None
        #: Optional ``TrajectoryCache``: the original's states at each hand-off, kept between runs.
        self.cache = cache
        #: Finish the branches of different ψ together, in UNet calls that mix their timesteps.
        #: None means on for CUDA (fewer, larger calls fill the GPU) and off on the CPU, where
        #: separate calls keep ``sweep`` bit-identical to ``generate``; mixed calls agree with
        #: them within float rounding (1e-6 in float32).
        self.mix_branches = mix_branches
        #: The most images one mixed call may hold (default: 4 × batch_size).
        self.max_mixed_images = max_mixed_images or 4 * batch_size
        self._cache_key: str | None = None

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

    def _new_scheduler(self) -> Any:
        scheduler = copy.deepcopy(self.original.scheduler)
        self.family.set_timesteps(scheduler, self)
        return scheduler

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
        psi_list = _check_psis(psis)
        if null is not None:
            if not isinstance(null, NullFinish):
                raise TypeError(f"null must be a NullFinish, got {type(null).__name__}")
            if len(null.anchors) != len(prompt_list):
                raise ValueError(
                    f"a null finish needs one anchor per prompt: {len(prompt_list)} prompts, "
                    f"{len(null.anchors)} anchors {list(null.anchors)}"
                )
        start = time.perf_counter()
        splits = {psi: self.steps_for(psi) for psi in psi_list}
        handoffs = sorted({split.handoff for split in splits.values()})
        # Second-order and PNDM schedulers run more UNet steps than num_inference_steps.
        total_steps = len(self.timesteps)
        items = [(p, s) for p in range(len(prompt_list)) for s in seed_list]
        cfg = self.do_cfg
        original = _Model(self.original, prompt_list, self.device, cfg, self.dtype, engine=self)
        original.unet = self._forward_of(original.unet)
        shared_text = all(
            getattr(self.unlearned, part, None) is getattr(self.original, part, None)
            for part in self.family.text_parts
        )
        if null is not None:
            negatives = prompt_list if null.negative == "concept" else None
            if negatives is not None and not cfg:
                warnings.warn(
                    f"pytest-uoc: this {self.family.label} engine runs without classifier-free guidance "
                    + ("(true_cfg_scale <= 1)" if self.family.name == "flux" else "(guidance_scale <= 1)")
                    + ", so the negative prompt is ignored, as the pipeline ignores it: the lower null "
                    "equals the upper null", stacklevel=2,
                )
            finisher = _Model(self.original, list(null.anchors), self.device, cfg, self.dtype, negatives, engine=self)
            finisher.unet = original.unet
            finisher_role = "null"
            images_key = self._finished_key(null) if self.cache is not None else None
        else:
            if shared_text:
                finisher = copy.copy(original)
            else:
                finisher = _Model(self.unlearned, prompt_list, self.device, cfg, self.dtype, engine=self)
            finisher.unet = self._forward_of(self.family.denoiser(self.unlearned))
            finisher_role, images_key = "unlearned", None
        by_handoff: dict[int, list[torch.Tensor]] = {k: [] for k in handoffs}
        counts = {"original": 0, "unlearned": 0, "null": 0}
        with torch.inference_mode():
            for batch in _chunks(items, self.batch_size):
                named = [(prompt_list[p], s) for p, s in batch]
                for handoff, images in self._branch_batch(batch, handoffs, original, finisher, counts, named,
                                                          finisher_role=finisher_role, images_key=images_key):
                    by_handoff[handoff].append(images)
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

    def _start(self, batch: list[tuple[int, int]]) -> _Trajectory:
        from diffusers.utils.torch_utils import randn_tensor

        scheduler = self._new_scheduler()
        generators = [torch.Generator("cpu").manual_seed(seed) for _, seed in batch]
        noise = [
            randn_tensor((1, *self._latent_shape), generator=gen, device=self.device, dtype=self.dtype)
            for gen in generators
        ]
        latents = self.family.initial(torch.cat(noise), scheduler, self)
        return _Trajectory(latents, scheduler, generators)

    def _step_kwargs(self, scheduler: Any, generators: list[torch.Generator]) -> dict[str, Any]:
        return self.family.step_kwargs(self, scheduler, generators)

    def _denoise(self, model: _Model, state: _Trajectory, step: int, embeddings: Any) -> None:
        t, latent_in = self._model_input(model, state, step)
        noise = model.family.forward(model.unet, latent_in, t, embeddings, self)
        self._advance(model, state, step, noise)

    @staticmethod
    def _model_input(model: _Model, state: _Trajectory, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The timestep and the scaled denoiser input of one step (doubled for classifier-free guidance)."""
        t = state.scheduler.timesteps[step]
        latent_in = torch.cat([state.latents] * 2) if model.negative is not None else state.latents
        return t, model.family.scale_input(state.scheduler, latent_in, t)

    def _advance(self, model: _Model, state: _Trajectory, step: int, noise: torch.Tensor) -> None:
        """Apply guidance to the denoiser's output and take the scheduler step."""
        if model.negative is not None:
            uncond, cond = noise.chunk(2)
            noise = uncond + self.family.cfg_scale(self) * (cond - uncond)
        t = state.scheduler.timesteps[step]
        kwargs = self._step_kwargs(state.scheduler, state.generators)
        state.latents = state.scheduler.step(noise, t, state.latents, **kwargs, return_dict=False)[0]

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.family.decode(self.original.vae, latents, self)

    def _branch_batch(
        self,
        batch: list[tuple[int, int]],
        handoffs: list[int],
        original: _Model,
        unlearned: _Model,
        counts: dict[str, int],
        named: list[tuple[str, int]],
        *,
        finisher_role: str = "unlearned",
        images_key: str | None = None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Walk the original's trajectory and finish every hand-off with ``unlearned`` (the finisher).

        Hand-offs whose states are all in the trajectory cache branch from the
        cache; the original walks only as far as the uncached ones need,
        starting from the latest cached state before them. ``finisher_role`` names
        the counter the finishing evaluations go to; ``images_key`` the cache key
        of the finished images (default: both models' fingerprints).
        """
        prompt_index = torch.tensor([p for p, _ in batch], device=self.device)
        original_embeddings = original.embeddings(prompt_index)
        unlearned_embeddings = unlearned.embeddings(prompt_index)
        total = len(self._new_scheduler().timesteps)

        def finish(branch: _Trajectory, step: int) -> torch.Tensor:
            for later in range(step, total):
                self._denoise(unlearned, branch, later, unlearned_embeddings)
                counts[finisher_role] += len(batch)
            return self._store_images(named, step, self._decode(branch.latents), images_key)

        finished = self._cached_images(named, handoffs, images_key)
        yield from sorted(finished.items())
        handoffs = [k for k in handoffs if k not in finished]
        if not handoffs:
            return
        cached = self._cached_states(named, handoffs)
        pending = [k for k in handoffs if k not in cached]
        resume, state = None, None
        if pending:
            resume, state = self._resume_point(named, pending[0], cached)
            if state is None:
                state = self._start(batch)
        mixing = self.mixing and len(handoffs) > 1
        branches: dict[int, _Trajectory] = {}
        for step, branch in sorted(cached.items()):
            if mixing:
                branches[step] = branch
            else:
                yield step, finish(branch, step)
        if state is not None:
            for step in range(resume or 0, total + 1):
                if pending and pending[0] == step:
                    pending.pop(0)
                    self._store_states(named, step, state)
                    branch = state if not pending else state.fork()
                    if mixing:
                        branches[step] = branch
                    else:
                        yield step, finish(branch, step)
                if not pending or step == total:
                    break
                self._denoise(original, state, step, original_embeddings)
                counts["original"] += len(batch)
        if branches:
            self._finish_mixed(branches, unlearned, unlearned_embeddings, total, counts, len(batch), finisher_role)
            for step, branch in sorted(branches.items()):
                yield step, self._store_images(named, step, self._decode(branch.latents), images_key)

    def _finish_mixed(
        self,
        branches: dict[int, _Trajectory],
        model: _Model,
        embeddings: Any,
        total: int,
        counts: dict[str, int],
        images: int,
        role: str = "unlearned",
    ) -> None:
        """Denoise every branch to the end, several branches (at different timesteps) per UNet call.

        Round r advances each unfinished branch by one step; branches are packed
        into calls of at most ``max_mixed_images`` images, each row carrying its
        own timestep. Scaling, guidance and the scheduler step stay per branch.
        """
        position = {start: start for start in branches}
        per_call = max(1, self.max_mixed_images // max(1, images))
        while True:
            active = [k for k in sorted(branches) if position[k] < total]
            if not active:
                return
            for group in _chunks(active, per_call):
                inputs, steps_in = [], []
                for key in group:
                    t, latent_in = self._model_input(model, branches[key], position[key])
                    inputs.append(latent_in)
                    steps_in.append(t.reshape(1).expand(latent_in.shape[0]))
                noise_all = model.family.forward(
                    model.unet, torch.cat(inputs), torch.cat(steps_in), model.family.repeat(embeddings, len(group)),
                    self,
                )
                for key, noise in zip(group, noise_all.split([x.shape[0] for x in inputs]), strict=True):
                    self._advance(model, branches[key], position[key], noise)
                    position[key] += 1
                    counts[role] += images

    # -- trajectory cache ---------------------------------------------------------------

    def _key(self) -> str:
        if self._cache_key is None:
            extra = {
                "steps": self.num_inference_steps, "guidance": self.guidance_scale, "eta": self.eta,
                "height": self.height, "width": self.width, "device": self.device.type,
                "dtype": str(self.dtype), "cfg": self.do_cfg,
            }
            self._cache_key = self.cache.model_key(self.original, extra)
        return self._cache_key

    def _cached_states(self, named: list[tuple[str, int]], handoffs: list[int]) -> dict[int, _Trajectory]:
        """Hand-offs whose every image's state is in the cache, restored as batch states."""
        if self.cache is None:
            return {}
        from .trajectory_cache import restore_scheduler

        out: dict[int, _Trajectory] = {}
        for step in handoffs:
            # Load every entry even after a miss, so that each corrupt one is reported and removed.
            entries = [self.cache.load(self._key(), prompt, seed, step) for prompt, seed in named]
            if all(entry is not None for entry in entries):
                generators = []
                for entry in entries:
                    gen = torch.Generator("cpu")
                    gen.set_state(entry["generator"])
                    generators.append(gen)
                scheduler = restore_scheduler(self._new_scheduler(), [e["scheduler"] for e in entries], self.device)
                latents = torch.cat([e["latents"] for e in entries]).to(self.device, self.dtype)
                out[step] = _Trajectory(latents, scheduler, generators)
                self.cache.hits += len(entries)
        return out

    def _resume_point(
        self, named: list[tuple[str, int]], first_pending: int, cached: dict[int, _Trajectory]
    ) -> tuple[int | None, _Trajectory | None]:
        """The latest cached state at or before ``first_pending`` (any step, not only hand-offs)."""
        if self.cache is None:
            return None, None
        for step in range(first_pending, 0, -1):
            if step in cached:
                return step, cached[step].fork()
            prompt, seed = named[0]
            if not self.cache.contains(self._key(), prompt, seed, step):
                continue
            found = self._cached_states(named, [step])
            if step in found:
                return step, found[step]
        return None, None

    def _images_key(self) -> str:
        """The trajectory key extended by the unlearned model's fingerprints (finished images)."""
        if self._image_key is None:
            parts = [self._key(), "finished-images"]
            parts += [self.cache.fingerprint(m) for m in (self.unlearned.unet, self.unlearned.text_encoder)]
            self._image_key = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return self._image_key

    def _finished_key(self, null: NullFinish) -> str:
        """The cache key of a null's finished images: the original's key, the anchors and the negative side.

        It depends on the original, prompts, anchors and seeds only, never on the unlearned
        model, so a second checkpoint reuses the null finishes of the first.
        """
        parts = [self._key(), "null-finish", null.negative, *null.anchors]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _cached_images(
        self, named: list[tuple[str, int]], handoffs: list[int], key: str | None = None,
    ) -> dict[int, torch.Tensor]:
        """Hand-offs whose every finished image is in the cache (for this pair of models, or ``key``)."""
        if self.cache is None or not self.cache_images:
            return {}
        key = key or self._images_key()
        out: dict[int, torch.Tensor] = {}
        for step in handoffs:
            if not all(self.cache.contains(key, p, s, step) for p, s in named):
                continue
            entries = [self.cache.load(key, p, s, step) for p, s in named]
            if all(e is not None and isinstance(e.get("image"), torch.Tensor) for e in entries):
                out[step] = torch.cat([e["image"] for e in entries])
                self.cache.hits += len(entries)
        return out

    def _store_images(
        self, named: list[tuple[str, int]], step: int, images: torch.Tensor, key: str | None = None,
    ) -> torch.Tensor:
        if self.cache is not None and self.cache_images:
            key = key or self._images_key()
            for i, (prompt, seed) in enumerate(named):
                self.cache.store(key, prompt, seed, step, {"image": images[i:i + 1].clone()})
        return images

    def _store_states(self, named: list[tuple[str, int]], step: int, state: _Trajectory) -> None:
        if self.cache is None:
            return
        from .trajectory_cache import scheduler_state

        per_image = scheduler_state(state.scheduler, self._new_scheduler(), len(named))
        if per_image is None:
            warnings.warn(
                f"pytest-uoc: {type(state.scheduler).__name__} keeps state the trajectory cache cannot split "
                "per image; caching is off for this engine", stacklevel=2,
            )
            self.cache = None
            return
        for i, (prompt, seed) in enumerate(named):
            self.cache.store(self._key(), prompt, seed, step, {
                "latents": state.latents[i:i + 1].detach().cpu().clone(),
                "generator": state.generators[i].get_state(),
                "scheduler": per_image[i],
            })


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
