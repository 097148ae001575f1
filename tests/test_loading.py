"""Loading unlearned models the ways methods publish them, and bad input to the engine."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from pytest_uoc.diffusion import PartialDiffusion, load_unlearned
from pytest_uoc.diffusion.loading import check_unet_compatible, load_unet_state_dict


def with_scheduler(pipe, **parts):
    """A new pipeline from ``pipe``'s parts, with its own scheduler and the given changes."""
    from diffusers import StableDiffusionPipeline

    components = {**pipe.components, **parts, "requires_safety_checker": False}
    components["scheduler"] = type(pipe.scheduler).from_config(pipe.scheduler.config)
    return StableDiffusionPipeline(**components)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def assert_shares_parts(result, original):
    assert result is not original
    assert result.vae is original.vae
    assert result.text_encoder is original.text_encoder
    assert result.tokenizer is original.tokenizer
    assert result.scheduler is original.scheduler


def assert_is_unlearned(result, original, unlearned_unet):
    """``result`` holds a UNet with the unlearned weights, and the original is untouched."""
    assert result.unet is not original.unet
    assert same_weights(result.unet, unlearned_unet)
    assert not same_weights(result.unet, original.unet)
    assert result.unet.dtype == original.unet.dtype
    assert result.unet.device == original.unet.device


@pytest.fixture
def state(tiny_unet):
    return {k: v.clone() for k, v in tiny_unet.state_dict().items()}


# -- good sources ---------------------------------------------------------------------------


def test_from_a_pipeline_returns_it(tiny_pipe, tiny_unet):
    other = with_scheduler(tiny_pipe, unet=tiny_unet)
    assert load_unlearned(tiny_pipe, other) is other


def test_from_a_unet(tiny_pipe, tiny_unet):
    before = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    result = load_unlearned(tiny_pipe, tiny_unet)
    assert result.unet is tiny_unet
    assert_shares_parts(result, tiny_pipe)
    assert all(torch.equal(v, tiny_pipe.unet.state_dict()[k]) for k, v in before.items())
    assert tiny_pipe.unet is not tiny_unet


@pytest.mark.parametrize("where", ["unet", "parent"])
def test_from_a_diffusers_unet_folder(tiny_pipe, tiny_unet, tmp_path, where):
    tiny_unet.save_pretrained(tmp_path / "unet")
    result = load_unlearned(tiny_pipe, tmp_path / "unet" if where == "unet" else tmp_path)
    assert_is_unlearned(result, tiny_pipe, tiny_unet)
    assert_shares_parts(result, tiny_pipe)


def test_from_a_string_path(tiny_pipe, tiny_unet, tmp_path):
    tiny_unet.save_pretrained(tmp_path / "unet")
    result = load_unlearned(tiny_pipe, str(tmp_path / "unet"))
    assert_is_unlearned(result, tiny_pipe, tiny_unet)


def test_from_a_whole_pipeline_folder(tiny_pipe, tiny_unet, tmp_path):
    with_scheduler(tiny_pipe, unet=tiny_unet).save_pretrained(tmp_path / "pipe")
    result = load_unlearned(tiny_pipe, tmp_path / "pipe")
    assert_is_unlearned(result, tiny_pipe, tiny_unet)
    # A whole pipeline brings its own parts, loaded from disk.
    assert same_weights(result.text_encoder, tiny_pipe.text_encoder)
    assert same_weights(result.vae, tiny_pipe.vae)
    prompt = "a red handwritten three"
    assert result.tokenizer(prompt).input_ids == tiny_pipe.tokenizer(prompt).input_ids


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_from_a_state_dict_file(tiny_pipe, tiny_unet, state, tmp_path, suffix):
    path = tmp_path / f"esd-unet{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    result = load_unlearned(tiny_pipe, path)
    assert_is_unlearned(result, tiny_pipe, tiny_unet)
    assert_shares_parts(result, tiny_pipe)
    # The file's UNet is a new module, not the original's modified in place.
    assert not same_weights(tiny_pipe.unet, tiny_unet)


def test_from_a_unet_prefixed_state_dict(tiny_pipe, tiny_unet, state, tmp_path):
    path = tmp_path / "prefixed.pt"
    torch.save({f"unet.{k}": v for k, v in state.items()}, path)
    assert_is_unlearned(load_unlearned(tiny_pipe, path), tiny_pipe, tiny_unet)


def test_from_a_wrapped_state_dict(tiny_pipe, tiny_unet, state, tmp_path):
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": state}, path)
    assert_is_unlearned(load_unlearned(tiny_pipe, path), tiny_pipe, tiny_unet)


def test_from_a_folder_holding_one_weight_file(tiny_pipe, tiny_unet, state, tmp_path):
    torch.save(state, tmp_path / "diffusers-VanGogh-ESDx1-UNET.pt")
    assert_is_unlearned(load_unlearned(tiny_pipe, tmp_path), tiny_pipe, tiny_unet)


