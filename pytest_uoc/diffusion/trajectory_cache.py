"""A persistent cache of the original model's trajectory at each hand-off step.

The original's part of partial diffusion does not depend on the unlearned
model, so a second run against another unlearned checkpoint need not redo it.
Each entry holds one image's state after ``k`` original steps: its latent, its
generator state and the scheduler's per-image state. Entries are keyed by a
fingerprint of the original model (UNet and text encoder weights and configs),
the prompt, seed, scheduler config, step count, guidance, eta, device and
dtype; written atomically with a SHA-256 checksum, and a corrupt or truncated
entry is reported (a warning), deleted and recomputed, never used.

Fingerprints sample the weights (every tensor's name, shape, dtype, sum and 64
evenly spaced values) so that hashing a multi-GB UNet costs one pass of
summation rather than hashing every byte; ``full_hash=True`` hashes every byte
instead. The sampled fingerprint misses an edit that keeps every sum and every
sampled value, which real fine-tuning does not do.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["TrajectoryCache", "fingerprint_module", "restore_scheduler", "scheduler_state", "stable_config"]

_MAGIC = b"UOCTRAJ1"


def stable_config(config: Any) -> str:
    """A config as canonical JSON, without its private keys.

    diffusers records ``_use_default_values`` as a list made from a set (its order
    changes from one process to the next with hash randomisation) and
    ``_name_or_path`` is where the files happened to be: neither says anything
    about the model, and either would make every new process miss the cache.
    """
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    public = {k: v for k, v in items.items() if not str(k).startswith("_")}
    return json.dumps(public, sort_keys=True, default=str)


def fingerprint_module(module: Any, *, full_hash: bool = False) -> str:
    """A hash of a module's configuration and weights (sampled unless ``full_hash``)."""
    digest = hashlib.sha256()
    config = getattr(module, "config", None)
    if config is not None:
        digest.update(stable_config(config).encode())
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            flat = tensor.detach().reshape(-1)
            if flat.numel() == 0:
                continue
            if full_hash:
                digest.update(flat.cpu().contiguous().view(torch.uint8).numpy().tobytes())
                continue
            index = torch.linspace(0, flat.numel() - 1, steps=min(64, flat.numel()), device=flat.device).long()
            digest.update(flat[index].double().cpu().numpy().tobytes())
            digest.update(repr(float(flat.double().sum())).encode())
    return digest.hexdigest()


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
            if not all(v is None or isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch for v in value):
                return None
            for i in range(batch):
                per_image[i][name] = [None if v is None else v[i:i + 1].cpu().clone() for v in value]
        elif value is None or isinstance(value, bool | int | float | str):
            if value != before:
                for i in range(batch):
                    per_image[i][name] = value
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
        else:
            if any(v != first for v in values):
                raise ValueError(f"scheduler state {name!r} differs between images of one batch")
            setattr(fresh, name, first)
    return fresh


class TrajectoryCache:
    """Original-model states per (prompt, seed, hand-off step), persistent on disk."""

    def __init__(self, folder: str | os.PathLike[str], *, full_hash: bool = False) -> None:
        self.folder = Path(folder)
        self.full_hash = full_hash
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self._fingerprints: dict[int, str] = {}

    def fingerprint(self, module: Any) -> str:
        """``fingerprint_module`` of ``module``, computed once per module for this cache."""
        if id(module) not in self._fingerprints:
            self._fingerprints[id(module)] = fingerprint_module(module, full_hash=self.full_hash)
        return self._fingerprints[id(module)]

    def model_key(self, pipe: Any, extra: dict[str, Any]) -> str:
        """The part of every key that identifies the original model and the sampling settings."""
        parts = [self.fingerprint(pipe.unet), self.fingerprint(pipe.text_encoder)]
        tokenizer = pipe.tokenizer
        parts.append(f"{type(tokenizer).__name__}:{len(tokenizer)}:{getattr(tokenizer, 'model_max_length', '')}")
        parts.append(stable_config(pipe.scheduler.config))
        parts.append(type(pipe.scheduler).__name__)
        parts.append(json.dumps(extra, sort_keys=True, default=str))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _path(self, model_key: str, prompt: str, seed: int, step: int) -> Path:
        key = hashlib.sha256(f"{model_key}\n{prompt}\n{seed}\n{step}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.pt"

    def contains(self, model_key: str, prompt: str, seed: int, step: int) -> bool:
        """Whether an entry exists (not whether it is intact)."""
        return self._path(model_key, prompt, seed, step).is_file()

    def load(self, model_key: str, prompt: str, seed: int, step: int) -> dict[str, Any] | None:
        """One image's state after ``step`` original steps, or None (a miss, or a corrupt entry)."""
        path = self._path(model_key, prompt, seed, step)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        payload = raw[len(_MAGIC) + 32:]
        if raw[:len(_MAGIC)] != _MAGIC or hashlib.sha256(payload).digest() != raw[len(_MAGIC):len(_MAGIC) + 32]:
            self._corrupt(path, "checksum mismatch (truncated or corrupt)")
            return None
        try:
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
            self._corrupt(path, f"unreadable ({type(exc).__name__})")
            return None
        from ..cache import touch

        touch(path)  # used now: the size limit evicts least recently used entries first
        return state

    def _corrupt(self, path: Path, why: str) -> None:
        self.corrupt += 1
        self.misses += 1
        warnings.warn(f"pytest-uoc: trajectory cache entry {path} is {why}; it is recomputed", stacklevel=3)
        path.unlink(missing_ok=True)

    def store(self, model_key: str, prompt: str, seed: int, step: int, state: dict[str, Any]) -> None:
        """Write one image's state atomically, with a checksum."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        payload = buffer.getvalue()
        from ..cache import atomic_write_bytes

        atomic_write_bytes(self._path(model_key, prompt, seed, step),
                           _MAGIC + hashlib.sha256(payload).digest() + payload)
