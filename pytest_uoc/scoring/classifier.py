"""The domain classifier: λO (label 1, "original domain") against λU (label 0).

Every score of the paper reads this classifier: CCS is its probability of
label 1, CRS compares its penultimate features. A classifier that cannot tell
λO from λU makes those scores meaningless, so it is always trained and
evaluated on disjoint seeds and carries its held-out accuracy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..units import BACKBONES, CLASSIFIER_RECIPES
from .images import check_images, check_paired, float_batches

__all__ = [
    "BACKBONES",
    "ClassifierCache",
    "MIN_HELDOUT_GROUPS",
    "MIN_IMAGE_SIZE",
    "MIN_PER_CLASS",
    "RECIPES",
    "DomainClassifier",
    "train_domain_classifier",
]

#: Training recipes: "small" (default, fast on CPU) and "paper" (the paper's settings).
RECIPES = CLASSIFIER_RECIPES
#: Minimum images per class (λO and λU each).
MIN_PER_CLASS = 8
#: Minimum number of seed groups in the held-out split.
MIN_HELDOUT_GROUPS = 2
#: Smallest image_size each backbone accepts (DenseNet's pooling needs 32 px).
MIN_IMAGE_SIZE = {"resnet18": 8, "densenet121": 32, "efficientnet_b0": 8}

class ClassifierCache(Protocol):
    """Where trained classifiers are kept: scoring computes the key and the payload, the store
    keeps the file (``pytest_uoc.stores.ClassifierStore`` is the folder store).

    ``load`` returns None for a key never stored and raises for an unreadable entry.
    """

    def path(self, key: str) -> Path: ...

    def load(self, key: str) -> dict[str, Any] | None: ...

    def save(self, key: str, payload: dict[str, Any]) -> None: ...


#: 2: float tensors stored in float16, the model rounded to them before it is scored.
_CACHE_FORMAT = 2
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class DomainClassifier:
    """A trained λO-vs-λU classifier with its held-out accuracy and settings.

    ``probabilities`` gives P(label 1 = original domain) per image and
    ``features`` the penultimate-layer outputs used by CRS; both run the model
    in eval mode under ``torch.inference_mode`` and are deterministic.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        backbone: str,
        image_size: int,
        heldout_accuracy: float,
        train_accuracy: float,
        train_seconds: float,
        settings: dict[str, Any],
        n_train: int,
        n_heldout: int,
        device: str | torch.device = "cpu",
        cache_path: Path | None = None,
        from_cache: bool = False,
    ) -> None:
        self.model = model
        self.backbone = backbone
        self.image_size = int(image_size)
        self.heldout_accuracy = float(heldout_accuracy)
        self.train_accuracy = float(train_accuracy)
        self.train_seconds = float(train_seconds)
        self.settings = dict(settings)
        self.n_train = int(n_train)
        self.n_heldout = int(n_heldout)
        self.device = torch.device(device)
        self.cache_path = cache_path
        self.from_cache = from_cache
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self._mean = torch.tensor(cfg.get("mean", _IMAGENET_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg.get("std", _IMAGENET_STD), dtype=torch.float32).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return (
            f"DomainClassifier(backbone={self.backbone!r}, image_size={self.image_size}, "
            f"heldout_accuracy={self.heldout_accuracy:.3f}, n_train={self.n_train}, "
            f"n_heldout={self.n_heldout}, recipe={self.settings.get('recipe')!r})"
        )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Validated images resized to ``image_size`` and normalised for the backbone (on CPU)."""
        return _preprocess(check_images(images), self.image_size, self._mean, self._std)

    @torch.inference_mode()
    def _run(self, images: torch.Tensor, batch_size: int, pre_logits: bool) -> torch.Tensor:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        prepared = self.preprocess(images)
        self.model.eval()
        outputs = []
        for start in range(0, prepared.shape[0], batch_size):
            batch = prepared[start:start + batch_size].to(self.device)
            features = _penultimate(self.model, batch)
            if pre_logits:
                outputs.append(features.float().cpu())
            else:
                logits = self.model.get_classifier()(features)
                outputs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
        return torch.cat(outputs)

    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """P(label 1, the original domain λO) for each image: a float tensor of shape [N]."""
        # clone() outside inference mode: callers get an ordinary tensor, usable with autograd.
        return self._run(images, batch_size, pre_logits=False).clone()

    def features(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Penultimate-layer outputs (pooled, before the 2-way head): a tensor [N, D]."""
        return self._run(images, batch_size, pre_logits=True).clone()

    def to_dict(self) -> dict[str, Any]:
        """Summary without the weights (for reports)."""
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "heldout_accuracy": self.heldout_accuracy,
            "train_accuracy": self.train_accuracy,
            "train_seconds": self.train_seconds,
            "n_train": self.n_train,
            "n_heldout": self.n_heldout,
            "settings": dict(self.settings),
            "cache_path": str(self.cache_path) if self.cache_path else None,
            "from_cache": self.from_cache,
        }


