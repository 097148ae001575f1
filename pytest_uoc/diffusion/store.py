"""What a sweep keeps between runs: the original's states at each hand-off, and finished images.

``SweepStore`` puts the engine's keys in front of a ``TrajectoryCache`` so that the sweep
only asks "what do you have" (``images``, ``states``, ``resume_point``) and says "keep
this" (``keep_images``, ``keep_state``). Without a cache every question answers nothing
and every "keep" is a no-op. States are keyed by the original model and the sampling
settings; finished images also by the unlearned model (or, for a null finish, by the
null's anchors and negative side instead). The files themselves are the cache layer's
(``pytest_uoc.stores``); the engine only computes keys and splits the scheduler's state per
image (``scheduler_state``, ``restore_scheduler``).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .sampler import Trajectory

__all__ = ["Named", "SweepStore", "restore_scheduler", "scheduler_state"]

#: One image's name in the store: (prompt, seed).
Named = list[tuple[str, int]]


class SweepStore:
    """The trajectory cache of one ``PartialDiffusion`` engine, keyed by its models and settings.

    ``cache`` is a ``TrajectoryCache`` or None (nothing kept); ``cache_images`` also keeps
    finished images, so a re-run against the same unlearned checkpoint costs no denoiser
    evaluation. The store turns itself off (``cache`` None) when the scheduler's state
    cannot be split per image.
    """

    def __init__(self, engine: Any, cache: Any = None, *, cache_images: bool = True) -> None:
        self.engine = engine
        self.cache_images = bool(cache_images)
        self._cache = cache
        self._state_key: str | None = None
        self._image_key: str | None = None

    @property
    def cache(self) -> Any:
        """The ``TrajectoryCache`` behind this store, or None."""
        return self._cache

    @cache.setter
    def cache(self, cache: Any) -> None:
        self._cache = cache
        self._state_key = self._image_key = None

    # -- keys -------------------------------------------------------------------------

    def state_key(self) -> str:
        """The key of the original's states: its fingerprints and the sampling settings."""
        if self._state_key is None:
            engine = self.engine
            extra = {
                "steps": engine.num_inference_steps, "guidance": engine.guidance_scale, "eta": engine.eta,
                "height": engine.height, "width": engine.width, "device": engine.device.type,
                "dtype": str(engine.dtype), "cfg": engine.do_cfg,
            }
            for name in engine.family.cache_key_parts:  # SDXL: the second text encoder and its tokenizer
                extra[name] = self._cache.describe(getattr(engine.original, name, None))
            if engine.family.cache_key_parts:
                extra["pipeline"] = {k: v for k, v in dict(engine.original.config).items() if not k.startswith("_")}
            self._state_key = self._cache.model_key(engine.original, extra)
        return self._state_key

    def images_key(self) -> str:
        """The state key extended by the unlearned model's fingerprints (its finished images)."""
        if self._image_key is None:
            unlearned = self.engine.unlearned
            parts = [self.state_key(), "finished-images", str(self.engine.image_dtype)]
            parts += [self._cache.fingerprint(m) for m in (unlearned.unet, unlearned.text_encoder)]
            parts += [self._cache.describe(getattr(unlearned, name, None)) for name in self.engine.family.cache_key_parts]
            self._image_key = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return self._image_key

    def null_key(self, anchors: tuple[str, ...], negative: str) -> str:
        """The key of a null's finished images: the original's key, the anchors and the negative side.

        It depends on the original, prompts, anchors and seeds only, never on the unlearned
        model, so a second checkpoint reuses the null finishes of the first.
        """
        parts = [self.state_key(), "null-finish", str(self.engine.image_dtype), negative, *anchors]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    # -- finished images --------------------------------------------------------------

    def images(self, named: Named, handoffs: list[int], key: str | None = None) -> dict[int, torch.Tensor]:
        """Hand-offs whose every finished image is kept (for this pair of models, or under ``key``)."""
        if self._cache is None or not self.cache_images:
            return {}
        key = key or self.images_key()
        out: dict[int, torch.Tensor] = {}
        for step in handoffs:
            if not all(self._cache.contains(key, p, s, step) for p, s in named):
                continue
            entries = [self._cache.load(key, p, s, step) for p, s in named]
            if all(e is not None and isinstance(e.get("image"), torch.Tensor) for e in entries):
                out[step] = torch.cat([e["image"] for e in entries])
                self._cache.hits += len(entries)
        return out

    def keep_images(self, named: Named, step: int, images: torch.Tensor, key: str | None = None) -> torch.Tensor:
        """Keep the images finished from hand-off ``step`` (when images are kept); return them."""
        if self._cache is not None and self.cache_images:
            key = key or self.images_key()
            for i, (prompt, seed) in enumerate(named):
                self._cache.store(key, prompt, seed, step, {"image": images[i:i + 1].clone()})
        return images

    # -- the original's states --------------------------------------------------------

    def states(self, named: Named, handoffs: list[int]) -> dict[int, Trajectory]:
        """Hand-offs whose every image's state is kept, restored as batch states."""
        if self._cache is None:
            return {}
        engine = self.engine
        out: dict[int, Trajectory] = {}
        for step in handoffs:
            # Load every entry even after a miss, so that each corrupt one is reported and removed.
            entries = [self._cache.load(self.state_key(), prompt, seed, step) for prompt, seed in named]
            if all(entry is not None for entry in entries):
                generators = []
                for entry in entries:
                    gen = torch.Generator("cpu")
                    gen.set_state(entry["generator"])
                    generators.append(gen)
                scheduler = restore_scheduler(
                    engine.sampler.new_scheduler(), [e["scheduler"] for e in entries], engine.device,
                )
                latents = torch.cat([e["latents"] for e in entries]).to(engine.device, engine.dtype)
                out[step] = Trajectory(latents, scheduler, generators)
                self._cache.hits += len(entries)
        return out

    def resume_point(
        self, named: Named, first_pending: int, cached: dict[int, Trajectory]
    ) -> tuple[int | None, Trajectory | None]:
        """The latest kept state at or before ``first_pending`` (any step, not only hand-offs)."""
        if self._cache is None:
            return None, None
        for step in range(first_pending, 0, -1):
            if step in cached:
                return step, cached[step].fork()
            prompt, seed = named[0]
            if not self._cache.contains(self.state_key(), prompt, seed, step):
                continue
            found = self.states(named, [step])
            if step in found:
                return step, found[step]
        return None, None

    def keep_state(self, named: Named, step: int, state: Trajectory) -> None:
        """Keep every image's state after ``step`` original steps (latents, generator, scheduler)."""
        if self._cache is None:
            return
        per_image = scheduler_state(state.scheduler, self.engine.sampler.new_scheduler(), len(named))
        if per_image is None:
            warnings.warn(
                f"pytest-uoc: {type(state.scheduler).__name__} keeps state the trajectory cache cannot split "
                "per image; caching is off for this engine", stacklevel=2,
            )
            self.cache = None
            return
        for i, (prompt, seed) in enumerate(named):
            self._cache.store(self.state_key(), prompt, seed, step, {
                "latents": state.latents[i:i + 1].detach().cpu().clone(),
                "generator": state.generators[i].get_state(),
                "scheduler": per_image[i],
            })


