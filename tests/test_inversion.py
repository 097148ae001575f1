"""Concept inversion: the placeholder, the embedding override, learning a token, and the run on a probe."""

from __future__ import annotations

import copy

import pytest
import torch
from uoc_test_helpers import bright_judge

from pytest_uoc.attacks.inversion import (
    InversionSettings,
    embedding_override,
    learn_token,
    placeholder_token,
    token_prompts,
)
from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.probe import Probe, ProbeSettings

PROMPTS = ("a red handwritten three", "a green handwritten three")


def test_the_placeholder_is_one_unused_token_and_the_prompts_carry_it(tiny_pipe):
    token, token_id = placeholder_token(tiny_pipe.tokenizer, PROMPTS)
    ids = tiny_pipe.tokenizer(token, add_special_tokens=False).input_ids
    assert ids == [token_id]
    for prompt in PROMPTS:
        assert token_id not in tiny_pipe.tokenizer(prompt, add_special_tokens=False).input_ids
    assert token_prompts(["a red handwritten", ""], token) == [f"a red handwritten {token}", token]


def test_the_override_replaces_only_the_token_and_leaves_nothing_behind(tiny_pipe):
    encoder, tokenizer = tiny_pipe.text_encoder, tiny_pipe.tokenizer
    token, token_id = placeholder_token(tokenizer, PROMPTS)

    def encode(text: str) -> torch.Tensor:
        ids = tokenizer([text], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
        with torch.no_grad():
            return encoder(ids.input_ids)[0]

    before, plain = encode(f"a red {token}"), encode("a red handwritten three")
    vector = torch.full((encoder.get_input_embeddings().weight.shape[1],), 0.5)
    with embedding_override(encoder, token_id, vector):
        during, plain_during = encode(f"a red {token}"), encode("a red handwritten three")
    assert not torch.allclose(before, during)
    assert torch.equal(plain, plain_during)  # prompts without the token are untouched
    assert torch.equal(encode(f"a red {token}"), before)  # the hook is gone


def test_learning_a_token_lowers_the_loss_is_deterministic_and_freezes_the_models(tiny_pipe):
    token, token_id = placeholder_token(tiny_pipe.tokenizer, PROMPTS)
    latents = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    prompts = [f"a red {token}"] * 6
    weights = copy.deepcopy(tiny_pipe.unet.state_dict())
    flags = [p.requires_grad for p in tiny_pipe.unet.parameters()]
    settings = InversionSettings(steps=30, lr=5e-2, batch_size=4)
    first = learn_token(tiny_pipe, latents, prompts, token, token_id, settings)
    again = learn_token(tiny_pipe, latents, prompts, token, token_id, settings)
    assert torch.equal(first.vector, again.vector) and first.losses == again.losses
    assert first.unet_evals == 30 * 4
    # On a fixed set of noised latents the learned token fits better than the placeholder's own embedding.
    assert _fixed_loss(tiny_pipe, latents, prompts, token_id, first.vector) < _fixed_loss(
        tiny_pipe, latents, prompts, token_id, tiny_pipe.text_encoder.get_input_embeddings().weight[token_id].detach())
    assert all(torch.equal(weights[k], v) for k, v in tiny_pipe.unet.state_dict().items())
    assert [p.requires_grad for p in tiny_pipe.unet.parameters()] == flags  # handed back as they were
    with pytest.raises(ValueError, match="one prompt per latent"):
        learn_token(tiny_pipe, latents, prompts[:2], token, token_id, settings)


def _fixed_loss(pipe, latents, prompts, token_id, vector) -> float:
    from pytest_uoc.attacks.inversion import _target

    gen = torch.Generator().manual_seed(7)
    t = torch.randint(0, 1000, (len(latents),), generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    x_t, target = _target(pipe.scheduler, latents, noise, t)
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    with torch.no_grad(), embedding_override(pipe.text_encoder, token_id, vector):
        out = pipe.unet(x_t, t, encoder_hidden_states=pipe.text_encoder(ids)[0]).sample
    return float(torch.nn.functional.mse_loss(out, target))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"steps": 0}, "inversion steps must be an integer >= 1, got 0"),
    ({"batch_size": 1.5}, "inversion batch_size must be an integer >= 1"),
    ({"lr": 0}, r"inversion lr must be a number in \(0, 10\), got 0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InversionSettings(**kwargs)


def test_other_families_are_refused_by_name():
    from family_builders import build_flux, build_sd3, build_sdxl

    from pytest_uoc.attacks.text_conditioning import check_attack_family

    check_attack_family(build_sdxl())  # SDXL is supported (tests/test_attacks_sdxl.py)
    for build, label in ((build_sd3, "SD3"), (build_flux, "Flux")):
        with pytest.raises(ValueError, match=f"concept inversion supports SD 1.x/2.x and SDXL pipelines .*{label} is "
                                             "not supported yet"):
            check_attack_family(build())


def test_inversion_on_a_probe_attacks_unlearned_original_and_reference(tiny_pipe, tiny_unet):
    def engine(unet):
        return PartialDiffusion(tiny_pipe, unet, num_inference_steps=4)

    probe = Probe(Concept("three", PROMPTS), engine(tiny_unet), ProbeSettings(seeds=tuple(range(16)), n_boot=50),
                  judge=bright_judge, reference_engine=engine(copy.deepcopy(tiny_unet)))
    settings = InversionSettings(steps=8, batch_size=4)
    result = probe.inversion(settings)
    assert probe.inversion(settings) is result  # once per settings
    assert set(result.tokens) == {"unlearned", "original", "reference"}
    assert result.prompts == [f"{anchor} {result.token}" for anchor in probe.anchors]
    for name in result.tokens:
        assert result.images[name].shape == (len(PROMPTS) * 8, 3, 16, 16) and result.images[name].dtype == torch.uint8
        assert result.values[name].shape == (len(PROMPTS) * 8,)
        assert 0.0 <= result.share(name).mean <= 1.0
    # The reference is a copy of the unlearned UNet: the same attack on the same seeds gives the same drawings.
    assert torch.equal(result.images["reference"], result.images["unlearned"])
    assert probe.cost.seconds["inversion"] > 0
    report = result.to_dict()
    assert report["attack"] == "inversion" and set(report["models"]) == {"unlearned", "original", "reference"}


def _cached_probe(pipe, unet, folder):
    """A fresh probe (nothing in memory) whose cache folder is ``folder``."""
    engine = PartialDiffusion(pipe, unet, num_inference_steps=4)
    return Probe(Concept("three", PROMPTS), engine, ProbeSettings(
        seeds=tuple(range(16)), n_boot=50, classifier_cache=str(folder)), judge=bright_judge)


def test_a_rerun_reads_the_learned_tokens_and_drawings_from_the_cache(tiny_pipe, tiny_unet, tmp_path):
    """Cached under both models' fingerprints: a second probe learns and draws nothing, with the same drawings."""
    def probe():
        return _cached_probe(tiny_pipe, tiny_unet, tmp_path)

    settings = InversionSettings(steps=6, batch_size=4)
    cold = probe()
    first = cold.inversion(settings)
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("inversion-*.pt")) == ["inversion", "inversion"]
    again = probe()
    again.bank.training["unlearned"].get([1.0])  # the λO training images (no trajectory cache here)
    before = again.cost.unet_evals
    second = again.inversion(settings)
    assert again.cost.unet_evals == before  # no token learned, nothing drawn
    for name in ("unlearned", "original"):
        assert second.tokens[name].from_cache and not first.tokens[name].from_cache
        assert torch.equal(second.tokens[name].vector, first.tokens[name].vector)
        assert torch.equal(second.images[name], first.images[name])
        assert second.tokens[name].losses == first.tokens[name].losses
    other = probe().inversion(InversionSettings(steps=7, batch_size=4))  # another budget: learned again
    assert not other.tokens["unlearned"].from_cache


def test_a_damaged_inversion_entry_is_warned_about_and_learned_again(tiny_pipe, tiny_unet, tmp_path):
    def probe():
        return _cached_probe(tiny_pipe, tiny_unet, tmp_path)

    settings = InversionSettings(steps=4, batch_size=4)
    first = probe().inversion(settings)
    for path in tmp_path.glob("inversion-*.pt"):
        path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable inversion cache entry"):
        again = probe().inversion(settings)
    assert not again.tokens["unlearned"].from_cache
    assert torch.equal(again.images["unlearned"], first.images["unlearned"])


def test_learning_shows_its_steps_on_the_progress_line(tiny_pipe, tiny_unet):
    from pytest_uoc import progress

    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=4)
    probe = Probe(Concept("three", PROMPTS), engine, ProbeSettings(seeds=tuple(range(16)), n_boot=50),
                  judge=bright_judge)
    probe.bank.training["unlearned"].get([1.0])
    lines: list[str] = []
    with progress.showing(lambda status: lines.append(status.text())):
        probe.inversion(InversionSettings(steps=3, batch_size=2))
    assert "inversion, learning the token (unlearned): 3/3 steps" in lines
    assert any(line.startswith("inversion, drawing with the token (original): ") and " images" in line
               for line in lines)
