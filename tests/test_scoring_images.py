"""check_images / check_paired: what is accepted, and the error for every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_uoc.scoring import check_images, check_paired
from pytest_uoc.scoring.images import compact_images, float_images

torch.set_num_threads(1)


def test_valid_images_pass_through_as_float32() -> None:
    images = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    out = check_images(images)
    assert out.dtype == torch.float32
    assert out.shape == (4, 3, 8, 8)
    assert torch.allclose(out, images.float())


def test_one_channel_is_repeated_to_three() -> None:
    gray = torch.rand(2, 1, 5, 5)
    out = check_images(gray)
    assert out.shape == (2, 3, 5, 5)
    for c in range(3):
        assert torch.equal(out[:, c], gray[:, 0])


def test_values_within_tolerance_are_clamped() -> None:
    images = torch.full((1, 3, 4, 4), 0.5)
    images[0, 0, 0, 0] = 1.0005
    images[0, 0, 0, 1] = -0.0005
    out = check_images(images)
    assert float(out.max()) == 1.0
    assert float(out.min()) == 0.0


def test_not_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"images must be a torch.Tensor .* got ndarray"):
        check_images(np.zeros((1, 3, 4, 4), dtype=np.float32))


def test_integer_dtype() -> None:
    with pytest.raises(TypeError, match=r"floating-point .* or a uint8 tensor .* got dtype torch.int32"):
        check_images(torch.zeros(1, 3, 4, 4, dtype=torch.int32))


def test_uint8_images_stay_compact() -> None:
    gray = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    checked = check_images(gray)
    assert checked.dtype == torch.uint8 and checked.shape == (1, 3, 4, 4)
    assert torch.equal(float_images(checked)[0, 2], gray[0, 0].float() / 255)
    with pytest.raises(ValueError, match="4-D"):
        check_images(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_compact_images_round_as_diffusers_and_refuse_nan() -> None:
    from diffusers.image_processor import VaeImageProcessor

    images = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    images[0, 0, 0, 0] = 1.0004  # rounding above 1 is clamped, as the decoders' output is
    compact = compact_images(images)
    expected = VaeImageProcessor.numpy_to_pil(images.clamp(0, 1).permute(0, 2, 3, 1).numpy())
    assert compact.dtype == torch.uint8
    for i, picture in enumerate(expected):
        assert np.array_equal(compact[i].permute(1, 2, 0).numpy(), np.asarray(picture))
    images[1, 1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"decoded images contain NaN: the model produced non-finite output .*1 of 2"):
        compact_images(images)


@pytest.mark.parametrize("shape", [(3, 4, 4), (4, 4), (1, 1, 3, 4, 4)])
def test_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"must be a 4-D tensor N×C×H×W, got {len(shape)}-D"):
        check_images(torch.zeros(shape), name="lambda_p")


@pytest.mark.parametrize("channels", [2, 4])
def test_wrong_channel_count(channels: int) -> None:
    with pytest.raises(ValueError, match=rf"1 or 3 channels .* got C={channels}"):
        check_images(torch.zeros(1, channels, 4, 4))


def test_minus_one_to_one_range_is_rejected_with_a_hint() -> None:
    images = torch.rand(2, 3, 4, 4) * 2 - 1
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got min -0\.\d+ .*\(x \+ 1\) / 2"):
        check_images(images, name="originals")


def test_range_above_one_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"originals must have values in \[0, 1\], got min 0 and max 255"):
        check_images(torch.full((1, 3, 2, 2), 255.0).index_fill_(2, torch.tensor([0]), 0.0), name="originals")


def test_nan_is_reported_as_model_output() -> None:
    images = torch.rand(3, 3, 4, 4)
    images[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"images contain NaN: the model produced non-finite output .*1 of 3 images"):
        check_images(images)


def test_inf_is_reported() -> None:
    images = torch.rand(2, 3, 4, 4)
    images[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"contain inf: the model produced non-finite output"):
        check_images(images)


def test_min_count() -> None:
    with pytest.raises(ValueError, match=r"at least 5 image\(s\), got 4"):
        check_images(torch.rand(4, 3, 4, 4), min_count=5)


def test_check_paired_equal_counts_pass() -> None:
    check_paired(torch.rand(3, 3, 4, 4), torch.rand(3, 3, 8, 8), ("a", "b"))


def test_check_paired_mismatch() -> None:
    with pytest.raises(ValueError, match=r"original has 3 items and unlearned has 2"):
        check_paired(torch.rand(3, 3, 4, 4), torch.rand(2, 3, 4, 4), ("original", "unlearned"))


def test_a_checked_tensor_is_not_checked_again_until_modified(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe, the classifier and the scores all check what they get: each tensor is validated once."""
    valid = torch.rand(3, 3, 4, 4)
    assert check_images(valid) is valid  # float32, 3 channels, in [0, 1]: nothing to convert
    scans = []
    isfinite = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: scans.append(1) or isfinite(t))
    assert check_images(valid, name="again") is valid
    assert scans == []  # not scanned again
    valid[0, 0, 0, 0] = float("nan")  # modified in place: checked again, and refused
    with pytest.raises(ValueError, match="again contain NaN"):
        check_images(valid, name="again")
    assert scans == [1]
    with pytest.raises(ValueError, match=r"at least 5 image\(s\), got 3"):  # a checked tensor, too few for this use
        check_images(check_images(torch.rand(3, 3, 4, 4)), min_count=5)
