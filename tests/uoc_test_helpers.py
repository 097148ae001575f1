"""Small fakes shared by the scoring tests (imported as a module: tests/ is on sys.path)."""

from __future__ import annotations

import torch


class MeanPixelClassifier:
    """Fake domain classifier: P(original) is the mean pixel value of the image."""

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3))


def constant_images(values: list[float]) -> torch.Tensor:
    """One flat 3×4×4 image per value, every pixel equal to it."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
