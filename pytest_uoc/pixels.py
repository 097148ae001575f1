"""The compact form decoded images are kept in: uint8 N×3×H×W, 1 byte per pixel channel.

A probe keeps hundreds of decoded images for its life and the trajectory cache
stores them; at 512 px float32 that is gigabytes per probe. uint8 holds exactly
what a user's saved PNG holds (diffusers' ``numpy_to_pil`` rounding), so nothing a
judge or a classifier could see is lost. Scorers convert a chunk at a time.
"""

from __future__ import annotations

import torch

__all__ = ["check_finite", "compact_images", "float_images"]


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
