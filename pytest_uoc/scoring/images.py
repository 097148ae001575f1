"""Validation of image tensors before they are scored, and their compact form.

Every scoring function takes images as tensors N×C×H×W: float in [0, 1], or
uint8 in [0, 255] (the compact form the engine keeps decoded images in, 1 byte
per pixel channel, the same values ``PIL`` would save). A bad tensor (wrong
rank, wrong channel count, [-1, 1] range, NaN from a diverged unlearned model)
must fail loudly with what was expected, never be scored.
"""

from __future__ import annotations

import torch
from torch.utils.weak import WeakIdKeyDictionary

from ..pixels import check_finite, compact_images, float_batches, float_images

__all__ = ["RANGE_TOLERANCE", "check_images", "check_paired", "compact_images", "float_batches", "float_images"]

#: How far outside [0, 1] a value may lie (rounding in decoders) before it is an error.
RANGE_TOLERANCE = 1e-3

#: Tensors ``check_images`` returned, with their version counter then: each is checked once, not again.
_CHECKED: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _version(images: torch.Tensor) -> int:
    """The tensor's in-place modification counter (inference tensors have none: -1, they cannot change outside
    inference mode)."""
    return -1 if images.is_inference() else images._version


def check_images(images: torch.Tensor, *, name: str = "images", min_count: int = 1) -> torch.Tensor:
    """Validate ``images`` and return them as float32 N×3×H×W in [0, 1], or uint8 N×3×H×W as they are.

    Accepts a floating tensor of rank 4 with 1 or 3 channels (1 is repeated to
    3); values may exceed [0, 1] by at most ``RANGE_TOLERANCE`` and are then
    clamped. A uint8 tensor (compact images) is checked for its shape only and
    stays uint8: scorers convert it batch by batch (``float_images``), so a
    whole set is never held in float32. Raises TypeError for a non-tensor or a
    dtype that is neither floating nor uint8 and
    ValueError for the wrong rank, channel count, count, range or non-finite
    values, naming ``name`` and the offending value.

    Valid float32 3-channel images that need nothing are returned as they are
    (the same tensor). A tensor this function returned is not checked again (the
    probe, the classifier and the scores all check what they are given) unless it
    was modified in place since.
    """
    if isinstance(images, torch.Tensor) and _CHECKED.get(images) == _version(images) and len(images) >= min_count:
        return images
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape N×C×H×W with values in [0, 1], "
            f"got {type(images).__name__}"
        )
    compact = images.dtype == torch.uint8
    if not images.is_floating_point() and not compact:
        raise TypeError(
            f"{name} must be a floating-point tensor with values in [0, 1] or a uint8 tensor in [0, 255], "
            f"got dtype {images.dtype}"
        )
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D tensor N×C×H×W, got {images.ndim}-D tensor of shape "
            f"{tuple(images.shape)}"
        )
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 channels (N×C×H×W with C in {{1, 3}}), got C={c} "
            f"in shape {tuple(images.shape)}"
        )
    if h < 1 or w < 1:
        raise ValueError(f"{name} has an empty spatial size {h}×{w}")
    if n < min_count:
        raise ValueError(f"{name} must contain at least {min_count} image(s), got {n}")
    if compact:
        images = (images.expand(-1, 3, -1, -1) if c == 1 else images).contiguous()
        _CHECKED[images] = _version(images)
        return images
    if images.requires_grad:
        images = images.detach()
    check_finite(images, name=name)
    images = images.float()
    if n:
        low, high = float(images.min()), float(images.max())
        if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
            hint = " (images in [-1, 1]? convert with (x + 1) / 2)" if low >= -1 - RANGE_TOLERANCE else ""
            raise ValueError(
                f"{name} must have values in [0, 1], got min {low:.4g} and max {high:.4g}{hint}"
            )
        if low < 0.0 or high > 1.0:
            images = images.clamp(0.0, 1.0)
    if c == 1:
        images = images.expand(-1, 3, -1, -1)
    images = images.contiguous()
    _CHECKED[images] = _version(images)
    return images


def check_paired(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("a", "b")) -> None:
    """Raise ValueError unless ``a`` and ``b`` hold the same number of items.

    Paired sets are images of the same prompts and seeds in the same order, so
    item ``i`` of one belongs with item ``i`` of the other.
    """
    na, nb = len(a), len(b)
    if na != nb:
        raise ValueError(
            f"{names[0]} and {names[1]} must be paired (same prompts and seeds, same order), "
            f"but {names[0]} has {na} items and {names[1]} has {nb}"
        )