# --------------------------------------------------------------------------- scheduler state per image


#: Marks a numpy array of scheduler state, stored as a tensor (``{_NUMPY: tensor}``).
_NUMPY = "numpy"
#: Marks a list of per-step scalars shared by the batch (``{_SHARED: [...]}``).
_SHARED = "shared"


def _same_list(a: Any, b: Any) -> bool:
    """Whether two lists of scalars (numbers, 0-dim tensors, None) hold the same values."""
    if not isinstance(a, list | tuple) or not isinstance(b, list | tuple) or len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if (x is None) != (y is None):
            return False
        if x is not None and float(x) != float(y):
            return False
    return True


def _state_names(scheduler: Any) -> list[str]:
    return sorted(k for k in vars(scheduler) if not k.startswith("__") and k != "config")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable values count as different
        return False


def scheduler_state(scheduler: Any, fresh: Any, batch: int) -> list[dict[str, Any]] | None:
    """Per-image state of ``scheduler`` (what differs from ``fresh``), or None when not splittable.

    Scalars are copied to every image; tensors and lists of tensors whose
    first dimension is the batch are sliced per image.
    """
    per_image: list[dict[str, Any]] = [{} for _ in range(batch)]
    for name in _state_names(scheduler):
        value = getattr(scheduler, name)
        before = getattr(fresh, name, None)
        if isinstance(value, torch.Tensor):
            if isinstance(before, torch.Tensor) and before.shape == value.shape and torch.equal(before.cpu(), value.cpu()):
                continue
            if value.dim() == 0 or value.shape[0] != batch:
                return None
            for i in range(batch):
                per_image[i][name] = value[i:i + 1].cpu().clone()
        elif isinstance(value, list | tuple):
            if all(v is None or isinstance(v, int | float) for v in value):
                if list(value) != list(before or []):
                    for i in range(batch):
                        per_image[i][name] = list(value)
                continue
            if all(v is None or isinstance(v, int | float) or isinstance(v, torch.Tensor) and v.dim() == 0
                   for v in value):
                # Per-step scalars shared by the batch (UniPC's ``timestep_list``): each image keeps a copy.
                shared = [v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v for v in value]
                if not _same_list(shared, before):
                    for i in range(batch):
                        per_image[i][name] = {_SHARED: list(shared)}
                continue
            if not all(v is None or isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch for v in value):
                return None
            for i in range(batch):
                per_image[i][name] = [None if v is None else v[i:i + 1].cpu().clone() for v in value]
        elif value is None or isinstance(value, bool | int | float | str):
            if value != before:
                for i in range(batch):
                    per_image[i][name] = value
        elif isinstance(value, np.ndarray):
            # Schedule arrays (PNDM's ``_timesteps``, ``prk_timesteps``, ``plms_timesteps``): the
            # same for every image of the run, so each image keeps a copy.
            if isinstance(before, np.ndarray) and np.array_equal(value, before):
                continue
            for i in range(batch):  # kept as a tensor: cache entries load with weights_only=True
                per_image[i][name] = {_NUMPY: torch.from_numpy(np.array(value, copy=True))}
        elif value is before or _same(value, before):
            continue
        else:
            return None
    return per_image


