"""clip_judge on the zoo's shipped tiny CLIP: real weights, real images, offline (no mocks)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from pytest_uoc.hashing import weights_sha256
from pytest_uoc.judges import JudgeUnavailable, clip_judge, judge_flags
from pytest_uoc.judges.clip import ClipJudge
from pytest_uoc.zoo import world
from pytest_uoc.zoo.clip import clip_dir

THREE = world.concept_prompts("three")
NOT_THREE = [p for d, w in enumerate(world.DIGIT_WORDS["en"]) if d != 3 for p in world.concept_prompts(w)]
RED = world.concept_prompts("red")
NOT_RED = [p for c in world.COLORS if c != "red" for p in world.concept_prompts(c)]


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn", reason="the zoo's digit images need scikit-learn (pip install -e '.[dev]')")
    from tools.zoo.data import load_digit_images

    data = load_digit_images()
    # Every third image: all digits and colours, a third of the CPU time.
    keep = torch.arange(len(data)) % 3 == 0
    return data.subset(keep)


@pytest.fixture(scope="module")
def three_judge() -> ClipJudge:
    return clip_judge(clip_dir(), THREE, NOT_THREE, device="cpu")


def test_flags_threes_far_more_than_other_digits(three_judge, digits):
    flags = three_judge(digits.images)
    assert isinstance(flags, np.ndarray) and flags.dtype == np.bool_ and flags.shape == (len(digits),)
    is_three = (digits.digits == 3).numpy()
    three_rate, other_rate = flags[is_three].mean(), flags[~is_three].mean()
    assert three_rate >= 0.9, f"the tiny CLIP flags only {three_rate:.3f} of the zoo's threes"
    assert other_rate <= 0.05, f"the tiny CLIP flags {other_rate:.3f} of the zoo's other digits"


def test_flags_red_by_colour(digits):
    judge = clip_judge(clip_dir(), RED, NOT_RED, device="cpu")
    flags = judge_flags(judge, digits.images)
    is_red = (digits.colors == list(world.COLORS).index("red")).numpy()
    assert flags[is_red].mean() >= 0.95 and flags[~is_red].mean() <= 0.05, (flags[is_red].mean(),
                                                                            flags[~is_red].mean())


def test_probabilities_are_the_decision(three_judge, digits):
    images = digits.images[:96]
    probs = three_judge.probabilities(images)
    assert probs.shape == (96,) and probs.dtype == torch.float32
    assert bool(((probs >= 0) & (probs <= 1)).all())
    np.testing.assert_array_equal(three_judge(images), (probs > three_judge.threshold).numpy())


def test_larger_images_are_resized_to_the_vision_tower(three_judge, digits):
    # 64×64 (bicubic up) reads as the 32×32 original: the judge resizes back to image_size.
    threes = digits.images[digits.digits == 3][:48]
    big = torch.nn.functional.interpolate(threes, size=(64, 64), mode="bilinear", align_corners=False)
    assert three_judge(big).mean() >= 0.9


def test_deterministic_bit_identical(three_judge, digits):
    images = digits.images[:130]  # over two batches of 64
    first, second = three_judge.probabilities(images), three_judge.probabilities(images)
    assert torch.equal(first, second)
    again = clip_judge(clip_dir(), THREE, NOT_THREE, device="cpu")
    assert torch.equal(first, again.probabilities(images))
    np.testing.assert_array_equal(three_judge(images), again(images))


def test_record_has_weights_hash_and_texts(three_judge):
    import transformers

    record = three_judge.record
    assert three_judge.__name__ == "clip_judge('a handwritten three', ...)" == record.name
    assert record.version == f"transformers {transformers.__version__}"
    assert record.weights == str(clip_dir())
    assert record.weights_sha256 == weights_sha256(clip_dir()) and len(record.weights_sha256) == 64
    assert record.threshold == 0.5
    assert record.classes == tuple(THREE) and record.others == tuple(NOT_THREE)
    assert record.to_dict()["others"] == NOT_THREE


def test_empty_batch(three_judge):
    flags = three_judge(torch.zeros(0, 3, 32, 32))
    assert flags.shape == (0,) and flags.dtype == np.bool_


@pytest.mark.parametrize("images", [torch.zeros(3, 32, 32), torch.zeros(2, 1, 32, 32)])
def test_bad_image_shape(three_judge, images):
    with pytest.raises(ValueError, match=r"N×3×H×W"):
        three_judge(images)


@pytest.mark.parametrize(
    ("concept", "others", "threshold", "message"),
    [
        ([], ["a red digit"], 0.5, r"concept must be a non-empty list of texts, got \[\]"),
        (["a red digit"], [], 0.5, r"others must be a non-empty list of texts, got \[\]"),
        (["a red digit", ""], ["a blue digit"], 0.5, r"every concept text must be a non-empty string, got ''"),
        (["a red digit"], ["a blue digit", "a red digit"], 0.5, r"'a red digit' is in both concept and others"),
        (["a red digit", "a red digit"], ["a blue digit"], 0.5, r"lists 'a red digit' more than once"),
        (["a red digit"], ["a blue digit"], 0.0, r"strictly between 0 and 1, got 0\.0"),
        (["a red digit"], ["a blue digit"], 1, r"strictly between 0 and 1, got 1"),
        (["a red digit"], ["a blue digit"], 1.5, r"got 1\.5"),
        (["a red digit"], ["a blue digit"], math.nan, r"got nan"),
    ],
)
def test_bad_texts_and_threshold(concept, others, threshold, message):
    with pytest.raises(ValueError, match=message) as info:
        clip_judge(clip_dir(), concept, others, threshold=threshold)
    assert not isinstance(info.value, JudgeUnavailable)


def test_hub_name_is_refused():
    with pytest.raises(JudgeUnavailable, match=r"'openai/clip-vit-base-patch32' is not a folder.*never fetched"):
        clip_judge("openai/clip-vit-base-patch32", ["a cat"], ["a dog"])


def test_file_is_refused():
    file = clip_dir() / "model.safetensors"
    with pytest.raises(JudgeUnavailable, match=r"is not a folder \(there is a file there\).*config\.json"):
        clip_judge(file, ["a cat"], ["a dog"])


def test_folder_without_weights(tmp_path):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(clip_dir() / name, tmp_path / name)
    with pytest.raises(JudgeUnavailable, match=r"has no weights \(model\.safetensors or pytorch_model\.bin\)") as info:
        clip_judge(tmp_path, ["a cat"], ["a dog"])
    assert str(tmp_path) in str(info.value)


def test_folder_without_config(tmp_path):
    shutil.copy(clip_dir() / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(JudgeUnavailable, match=r"has no config\.json, no tokenizer files"):
        clip_judge(tmp_path, ["a cat"], ["a dog"])


def test_folder_of_another_model(tmp_path):
    for file in clip_dir().iterdir():
        shutil.copy(file, tmp_path / file.name)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"model_type": "clip_text_model"}))
    with pytest.raises(JudgeUnavailable, match=r"holds a 'clip_text_model' model.*not a CLIPModel"):
        clip_judge(tmp_path, ["a cat"], ["a dog"])


def test_clip_dir_missing_names_the_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("UOC_ZOO_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m tools\.zoo\.clip --out pytest_uoc/zoo/weights/clip"):
        clip_dir()
