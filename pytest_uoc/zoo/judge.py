"""The digit judge: a small CNN that reads the digit and the colour of an image.

Trained on real coloured digits (and their VAE reconstructions, so it reads
generated images as well as real ones), it measures what the zoo's models
draw: the fraction of images showing the asked digit or colour.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..pixels import float_images

__all__ = ["DigitJudge", "load_judge"]


class DigitJudge(nn.Module):
    """Two heads on a shared trunk: digit (10 classes) and colour (4 classes)."""

    def __init__(self, num_colors: int = 4) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 96, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.digit = nn.Linear(96 * 4, 10)
        self.color = nn.Linear(96 * 4, num_colors)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(images * 2 - 1)
        return self.digit(features), self.color(features)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted (digit, colour index) for images N×3×32×32 in [0, 1] (or uint8)."""
        self.eval()
        digits, colors = [], []
        for start in range(0, images.shape[0], batch):
            chunk = float_images(images[start:start + batch])  # float in [0, 1], or compact uint8
            if chunk.shape[-1] != 32:
                chunk = F.interpolate(chunk, size=(32, 32), mode="bilinear", align_corners=False)
            d, c = self(chunk)
            digits.append(d.argmax(1))
            colors.append(c.argmax(1))
        return torch.cat(digits), torch.cat(colors)


def load_judge(path: str | Path) -> DigitJudge:
    """Load a judge from a safetensors file."""
    from safetensors.torch import load_file

    judge = DigitJudge()
    judge.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return judge.eval()