def restore_scheduler(fresh: Any, states: Sequence[dict[str, Any]], device: torch.device) -> Any:
    """Put the per-image states of one batch back into ``fresh`` (mutated and returned)."""
    names = set().union(*(s.keys() for s in states)) if states else set()
    for name in names:
        values = [s.get(name) for s in states]
        first = values[0]
        if isinstance(first, torch.Tensor):
            setattr(fresh, name, torch.cat(values).to(device))
        elif isinstance(first, list) and any(isinstance(v, torch.Tensor) for v in first):
            merged = []
            for position in range(len(first)):
                column = [v[position] for v in values]
                merged.append(None if column[0] is None else torch.cat(column).to(device))
            setattr(fresh, name, merged)
        elif isinstance(first, dict) and _SHARED in first:
            lists = [v[_SHARED] for v in values]
            if any(not _same_list(other, lists[0]) for other in lists[1:]):
                raise ValueError(f"scheduler state {name!r} differs between images of one batch")
            setattr(fresh, name, [v.to(device) if isinstance(v, torch.Tensor) else v for v in lists[0]])
        elif isinstance(first, dict) and _NUMPY in first:
            arrays = [v[_NUMPY].numpy() for v in values]
            if any(not np.array_equal(a, arrays[0]) for a in arrays):
                raise ValueError(f"scheduler state {name!r} differs between images of one batch")
            setattr(fresh, name, arrays[0].copy())
        else:
            if any(v != first for v in values):
                raise ValueError(f"scheduler state {name!r} differs between images of one batch")
            setattr(fresh, name, first)
    return fresh
