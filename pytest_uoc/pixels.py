"""The compact form decoded images are kept in: uint8 N×3×H×W, 1 byte per pixel channel.

A probe keeps hundreds of decoded images for its life and the trajectory cache
stores them; at 512 px float32 that is gigabytes per probe. uint8 holds exactly
what a user's saved PNG holds (diffusers' ``numpy_to_pil`` rounding), so nothing a
judge or a classifier could see is lost. Scorers convert a chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["FLOAT_BATCH", "check_finite", "compact_images", "float_batches", "float_images"]

#: Compact images converted to float32 at a time (scorers, judges, SSIM, pixel differences).
FLOAT_BATCH = 64


def float_images(images: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1]: uint8 divided by 255, float images cast to float32 (no copy when they are)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def compact_images(images: torch.Tensor, *, name: str = "decoded images") -> torch.Tensor:
    """Float images in [0, 1] as uint8 on the CPU, rounded as diffusers' ``numpy_to_pil`` rounds them.

    The decoded image a user saves as PNG is exactly this tensor. Non-finite
    values (a diverged model) are a ValueError here, since uint8 cannot hold
    them and they must never be scored as black pixels.
    """
    check_finite(images, name=name, cause=": a diverged checkpoint, or an fp16 VAE that overflows")
    return (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu()


def check_finite(images: torch.Tensor, *, name: str = "images", cause: str = "") -> None:
    """Raise ValueError naming ``name``, the kind and count of non-finite values and the images holding them."""
    finite = torch.isfinite(images)
    if bool(finite.all()):
        return
    n = int(images.shape[0])
    n_nan, n_inf = int(torch.isnan(images).sum()), int(torch.isinf(images).sum())
    bad = int((~finite.flatten(1).all(dim=1)).sum())
    kind = "NaN" if n_nan else "inf"
    raise ValueError(
        f"{name} contain {kind}: the model produced non-finite output "
        f"({n_nan} NaN and {n_inf} inf values in {bad} of {n} images{cause}); such images cannot be scored"
    )


def float_batches(images: torch.Tensor) -> Iterator[torch.Tensor]:
    """Images as float32 batches in [0, 1]: compact (uint8) sets ``FLOAT_BATCH`` at a time, float sets whole.

    A classifier, judge or feature model is always handed float images in [0, 1], as its protocol
    says, while a compact 512 px set is never converted whole. An empty set is one empty batch.
    """
    if images.dtype != torch.uint8 or len(images) == 0:
        yield float_images(images)
        return
    for start in range(0, len(images), FLOAT_BATCH):
        yield float_images(images[start:start + FLOAT_BATCH])
