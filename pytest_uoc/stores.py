"""The cache layer's stores: every file the classifier and the sweep keep between runs.

Scoring and the engine compute keys and payloads and never touch a file; they
are handed one of these stores, which reads and writes the cache folder:

* ``ClassifierStore``: trained domain classifiers as ``classifier-<key>.pt``
  (``scoring.train_domain_classifier`` builds one from ``cache_dir``).
* ``TrajectoryCache``: the original model's trajectory at each hand-off step,
  and finished images (the engine's ``SweepStore`` puts its keys in front of it).

Every entry is written atomically (``cache.atomic_write_bytes``) and touched when
it is used, so the cache folder's size limit evicts least recently used entries first.

The trajectory cache: the original's part of partial diffusion does not depend
on the unlearned model, so a second run against another unlearned checkpoint
need not redo it. Each entry holds one image's state after ``k`` original
steps: its latent, its generator state and the scheduler's per-image state.
Entries are keyed by a fingerprint of the original model (UNet and text encoder
weights and configs), the prompt, seed, scheduler config, step count, guidance,
eta, device and dtype; written with a SHA-256 checksum, and a corrupt or
truncated entry is reported (a warning), deleted and recomputed, never used.

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
from pathlib import Path
from typing import Any

import torch

from .cache import atomic_write_bytes, touch

__all__ = ["ClassifierStore", "TrajectoryCache", "describe_part", "fingerprint_module", "stable_config"]

_MAGIC = b"UOCTRAJ1"


def _torch_bytes(obj: Any) -> bytes:
    """``obj`` as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class ClassifierStore:
    """Trained domain classifiers in a folder, one ``classifier-<key>.pt`` file per key.

    ``load`` returns None for a key never stored and raises for an unreadable
    file (the caller warns and retrains); ``save`` writes atomically. ``prefix``
    names other kinds of entries kept the same way (``inversion``: learned tokens).
    """

    def __init__(self, folder: str | os.PathLike[str], prefix: str = "classifier") -> None:
        self.folder = Path(folder)
        self.prefix = prefix

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lives (named in reports and warnings)."""
        return self.folder / f"{self.prefix}-{key}.pt"

    def load(self, key: str) -> dict[str, Any] | None:
        """The payload stored under ``key``, touched as used now; None when there is none."""
        path = self.path(key)
        if not path.exists():
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True)
        touch(path)  # used now: the cache's size limit evicts least recently used entries first
        return payload

    def save(self, key: str, payload: dict[str, Any]) -> None:
        """Store ``payload`` under ``key`` atomically (a reader never sees half a file)."""
        atomic_write_bytes(self.path(key), _torch_bytes(payload))


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


def describe_part(part: Any, fingerprint: Any = fingerprint_module) -> str:
    """A key part for a pipeline part: a module's ``fingerprint``, a tokenizer's kind and size, or "none"."""
    if part is None:
        return "none"
    if hasattr(part, "state_dict"):
        return fingerprint(part)
    return f"{type(part).__name__}:{len(part)}:{getattr(part, 'model_max_length', '')}"


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

    def describe(self, part: Any) -> str:
        """``describe_part`` with this cache's (memoised) fingerprints."""
        return describe_part(part, self.fingerprint)

    def model_key(self, pipe: Any, extra: dict[str, Any]) -> str:
        """The part of every key that identifies the original model and the sampling settings."""
        parts = [self.fingerprint(pipe.unet), self.fingerprint(pipe.text_encoder), self.describe(pipe.tokenizer)]
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
        touch(path)  # used now: the size limit evicts least recently used entries first
        return state

    def _corrupt(self, path: Path, why: str) -> None:
        self.corrupt += 1
        self.misses += 1
        if self.corrupt == 1:  # one warning per cache: a damaged folder holds hundreds of entries
            warnings.warn(f"pytest-uoc: trajectory cache entry {path} is {why}; it is recomputed (any further "
                          f"damaged entry under {path.parent.parent} is recomputed without a warning of its own)",
                          stacklevel=3)
        path.unlink(missing_ok=True)

    def store(self, model_key: str, prompt: str, seed: int, step: int, state: dict[str, Any]) -> None:
        """Write one image's state atomically, with a checksum."""
        payload = _torch_bytes(state)
        atomic_write_bytes(self._path(model_key, prompt, seed, step),
                           _MAGIC + hashlib.sha256(payload).digest() + payload)
