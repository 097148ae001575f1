"""CRS exactly as the paper's reference code, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_uoc.scoring import crs_paper, crs_similarity

torch.set_num_threads(1)

S_COS_1 = (1 - math.pi / 4) / (math.pi / 2)  # 0.13662...
S_COS_0 = 1 / (math.pi / 2)  # 0.63662...


class ColourFeatures:
    """Fake classifier: the features of an image are its mean red and green values."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :2].mean(dim=(2, 3))


def coloured(n: int, red: float, green: float) -> torch.Tensor:
    images = torch.zeros(n, 3, 4, 4)
    images[:, 0] = red
    images[:, 1] = green
    return images


def test_similarity_of_known_cosines() -> None:
    fa = torch.tensor([[1.0, 0.0]])
    fb = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
    s = crs_similarity(fa, fb)
    assert s.shape == (1, 4)
    assert s[0, 0].item() == pytest.approx(0.1366197724, abs=1e-9)  # cos 1
    assert s[0, 1].item() == pytest.approx(0.6366197724, abs=1e-9)  # cos 0
    assert s[0, 2].item() == pytest.approx((1 - math.atan(1 / math.sqrt(2))) / (math.pi / 2))  # 0.24479
    assert s[0, 2].item() == pytest.approx(0.2447932, abs=1e-6)
    assert s[0, 3].item() == pytest.approx(1.1366197724, abs=1e-9)  # cos -1


def test_similarity_is_pairwise_and_symmetric() -> None:
    fa = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    fb = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    s = crs_similarity(fa, fb)
    assert s.shape == (3, 4)
    torch.testing.assert_close(s.T, crs_similarity(fb, fa))


def test_similarity_rejects_mismatched_dimensions() -> None:
    with pytest.raises(ValueError, match="same D"):
        crs_similarity(torch.ones(2, 3), torch.ones(2, 4))


def test_crs_paper_forget_and_retain_hand_computed() -> None:
    original = coloured(3, 1.0, 0.0)  # f = [1, 0]
    unlearned = coloured(2, 0.0, 1.0)  # f = [0, 1]
    sweep = {
        0.1: coloured(2, 1.0, 0.0),  # like λO: S_O = s(cos 1), S_U = s(cos 0)
        0.5: coloured(2, 0.5, 0.5),  # half-way: S_O = S_U
    }
    forget = crs_paper(ColourFeatures(), sweep, original, unlearned, kind="forget")
    s_o, s_u, diff = forget.per_psi[0.1]
    assert s_o == pytest.approx(S_COS_1)
    assert s_u == pytest.approx(S_COS_0)
    assert diff == pytest.approx(0.5)
    assert forget.per_psi[0.5][2] == pytest.approx(0.0, abs=1e-12)
    assert forget.value == pytest.approx(0.25)
    # Signed variant: positive = closer to the original domain.
    assert forget.signed[0.1] == pytest.approx(0.5)
    retain = crs_paper(ColourFeatures(), sweep, original, unlearned, kind="retain")
    assert retain.value == pytest.approx(0.75)
    assert retain.kind == "retain"


def test_crs_paper_sign_when_close_to_unlearned() -> None:
    result = crs_paper(
        ColourFeatures(), {0.0: coloured(2, 0.0, 1.0)}, coloured(2, 1.0, 0.0), coloured(2, 0.0, 1.0)
    )
    # |S_U - S_O| is just as large as when λP looks like λO: only the sign tells them apart.
    assert result.value == pytest.approx(0.5)
    assert result.signed[0.0] == pytest.approx(-0.5)


def test_crs_paper_to_dict() -> None:
    result = crs_paper(ColourFeatures(), {0.2: coloured(1, 1.0, 0.0)}, coloured(1, 1.0, 0.0), coloured(1, 0.0, 1.0))
    data = result.to_dict()
    assert data["kind"] == "forget"
    assert "paper" in data["definition"]
    assert data["per_psi"][0]["psi"] == 0.2
    assert data["per_psi"][0]["abs_diff"] == pytest.approx(0.5)


def test_crs_paper_bad_input() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        crs_paper(ColourFeatures(), {0.1: coloured(1, 1, 0)}, coloured(1, 1, 0), coloured(1, 0, 1), kind="both")
    with pytest.raises(ValueError, match="images_by_psi is empty"):
        crs_paper(ColourFeatures(), {}, coloured(1, 1, 0), coloured(1, 0, 1))
    bad = coloured(1, 1, 0)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="unlearned_images contain NaN"):
        crs_paper(ColourFeatures(), {0.1: coloured(1, 1, 0)}, coloured(1, 1, 0), bad)
