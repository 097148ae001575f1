"""Retention (model integrity, arXiv 2411.02068): how much unlearning changed everything else.

For each retain prompt and seed, the distance between the original model's
image and the unlearned model's image (same prompt, same seed), averaged over
pairs with a bootstrap interval. LPIPS is used where its weights are on disk;
offline the fallbacks need no download: ``1 - SSIM`` or the cosine distance of
the domain classifier's features. Every result names its distance.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..pixels import FLOAT_BATCH
from .crs import FeatureModel
from .images import check_images, check_paired, float_images
from .stats import Estimate, bootstrap_mean

__all__ = ["DISTANCES", "RetentionResult", "retention", "ssim"]

#: Accepted values of ``distance``.
DISTANCES = ("auto", "ssim", "features", "lpips")


@dataclass(frozen=True)
class RetentionResult:
    """Mean paired distance with its interval, the distance's name and per-pair distances.

    0 means the unlearned model draws exactly what the original drew for
    retain prompts; larger means more collateral damage.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    distance: str
    per_image: np.ndarray = field(compare=False, repr=False)

    @property
    def halfwidth(self) -> float:
        return (self.high - self.low) / 2

    @property
    def estimate(self) -> Estimate:
        return Estimate(self.mean, self.low, self.high, self.n, self.confidence)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, per-image distances included as a list."""
        data = asdict(self)
        data["per_image"] = [float(v) for v in self.per_image]
        return data


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of paired images in [0, 1] (float64 tensor [N]), by torchmetrics.

    Wang et al. 2004 as torchmetrics computes it (``structural_similarity_index_measure``):
    Gaussian window σ = 1.5 (11×11), data range 1, K1 = 0.01, K2 = 0.03, borders
    reflect-padded so every pixel has a value, averaged over positions and channels. Until
    issue 22 pytest-uoc computed SSIM by hand over "valid" positions only. On the zoo's
    images (ESD-red against the original, 32 yellow-prompt pairs, scripts/ssim_agreement.py)
    the mean distance moved by 0.0013 (0.3711 → 0.3724), single images by up to 0.16 (the
    digits' black borders count now); on noise images the two agree within 0.002 at 32 px.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    a = check_images(a, name="a")
    b = check_images(b, name="b")
    if a.shape != b.shape:
        raise ValueError(f"paired images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    h, w = a.shape[-2:]
    if min(h, w) < 7:
        raise ValueError(f"SSIM needs images of at least 7×7 pixels, got {h}×{w}")
    values = [  # a chunk at a time in float64: compact 512 px sets are never whole in float64
        structural_similarity_index_measure(float_images(a[i:i + FLOAT_BATCH]).double(),
                                            float_images(b[i:i + FLOAT_BATCH]).double(), gaussian_kernel=True,
                                            sigma=1.5, kernel_size=11, data_range=1.0, k1=0.01, k2=0.03,
                                            reduction="none").double().reshape(-1)
        for i in range(0, a.shape[0], FLOAT_BATCH)
    ]
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)


def _feature_distance(classifier: FeatureModel, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    fa = torch.as_tensor(classifier.features(a)).double()
    fb = torch.as_tensor(classifier.features(b)).double()
    cosine = F.cosine_similarity(fa, fb, dim=1).clamp(-1.0, 1.0)
    return (1.0 - cosine).numpy()


def _lpips_model(lpips_path: Path) -> Any:
    """An LPIPS model built offline and loaded from a full state dict on disk.

    The file must hold an ``lpips.LPIPS`` state dict (backbone ``net.*`` and
    linear ``lin*`` layers), e.g. saved with ``torch.save(model.state_dict())``
    on a machine that has the weights.
    """
    if not lpips_path.is_file():
        raise FileNotFoundError(f"lpips_path {str(lpips_path)!r} does not exist or is not a file")
    try:
        import lpips
    except ImportError as exc:
        raise ImportError(
            "distance='lpips' needs the `lpips` package (pip install lpips); "
            "use distance='ssim' or 'features' offline"
        ) from exc
    state = torch.load(lpips_path, map_location="cpu", weights_only=True)
    first = state.get("net.slice1.0.weight")
    if first is None:
        raise ValueError(f"{str(lpips_path)!r} does not hold an LPIPS state dict (no 'net.slice1.0.weight')")
    if first.shape[-1] == 11:
        net = "alex"
    elif any(k.startswith("lin5") or k.startswith("lin6") for k in state):
        net = "squeeze"
    else:
        net = "vgg"
    # pnet_rand=True: build the backbone without downloading torchvision weights.
    model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.inference_mode()
def _lpips_distance(model: Any, a: torch.Tensor, b: torch.Tensor, batch: int = 64) -> np.ndarray:
    out = []
    for start in range(0, a.shape[0], batch):
        d = model(float_images(a[start:start + batch]), float_images(b[start:start + batch]), normalize=True)
        out.append(d.reshape(-1).double())
    return torch.cat(out).numpy()


def retention(
    original_images: torch.Tensor,
    unlearned_images: torch.Tensor,
    *,
    distance: str = "auto",
    classifier: FeatureModel | None = None,
    lpips_path: str | os.PathLike[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> RetentionResult:
    """Mean distance between paired original and unlearned images, with a bootstrap CI.

    Pair ``i`` is the same retain prompt and seed on both models. Distances:
    ``"lpips"`` (needs ``lpips_path``, a local LPIPS state dict, and the
    ``lpips`` package), ``"ssim"`` (1 - SSIM, see :func:`ssim`),
    ``"features"`` (1 - cosine of ``classifier``'s penultimate features),
    ``"auto"``: LPIPS when ``lpips_path`` is given and usable, else SSIM
    (with a warning when a given path could not be used).
    """
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; allowed: {', '.join(DISTANCES)}")
    original = check_images(original_images, name="original_images")
    unlearned = check_images(unlearned_images, name="unlearned_images")
    check_paired(original, unlearned, ("original_images", "unlearned_images"))
    if original.shape != unlearned.shape:
        raise ValueError(
            "paired images must have the same size, got "
            f"{tuple(original.shape)} and {tuple(unlearned.shape)}"
        )

    model = None
    if distance in ("lpips", "auto") and lpips_path is not None:
        try:
            model = _lpips_model(Path(lpips_path))
        except Exception as exc:  # noqa: BLE001 - "auto" falls back on any unusable LPIPS file
            if distance == "lpips":
                raise
            warnings.warn(f"LPIPS unavailable ({exc}); retention falls back to 1 - SSIM", stacklevel=2)
    elif distance == "lpips":
        raise ValueError("distance='lpips' needs lpips_path, a local file with LPIPS weights")

    if model is not None:
        name, values = "lpips", _lpips_distance(model, original, unlearned)
    elif distance == "features":
        if classifier is None:
            raise ValueError("distance='features' needs a classifier (its penultimate features are compared)")
        name, values = "features", _feature_distance(classifier, original, unlearned)
    else:
        name, values = "ssim", (1.0 - ssim(original, unlearned)).numpy()
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the {name} distance produced non-finite values")
    values.setflags(write=False)
    est = bootstrap_mean(values, n_boot=n_boot, seed=seed)
    return RetentionResult(est.mean, est.low, est.high, est.n, est.confidence, name, values)
