"""The embedded model world: shipped models load offline, behave, and can be rebuilt."""

from __future__ import annotations

import os

import pytest
import torch

from pytest_uoc import zoo
from pytest_uoc.zoo import world

EXPECTED = ["digits"] + [f"digits-{m}-{c}" for c in ("three", "red")
                         for m in ("esd", "esdu", "ca", "uce", "salun", "conceal", "gold")]


@pytest.fixture(scope="module")
def original():
    return zoo.load("digits")


def test_every_model_ships() -> None:
    assert sorted(zoo.names()) == sorted(EXPECTED)
    assert zoo.names()[0] == "digits"


def test_package_weights_stay_small() -> None:
    total = sum(f.stat().st_size for f in zoo.weights_dir().rglob("*") if f.is_file())
    assert total < 40e6, f"zoo weights take {total / 1e6:.1f} MB"


def test_original_loads_with_plain_diffusers_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = StableDiffusionPipeline.from_pretrained(str(zoo.pipeline_path()), safety_checker=None,
                                                   requires_safety_checker=False)
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"  # as SD 1.4 ships
    assert pipe.unet.config.sample_size == 16 and pipe.vae.config.latent_channels == 4
    tokenizer_files = {f.name for f in (zoo.pipeline_path() / "tokenizer").iterdir()}
    assert tokenizer_files & {"tokenizer.json", "vocab.json"}, tokenizer_files  # saved with the pipeline
    assert pipe.tokenizer("a red handwritten three").input_ids[0] == pipe.tokenizer.bos_token_id


@pytest.mark.parametrize("name", EXPECTED[1:])
def test_every_variant_loads_next_to_the_original(original, name: str) -> None:
    pipe = zoo.load(name, original=original)
    assert pipe.vae is original.vae and pipe.tokenizer is original.tokenizer
    if "conceal" in name:
        assert pipe.unet is original.unet
        assert pipe.text_encoder is not original.text_encoder
        with pytest.raises(ValueError, match="edits the text encoder only"):
            zoo.unet_path(name)
    else:
        assert pipe.text_encoder is original.text_encoder
        assert zoo.unet_path(name).suffix == ".safetensors"
        changed = any(not torch.equal(a, b) for a, b in zip(pipe.unet.parameters(), original.unet.parameters(), strict=True))
        assert changed, f"{name}'s UNet is identical to the original's"


def test_unknown_names_and_zoo_locations() -> None:
    with pytest.raises(ValueError, match="unknown zoo model 'digits-nope'.*the zoo ships: digits"):
        zoo.load("digits-nope")
    assert zoo.resolve("zoo:digits-esd-three") == "digits-esd-three"
    assert str(zoo.resolve("some/folder")) == "some/folder"


@pytest.mark.parametrize("prompt", ["a red handwritten three", "the digit 3 in blue", "un fünf zéro", "drei", "tres"])
def test_tokenizer_round_trip(original, prompt: str) -> None:
    ids = original.tokenizer(prompt).input_ids
    assert len(ids) <= original.tokenizer.model_max_length
    assert original.tokenizer.decode(ids, skip_special_tokens=True) == prompt


def test_generation_is_deterministic_and_well_formed(original) -> None:
    from pytest_uoc.diffusion import PartialDiffusion

    engine = PartialDiffusion(original, original.unet, num_inference_steps=10, batch_size=4)
    a = engine.generate(["a handwritten seven"], 1.0, [3, 4])
    b = engine.generate(["a handwritten seven"], 1.0, [3, 4])
    assert a.images.shape == (2, 3, 32, 32)
    assert torch.equal(a.images, b.images)
    assert a.images.dtype == torch.uint8  # compact: the values a saved PNG holds


def test_judge_figures_of_the_shipped_original(original) -> None:
    """A broken retrain is caught: the original draws the asked digit and colour (50 steps, 8 seeds)."""
    from pytest_uoc.diffusion import PartialDiffusion

    judge = zoo.load_judge()
    manifest = zoo.manifest()["models"]["judge"]
    assert manifest["heldout_digit_accuracy_real"] >= 0.9
    engine = PartialDiffusion(original, original.unet, num_inference_steps=50, batch_size=80)
    prompts = [f"a {color} handwritten {world.DIGIT_WORDS['en'][d]}" for d in range(10)
               for color in ("red", "blue")]
    images = engine.generate(prompts, 1.0, list(range(4))).images
    digits, colors = judge.predict(images)
    expected_digits = torch.tensor([d for d in range(10) for _ in ("red", "blue") for _ in range(4)])
    expected_colors = torch.tensor([list(world.COLORS).index(c) for _ in range(10) for c in ("red", "blue") for _ in range(4)])
    digit_accuracy = float((digits == expected_digits).float().mean())
    color_accuracy = float((colors == expected_colors).float().mean())
    # docs/zoo.md: the shipped (SD 1.x-faithful) original draws the asked digit for 0.94 of images (50
    # steps, 64 seeds per prompt) and the asked colour for 1.00; the old v-prediction zoo 0.72. The first
    # ε-prediction build, which ignored the digit word, scored 0.19 (chance 0.10): the bound catches that.
    assert digit_accuracy >= 0.45, digit_accuracy
    assert color_accuracy >= 0.9, color_accuracy


def test_training_routines_stay_alive(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few steps of every stage on a tiny subset, then the rebuilt zoo loads through the same API."""
    from pytest_uoc.zoo.build import TEST_SIZE
    from tools.zoo.train import build_zoo

    out = tmp_path / "weights"
    manifest = build_zoo(tmp_path / "work", out, steps=2, vae_steps=2, method_steps=2, judge_steps=2,
                         size=TEST_SIZE, limit_images=120)
    assert {"digits", "judge", "digits-esd-three", "digits-gold-red", "digits-conceal-three"} <= set(manifest["models"])
    monkeypatch.setenv("UOC_ZOO_DIR", str(out))
    assert sorted(zoo.names()) == sorted(EXPECTED)
    rebuilt = zoo.load("digits")
    assert rebuilt.unet.config.sample_size == TEST_SIZE.latent_size
    zoo.load("digits-salun-three", original=rebuilt)
    assert os.environ["UOC_ZOO_DIR"] == str(out)