# --------------------------------------------------------------------------- helpers


def _penultimate(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(batch), pre_logits=True)


def _preprocess(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Images (float in [0, 1] or uint8) resized to ``size`` and normalised; compact sets a batch at a time."""
    return torch.cat([_preprocess_chunk(batch, size, mean, std) for batch in float_batches(images.cpu())])


def _preprocess_chunk(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    if images.shape[-2:] != (size, size):
        down = images.shape[-1] > size or images.shape[-2] > size
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=down
        )
    return ((images - mean) / std).contiguous()


def _create_model(backbone: str) -> nn.Module:
    import timm

    # pretrained=False always: nothing may be downloaded.
    return timm.create_model(backbone, pretrained=False, num_classes=2)


def _load_pretrained(model: nn.Module, path: Path) -> None:
    """Load ImageNet weights from a local file, ignoring the classifier head."""
    if not path.is_file():
        raise FileNotFoundError(f"pretrained_path {str(path)!r} does not exist or is not a file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"pretrained_path {str(path)!r} does not hold a state dict")
    head = model.pretrained_cfg.get("classifier", "fc")
    heads = (head,) if isinstance(head, str) else tuple(head)
    state = {
        k.removeprefix("module."): v
        for k, v in state.items()
        if not any(k.removeprefix("module.").startswith(h + ".") for h in heads)
    }
    architecture = model.pretrained_cfg.get("architecture")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[1:2]
        raise ValueError(
            f"pretrained_path {str(path)!r} does not match the {architecture} backbone: {first}"
        ) from exc
    missing = [k for k in result.missing_keys if not any(k.startswith(h + ".") for h in heads)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"pretrained_path {str(path)!r} does not match the {architecture} "
            f"backbone: missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _normalise_groups(groups: Sequence[Any] | None, n: int) -> list[Any]:
    if groups is None:
        return list(range(n))
    values = list(groups.tolist() if hasattr(groups, "tolist") else groups)
    if len(values) != n:
        raise ValueError(
            f"groups must give one seed per image pair ({n} pairs), got {len(values)} groups"
        )
    return [v.item() if hasattr(v, "item") else v for v in values]


def _split_groups(groups: list[Any], heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Indices of train and held-out pairs, split by group so no seed is in both."""
    unique: list[Any] = []
    seen: set[Any] = set()
    for g in groups:
        if g not in seen:
            seen.add(g)
            unique.append(g)
    try:
        unique.sort()
    except TypeError:
        unique.sort(key=repr)
    n_groups = len(unique)
    n_held = int(math.floor(n_groups * heldout_fraction + 0.5))
    if n_held < MIN_HELDOUT_GROUPS or n_held >= n_groups:
        need = next(
            (g for g in range(MIN_HELDOUT_GROUPS + 1, 100_000)
             if MIN_HELDOUT_GROUPS <= math.floor(g * heldout_fraction + 0.5) < g),
            None,
        )
        raise ValueError(
            f"too few seed groups: the held-out split needs at least {MIN_HELDOUT_GROUPS} seeds "
            f"and the train split at least 1; with heldout_fraction={heldout_fraction} that means "
            f"at least {need} distinct seeds, got {n_groups}"
        )
    order = np.random.default_rng(seed).permutation(n_groups)
    held = {unique[i] for i in order[:n_held]}
    is_held = np.array([g in held for g in groups])
    return np.flatnonzero(~is_held), np.flatnonzero(is_held), n_held


def _resolve_settings(
    recipe: str, backbone: str, epochs: int | None, batch_size: int | None, lr: float | None,
    image_size: int | None, input_size: int, heldout_fraction: float, seed: int,
    pretrained_sha: str | None,
) -> dict[str, Any]:
    if recipe == "paper":
        settings = {
            "optimizer": "sgd", "momentum": 0.9, "lr": 1e-3, "batch_size": 32, "epochs": 10,
            "image_size": 224, "triplet_margin": 1.0, "triplet_weight": 1.0, "max_shift": 0,
            "precise_bn": False,
        }
    else:
        settings = {
            "optimizer": "adam", "momentum": None, "lr": 1e-3, "batch_size": 16, "epochs": 8,
            "image_size": 64 if input_size <= 64 else 128, "triplet_margin": 1.0,
            "triplet_weight": 0.0, "max_shift": None, "precise_bn": True,
        }
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("image_size", image_size)):
        if value is not None:
            settings[key] = value
    if settings["max_shift"] is None:
        settings["max_shift"] = max(1, int(settings["image_size"]) // 16)
    if int(settings["epochs"]) < 1 or int(settings["batch_size"]) < 2:
        raise ValueError(
            f"epochs must be >= 1 and batch_size >= 2, got {settings['epochs']} and {settings['batch_size']}"
        )
    if int(settings["image_size"]) < MIN_IMAGE_SIZE[backbone]:
        raise ValueError(
            f"image_size for {backbone} must be at least {MIN_IMAGE_SIZE[backbone]} pixels, "
            f"got {settings['image_size']}"
        )
    if not float(settings["lr"]) > 0:
        raise ValueError(f"lr must be positive, got {settings['lr']}")
    settings.update(
        recipe=recipe, backbone=backbone, heldout_fraction=float(heldout_fraction), seed=int(seed),
        pretrained_sha256=pretrained_sha,
    )
    return settings


def _cache_key(
    original: torch.Tensor, unlearned: torch.Tensor, groups: list[Any], settings: dict[str, Any]
) -> str:
    digest = hashlib.sha256()
    digest.update(f"uoc-domain-classifier-v{_CACHE_FORMAT}".encode())
    for images in (original, unlearned):
        # Compact (uint8) images are hashed as they are: no float32 copy of a whole set.
        array = images.detach().cpu().contiguous().numpy()
        digest.update(repr((array.shape, str(array.dtype))).encode())
        digest.update(array.tobytes())
    digest.update(json.dumps([repr(g) for g in groups]).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge-replicated); no flips."""
    if max_shift <= 0:
        return batch
    size_h, size_w = batch.shape[-2:]
    padded = F.pad(batch, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (batch.shape[0], 2), generator=generator)
    return torch.stack([
        padded[i, :, dy:dy + size_h, dx:dx + size_w] for i, (dy, dx) in enumerate(offsets.tolist())
    ])


def _triplet_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float, generator: torch.Generator
) -> torch.Tensor:
    """Triplet loss with a random positive and negative per anchor, picked within the batch."""
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    other = labels[:, None] != labels[None, :]
    valid = same.any(1) & other.any(1)
    if not bool(valid.any()):
        return features.sum() * 0.0
    scores = torch.rand(same.shape, generator=generator)
    positive = torch.where(same, scores, torch.full_like(scores, -1.0)).argmax(1)
    negative = torch.where(other, scores, torch.full_like(scores, -1.0)).argmax(1)
    anchor = features[valid]
    return F.triplet_margin_loss(
        anchor, features[positive[valid]].to(anchor.device), features[negative[valid]].to(anchor.device),
        margin=margin,
    )


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:  # BatchNorm cannot train on one image
        chunks.pop()
    return chunks


@torch.no_grad()
def _precise_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> None:
    """Recompute BatchNorm running statistics as exact averages over the training images.

    After a few dozen optimiser steps the exponential running averages still
    lag the weights; exact statistics make eval-mode predictions match training.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    model.eval()
    momenta = []
    for norm in norms:
        momenta.append(norm.momentum)
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    try:
        for start in range(0, images.shape[0], batch_size):
            model(images[start:start + batch_size].to(device))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()


@torch.inference_mode()
def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], 256):
        logits = model(images[start:start + 256].to(device))
        correct += int((logits.argmax(1).cpu() == labels[start:start + 256]).sum())
    return correct / max(1, images.shape[0])


