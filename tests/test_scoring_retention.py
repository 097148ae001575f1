"""Retention: SSIM against hand-computed and naive values, distances, and errors."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from pytest_uoc.scoring import retention, ssim

torch.set_num_threads(1)

C1, C2 = 0.01**2, 0.03**2


def naive_ssim(a: np.ndarray, b: np.ndarray, size: int, sigma: float = 1.5, *, reflect: bool = True) -> float:
    """Textbook SSIM of two single-channel images, one window position at a time.

    ``reflect``: borders reflect-padded so every pixel is a window centre (torchmetrics, today's
    definition); False: only the positions where the window fits (pytest-uoc's own until issue 22).
    """
    if reflect:
        a, b = np.pad(a, size // 2, mode="reflect"), np.pad(b, size // 2, mode="reflect")
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    w = np.outer(g, g)
    w /= w.sum()
    values = []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            pa, pb = a[i:i + size, j:j + size], b[i:i + size, j:j + size]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            values.append(((2 * ma * mb + C1) * (2 * cov + C2)) / ((ma**2 + mb**2 + C1) * (va + vb + C2)))
    return float(np.mean(values))


def test_ssim_of_identical_images_is_one() -> None:
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(images, images), torch.ones(3, dtype=torch.float64))


def test_ssim_of_constant_images_hand_computed() -> None:
    a = torch.full((1, 3, 16, 16), 0.5)
    b = torch.full((1, 3, 16, 16), 0.25)
    expected = (2 * 0.5 * 0.25 + C1) / (0.5**2 + 0.25**2 + C1)  # variances are 0
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.80006, abs=1e-5)


@pytest.mark.parametrize("size", [16, 12, 32])
def test_ssim_matches_a_naive_implementation(size: int) -> None:
    gen = torch.Generator().manual_seed(size)
    a = torch.rand(1, 1, size, size, generator=gen)
    b = (a + 0.2 * torch.rand(1, 1, size, size, generator=gen)).clamp(0, 1)
    expected = naive_ssim(a[0, 0].double().numpy(), b[0, 0].double().numpy(), 11)
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("size", "window", "agreement"), [(32, 11, 0.002), (12, 7, 0.012)])
def test_torchmetrics_ssim_agrees_with_the_former_valid_only_ssim(size: int, window: int, agreement: float) -> None:
    """The figure docs/reliability.md states: how far today's SSIM is from the hand-written one it replaced."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(8, 3, size, size, generator=gen, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(8, 3, size, size, generator=gen, dtype=torch.float64)).clamp(0, 1)
    former = [np.mean([naive_ssim(a[i, c].numpy(), b[i, c].numpy(), window, reflect=False) for c in range(3)])
              for i in range(8)]
    assert np.max(np.abs(ssim(a, b).numpy() - np.array(former))) <= agreement


def test_ssim_rejects_tiny_or_mismatched_images() -> None:
    with pytest.raises(ValueError, match="at least 7×7"):
        ssim(torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6))
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 9, 9))


def test_retention_ssim_default_names_its_distance() -> None:
    a = torch.full((4, 3, 16, 16), 0.5)
    b = a.clone()
    b[2:] = 0.25
    result = retention(a, b, n_boot=100)
    assert result.distance == "ssim"
    one_minus = 1 - (2 * 0.5 * 0.25 + C1) / (0.5**2 + 0.25**2 + C1)
    np.testing.assert_allclose(result.per_image, [0, 0, one_minus, one_minus], atol=1e-6)
    assert result.mean == pytest.approx(one_minus / 2, rel=1e-5)
    assert result.low <= result.mean <= result.high
    assert result.estimate.n == 4
    assert result.to_dict()["distance"] == "ssim"


class ColourFeatures:
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :2].mean(dim=(2, 3))


def test_retention_feature_distance_hand_computed() -> None:
    a = torch.zeros(2, 3, 8, 8)
    a[:, 0] = 1.0  # f = [1, 0]
    b = torch.zeros(2, 3, 8, 8)
    b[0, 0] = 1.0  # identical
    b[1, :2] = 1.0  # f = [1, 1]: cosine 1/sqrt(2)
    result = retention(a, b, distance="features", classifier=ColourFeatures(), n_boot=50)
    assert result.distance == "features"
    np.testing.assert_allclose(result.per_image, [0.0, 1 - 1 / math.sqrt(2)], atol=1e-7)


def test_retention_features_needs_a_classifier() -> None:
    with pytest.raises(ValueError, match="distance='features' needs a classifier"):
        retention(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), distance="features")


def test_retention_lpips_needs_a_path() -> None:
    with pytest.raises(ValueError, match="needs lpips_path"):
        retention(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), distance="lpips")


def test_retention_lpips_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="lpips_path .*does not exist"):
        retention(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), distance="lpips",
                  lpips_path=tmp_path / "nope.pth")


@pytest.mark.skipif(importlib.util.find_spec("lpips") is not None, reason="lpips is installed")
def test_retention_lpips_without_the_package(tmp_path) -> None:
    weights = tmp_path / "lpips.pth"
    torch.save({}, weights)
    with pytest.raises(ImportError, match="needs the `lpips` package"):
        retention(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), distance="lpips", lpips_path=weights)


def test_retention_auto_falls_back_to_ssim_with_a_warning(tmp_path) -> None:
    with pytest.warns(UserWarning, match="falls back to 1 - SSIM"):
        result = retention(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), lpips_path=tmp_path / "missing.pth")
    assert result.distance == "ssim"


def test_retention_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown distance 'l2'"):
        retention(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), distance="l2")
    with pytest.raises(ValueError, match="original_images has 3 items and unlearned_images has 2"):
        retention(torch.rand(3, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="same size"):
        retention(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16))
    nan = torch.rand(2, 3, 8, 8)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="unlearned_images contain NaN"):
        retention(torch.rand(2, 3, 8, 8), nan)