def test_a_loaded_file_gives_the_same_images_as_the_unet(tiny_pipe, tiny_unet, state, tmp_path):
    path = tmp_path / "unet.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(path))
    kwargs = {"num_inference_steps": 4}
    from_file = PartialDiffusion(tiny_pipe, path, **kwargs).generate(["a red handwritten three"], 0.5, [0])
    from_unet = PartialDiffusion(tiny_pipe, tiny_unet, **kwargs).generate(["a red handwritten three"], 0.5, [0])
    assert torch.equal(from_file.images, from_unet.images)


# -- bad sources ----------------------------------------------------------------------------


def test_missing_path_is_named(tiny_pipe, tmp_path):
    missing = tmp_path / "no-such-unet.safetensors"
    with pytest.raises(FileNotFoundError, match="no-such-unet.safetensors"):
        load_unlearned(tiny_pipe, missing)
    with pytest.raises(FileNotFoundError, match="no-such-unet.safetensors"):
        PartialDiffusion(tiny_pipe, str(missing))


def unet_like(tiny_unet, **changes):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_config({**tiny_unet.config, **changes})


@pytest.mark.parametrize(
    ("key", "value"),
    [("cross_attention_dim", 32), ("sample_size", 16), ("in_channels", 9), ("out_channels", 8)],
)
def test_a_unet_of_another_configuration_is_rejected(tiny_pipe, tiny_unet, key, value):
    other = unet_like(tiny_unet, **{key: value})
    with pytest.raises(ValueError, match=rf"{key}: original {tiny_unet.config[key]!r}, unlearned {value!r}"):
        load_unlearned(tiny_pipe, other)
    with pytest.raises(ValueError, match=key):
        check_unet_compatible(tiny_pipe.unet, other)


def test_a_unet_folder_of_another_configuration_is_rejected(tiny_pipe, tiny_unet, tmp_path):
    unet_like(tiny_unet, sample_size=16).save_pretrained(tmp_path / "unet")
    with pytest.raises(ValueError, match="sample_size"):
        load_unlearned(tiny_pipe, tmp_path / "unet")


def test_a_pipeline_of_another_configuration_is_rejected(tiny_pipe, tiny_unet):
    other = with_scheduler(tiny_pipe, unet=unet_like(tiny_unet, cross_attention_dim=32))
    with pytest.raises(ValueError, match="cross_attention_dim"):
        load_unlearned(tiny_pipe, other)


def test_missing_keys_are_named(tiny_pipe, state, tmp_path):
    dropped = sorted(state)[:2]
    for key in dropped:
        del state[key]
    path = tmp_path / "missing.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="2 missing key") as info:
        load_unlearned(tiny_pipe, path)
    for key in dropped:
        assert key in str(info.value)
    assert "missing.pt" in str(info.value)


def test_unexpected_keys_are_named(tiny_pipe, state, tmp_path):
    state["model.diffusion_model.extra.weight"] = torch.zeros(1)
    state["another.bias"] = torch.zeros(1)
    path = tmp_path / "unexpected.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(path))
    with pytest.raises(ValueError, match="2 unexpected key") as info:
        load_unlearned(tiny_pipe, path)
    assert "another.bias" in str(info.value)
    assert "model.diffusion_model.extra.weight" in str(info.value)


def test_wrong_shapes_are_rejected(tiny_pipe, state, tmp_path):
    key = sorted(state)[0]
    state[key] = torch.zeros(*state[key].shape, 2)
    path = tmp_path / "shapes.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="shape") as info:
        load_unlearned(tiny_pipe, path)
    assert key in str(info.value)


def test_a_file_without_tensors_is_rejected(tiny_pipe, tmp_path):
    path = tmp_path / "notes.pt"
    torch.save({"epoch": 3}, path)
    with pytest.raises(ValueError, match="state dict of tensors"):
        load_unlearned(tiny_pipe, path)