def _adam(model: nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam, fused where the build supports it (5x faster steps on CPU, same arithmetic)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def _train(
    model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, settings: dict[str, Any],
    device: torch.device,
) -> None:
    generator = torch.Generator().manual_seed(int(settings["seed"]) + 1)
    if settings["optimizer"] == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=float(settings["lr"]), momentum=float(settings["momentum"])
        )
    else:
        optimizer = _adam(model, float(settings["lr"]), device)
    triplet_weight = float(settings["triplet_weight"])
    for _ in range(int(settings["epochs"])):
        model.train()
        for index in _batches(train_x.shape[0], int(settings["batch_size"]), generator):
            batch = _shift(train_x[index], int(settings["max_shift"]), generator).to(device)
            labels = train_y[index]
            features = _penultimate(model, batch)
            logits = model.get_classifier()(features)
            loss = F.cross_entropy(logits, labels.to(device))
            if triplet_weight:
                loss = loss + triplet_weight * _triplet_loss(
                    features, labels.to(device), float(settings["triplet_margin"]), generator
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if settings["precise_bn"]:
        _precise_batchnorm(model, train_x, 64, device)
    model.eval()


#: Largest magnitude float16 holds; a tensor with larger values is cached in float32.
_FP16_MAX = 65504.0


def _storable_fp16(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() and tensor.numel() > 0 and float(tensor.abs().max()) < _FP16_MAX


def _round_to_stored(model: nn.Module) -> None:
    """Round the weights to what the cache stores (float16), in place."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if _storable_fp16(tensor):
                tensor.copy_(tensor.half().to(tensor.dtype))


def _compact_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as the cache keeps it: float tensors in float16 (half the bytes)."""
    return {k: (v.detach().half() if _storable_fp16(v) else v.detach()).cpu()
            for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- entry point


def train_domain_classifier(
    original_images: torch.Tensor,
    unlearned_images: torch.Tensor,
    *,
    groups: Sequence[Any] | None = None,
    backbone: str = "resnet18",
    recipe: str = "small",
    pretrained_path: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    image_size: int | None = None,
    heldout_fraction: float = 0.25,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    store: ClassifierCache | None = None,
) -> DomainClassifier:
    """Train the λO (label 1) vs λU (label 0) classifier and measure it on held-out seeds.

    ``original_images[i]`` and ``unlearned_images[i]`` come from the same
    prompt and seed; ``groups[i]`` is that seed (default: each index is its own
    group). The held-out split takes ``heldout_fraction`` of the groups, so one
    seed is never on both sides. Needs at least ``MIN_PER_CLASS`` (8) images
    per class and ``MIN_HELDOUT_GROUPS`` (2) held-out groups.

    Recipes (any of epochs, batch_size, lr, image_size overrides the recipe):

    * ``"paper"``: the paper's fine-tuning, SGD lr 1e-3 momentum 0.9, batch
      32, 10 epochs, cross-entropy plus a triplet loss (margin 1.0) on the
      penultimate features with a random positive and negative per anchor
      picked within the batch, images at 224 px, no augmentation. Meant for
      ImageNet weights (``pretrained_path``) and a GPU.
    * ``"small"`` (default): for random-init backbones on the CPU at small
      sizes. Adam lr 1e-3, batch 16, 8 epochs, cross-entropy only, images
      resized to 64 px (128 px for inputs larger than 64 px), augmented by
      random shifts of up to image_size/16 px (no flips: a mirrored digit is
      another shape), and exact BatchNorm statistics recomputed over the
      training images after training (few steps leave running averages stale).

    Deterministic for a fixed ``seed``: weights are initialised under
    ``torch.manual_seed(seed)`` inside a forked RNG (the caller's global RNG is
    untouched), shuffling and augmentation use seeded generators, and cuDNN is
    pinned to deterministic kernels on a GPU.

    With ``cache_dir`` the trained state is stored as
    ``classifier-<sha256>.pt`` keyed by the images, groups and all settings,
    written atomically, and reused by an identical call; an unreadable cache
    file is reported with a warning and replaced by a fresh training. The files
    are the cache layer's: ``cache_dir`` stands for ``store=ClassifierStore(cache_dir)``
    (``pytest_uoc.stores``); any other ``ClassifierCache`` may be passed as ``store``.
    ImageNet weights are read only from ``pretrained_path`` (a local file; the
    classifier head's keys are ignored); otherwise weights start random.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; allowed: {', '.join(RECIPES)}")
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must lie strictly between 0 and 1, got {heldout_fraction}")
    original = check_images(original_images, name="original_images")
    unlearned = check_images(unlearned_images, name="unlearned_images")
    check_paired(original, unlearned, ("original_images", "unlearned_images"))
    n = original.shape[0]
    if n < MIN_PER_CLASS:
        raise ValueError(
            f"too few images: the domain classifier needs at least {MIN_PER_CLASS} images per class "
            f"(λO and λU), got {n}"
        )
    group_list = _normalise_groups(groups, n)
    train_idx, held_idx, _ = _split_groups(group_list, heldout_fraction, seed)

    pretrained = Path(pretrained_path) if pretrained_path is not None else None
    if pretrained is not None and not pretrained.is_file():
        raise FileNotFoundError(f"pretrained_path {str(pretrained)!r} does not exist or is not a file")
    settings = _resolve_settings(
        recipe, backbone, epochs, batch_size, lr, image_size,
        max(original.shape[-1], original.shape[-2], unlearned.shape[-1], unlearned.shape[-2]),
        heldout_fraction, seed, _file_sha256(pretrained) if pretrained else None,
    )
    device = torch.device(device)
    if cache_dir is not None:
        if store is not None:
            raise ValueError("give cache_dir or store, not both")
        from ..stores import ClassifierStore

        store = ClassifierStore(cache_dir)

    cache_path = None
    if store is not None:
        key = _cache_key(original, unlearned, group_list, settings)
        cache_path = store.path(key)
        try:
            payload = store.load(key)
            if payload is not None:
                if payload.get("format") != _CACHE_FORMAT or payload.get("key") != key:
                    raise ValueError("format or key mismatch")
                model = _create_model(backbone)
                reference, stored = model.state_dict(), payload["state_dict"]
                if set(stored) != set(reference):
                    raise ValueError("the entry does not match the backbone")
                model.load_state_dict({k: v.to(reference[k].dtype) for k, v in stored.items()})
                model.to(device).eval()
                return DomainClassifier(
                    model, backbone=backbone, image_size=int(settings["image_size"]),
                    heldout_accuracy=payload["heldout_accuracy"], train_accuracy=payload["train_accuracy"],
                    train_seconds=payload["train_seconds"], settings=settings,
                    n_train=payload["n_train"], n_heldout=payload["n_heldout"], device=device,
                    cache_path=cache_path, from_cache=True,
                )
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is retrained
            warnings.warn(
                f"ignoring corrupt domain-classifier cache file {cache_path} ({exc!r}); retraining",
                stacklevel=2,
            )

    started = time.perf_counter()
    size = int(settings["image_size"])
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    cudnn_flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        # CPU kernels are deterministic already; on CUDA pin cuDNN to deterministic kernels.
        # (torch.use_deterministic_algorithms is avoided: its first call imports the compiler
        # stack, seconds of start-up for nothing on the CPU.)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            model = _create_model(backbone)
            if pretrained is not None:
                _load_pretrained(model, pretrained)
            model.to(device)
            cfg = model.pretrained_cfg
            mean = torch.tensor(cfg.get("mean", _IMAGENET_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(cfg.get("std", _IMAGENET_STD), dtype=torch.float32).view(1, 3, 1, 1)
            x_orig = _preprocess(original, size, mean, std)
            x_unl = _preprocess(unlearned, size, mean, std)

            def split(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
                idx = torch.as_tensor(index, dtype=torch.long)
                x = torch.cat([x_orig[idx], x_unl[idx]])
                y = torch.cat([torch.ones(len(idx), dtype=torch.long), torch.zeros(len(idx), dtype=torch.long)])
                return x, y

            train_x, train_y = split(train_idx)
            held_x, held_y = split(held_idx)
            _train(model, train_x, train_y, settings, device)
            # Score with the weights the cache keeps (float16), with or without a cache, so every run agrees.
            _round_to_stored(model)
            train_accuracy = _accuracy(model, train_x, train_y, device)
            heldout_accuracy = _accuracy(model, held_x, held_y, device)
        finally:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_flags
    train_seconds = time.perf_counter() - started

    classifier = DomainClassifier(
        model, backbone=backbone, image_size=size, heldout_accuracy=heldout_accuracy,
        train_accuracy=train_accuracy, train_seconds=train_seconds, settings=settings,
        n_train=int(train_y.numel()), n_heldout=int(held_y.numel()), device=device,
        cache_path=cache_path, from_cache=False,
    )
    if store is not None:
        store.save(key, {
            "format": _CACHE_FORMAT, "key": key,
            "state_dict": _compact_state(model),
            "heldout_accuracy": heldout_accuracy, "train_accuracy": train_accuracy,
            "train_seconds": train_seconds, "n_train": classifier.n_train,
            "n_heldout": classifier.n_heldout, "settings": json.dumps(settings, default=str),
        })
    return classifier
