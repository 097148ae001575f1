"""The digits data set: scikit-learn's handwritten digits, coloured, at 32×32.

scikit-learn ships the 1797 8×8 images inside its package, so the world needs
no download. Every digit is rendered once in every colour of ``world.COLORS``
(strokes in the colour on a black background).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pytest_uoc.zoo.world import COLORS

__all__ = ["DigitImages", "load_digit_images", "render"]

IMAGE_SIZE = 32


@dataclass
class DigitImages:
    """Images in [0, 1] (N×3×32×32) with their digit and colour labels."""

    images: torch.Tensor
    digits: torch.Tensor
    colors: torch.Tensor
    color_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, mask: torch.Tensor) -> DigitImages:
        return DigitImages(self.images[mask], self.digits[mask], self.colors[mask], self.color_names)


def render(gray: torch.Tensor, color: tuple[float, float, float]) -> torch.Tensor:
    """Colour N×1×32×32 stroke intensities in [0, 1] into N×3×32×32 images."""
    tint = torch.tensor(color, dtype=gray.dtype).view(1, 3, 1, 1)
    return (gray * tint).clamp(0, 1)


def load_digit_images() -> DigitImages:
    """Every scikit-learn digit in every colour (1797 × 4 images)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "rebuilding the zoo needs scikit-learn: pip install 'pytest-uoc[zoo]'"
        ) from exc
    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    gray = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    gray = (gray * 1.15).clamp(0, 1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    images, digit_labels, color_labels = [], [], []
    for index, color in enumerate(COLORS.values()):
        images.append(render(gray, color))
        digit_labels.append(labels)
        color_labels.append(torch.full_like(labels, index))
    return DigitImages(torch.cat(images), torch.cat(digit_labels), torch.cat(color_labels), tuple(COLORS))