@pytest.mark.parametrize("name", ["unet.txt", "unet.onnx", "unet"])
def test_unsupported_suffix_is_rejected(tiny_pipe, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not weights")
    with pytest.raises(ValueError, match="unsupported UNet weight file"):
        load_unlearned(tiny_pipe, path)
    with pytest.raises(ValueError, match="unsupported"):
        load_unet_state_dict(path)


def test_a_folder_of_nothing_is_rejected(tiny_pipe, tmp_path):
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(ValueError, match="neither a diffusers pipeline/unet folder"):
        load_unlearned(tiny_pipe, tmp_path)


@pytest.mark.parametrize("bad", [3, {"conv_in.weight": torch.zeros(1)}, None, 1.5, [1]])
def test_wrong_types_are_rejected(tiny_pipe, bad):
    with pytest.raises(TypeError, match="unlearned model must be a pipeline") as info:
        load_unlearned(tiny_pipe, bad)
    assert type(bad).__name__ in str(info.value)


def test_a_module_that_is_no_unet_is_rejected(tiny_pipe):
    with pytest.raises(TypeError, match="Linear"):
        load_unlearned(tiny_pipe, torch.nn.Linear(2, 2))


def test_an_original_that_is_no_pipeline_is_rejected(tiny_unet):
    with pytest.raises(TypeError, match="lacks .*vae"):
        load_unlearned(tiny_unet, tiny_unet)
    with pytest.raises(TypeError, match="original must be a diffusers pipeline"):
        PartialDiffusion(object(), tiny_unet)


# -- bad input to the engine: raised before any model runs -----------------------------------


@pytest.fixture
def no_models(monkeypatch, tiny_pipe, tiny_unet):
    """Make every UNet, text encoder and VAE call fail: nothing may run."""

    def boom(*args, **kwargs):
        raise AssertionError("a model ran before the input was checked")

    for module in (tiny_pipe.unet, tiny_unet, tiny_pipe.text_encoder, tiny_pipe.vae):
        monkeypatch.setattr(module, "forward", boom)
    monkeypatch.setattr(tiny_pipe.vae, "decode", boom)
    return boom


def test_no_models_fixture_works(tiny_pipe, tiny_unet, no_models):
    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=2)
    with pytest.raises(AssertionError, match="a model ran"):
        engine.generate(["a red handwritten three"], 0.5, [0])


PROMPT = ["a red handwritten three"]


@pytest.mark.parametrize(
    ("prompts", "psis", "seeds", "error", "shown"),
    [
        ([], [0.5], [0], ValueError, "prompts must not be empty"),
        (None, [0.5], [0], TypeError, "prompts"),
        ([3], [0.5], [0], TypeError, "3"),
        (PROMPT, [0.5], [-1], ValueError, "-1"),
        (PROMPT, [0.5], [0, -5], ValueError, "-5"),
        (PROMPT, [0.5], [1.5], TypeError, "1.5"),
        (PROMPT, [0.5], ["3"], TypeError, "'3'"),
        (PROMPT, [0.5], "3", TypeError, "'3'"),
        (PROMPT, [0.5], [True], TypeError, "True"),
        (PROMPT, [0.5], [], ValueError, "seeds must not be empty"),
        (PROMPT, [0.5], [2**63], ValueError, str(2**63)),
        (PROMPT, [1.2], [0], ValueError, "1.2"),
        (PROMPT, [0.5, -0.1], [0], ValueError, "-0.1"),
        (PROMPT, [math.nan], [0], ValueError, "nan"),
        (PROMPT, ["0.5"], [0], TypeError, "'0.5'"),
        (PROMPT, [], [0], ValueError, "psis must not be empty"),
    ],
)
def test_bad_sweep_input_raises_before_any_model_call(
    tiny_pipe, tiny_unet, no_models, prompts, psis, seeds, error, shown
):
    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=2)
    with pytest.raises(error, match=re.escape(shown)):
        engine.sweep(prompts, psis, seeds)
    if len(psis) == 1:
        with pytest.raises(error, match=re.escape(shown)):
            engine.generate(prompts, psis[0], seeds)


@pytest.mark.parametrize(
    ("kwargs", "error", "shown"),
    [
        ({"num_inference_steps": 0}, ValueError, "num_inference_steps must be >= 1, got 0"),
        ({"num_inference_steps": -3}, ValueError, "-3"),
        ({"num_inference_steps": 2.0}, TypeError, "2.0"),
        ({"num_inference_steps": True}, TypeError, "True"),
        ({"guidance_scale": math.nan}, ValueError, "guidance_scale"),
        ({"eta": -1.0}, ValueError, "eta"),
        ({"eta": math.inf}, ValueError, "eta"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_engine_settings_raise_before_any_model_call(tiny_pipe, tiny_unet, no_models, kwargs, error, shown):
    with pytest.raises(error, match=shown):
        PartialDiffusion(tiny_pipe, tiny_unet, **kwargs)


def test_a_mismatched_unet_raises_at_construction(tiny_pipe, tiny_unet, no_models):
    from pytest_uoc.zoo.build import TEST_SIZE, build_unet

    wide = build_unet(dataclasses.replace(TEST_SIZE, text_width=32), seed=2)
    with pytest.raises(ValueError, match="cross_attention_dim"):
        PartialDiffusion(tiny_pipe, wide)


def test_the_empty_prompt_is_a_valid_prompt(tiny_pipe, tiny_unet):
    # "" is the unconditional probe (docs/definitions.md): allowed, unlike an empty list.
    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=2)
    images = engine.generate("", 0.5, 0)
    assert images.prompts == [""] and images.seeds == [0]
    assert images.images.shape == (1, 3, 16, 16)
