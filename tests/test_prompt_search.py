"""Adversarial prompt search: the prepended slots, the search itself, drawing with its prompts, the run on a probe."""

from __future__ import annotations

import copy

import pytest
import torch
from uoc_test_helpers import bright_judge

from pytest_uoc.attacks.prompt_search import (
    AmbiguousFoundPrompts,
    FoundPrompt,
    PromptSearchSettings,
    found_prompts_override,
    prompt_row,
    search_prompt,
    special_ids,
)
from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.probe import Probe, ProbeSettings

PROMPTS = ("a red handwritten three", "a green handwritten three")
PROMPT = PROMPTS[0]


def _latents() -> torch.Tensor:
    return torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def _encode(pipe, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return pipe.text_encoder(torch.tensor([ids]))[0]


def _encode_text(pipe, text: str) -> torch.Tensor:
    tokenizer = pipe.tokenizer
    return _encode(pipe, tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
                                   truncation=True).input_ids)


def test_the_slots_are_prepended_and_hold_real_vocabulary_tokens(tiny_pipe):
    tokenizer = tiny_pipe.tokenizer
    settings = PromptSearchSettings(steps=4, tokens=3, batch_size=2)
    found = search_prompt(tiny_pipe, _latents(), PROMPT, settings)
    assert found.prompt == PROMPT and len(found.token_ids) == 3
    special = special_ids(tokenizer)
    assert special and all(0 <= i < len(tokenizer) and i not in special for i in found.token_ids)
    own = tokenizer(PROMPT, add_special_tokens=False).input_ids
    row = prompt_row(tokenizer, PROMPT, found.token_ids)
    assert row[:1 + 3 + len(own) + 1] == [tokenizer.bos_token_id, *found.token_ids, *own, tokenizer.eos_token_id]
    assert len(row) == tokenizer.model_max_length
    assert found.text.endswith(PROMPT) and found.text != PROMPT
    # The random tiny vocabulary is bytes and pieces: its decoded tokens need not read back as themselves.
    assert found.retokenizes == (tokenizer(found.text, add_special_tokens=False).input_ids == [*found.token_ids, *own])
    with pytest.raises(ValueError, match="do not fit in the tokenizer's 16 tokens"):
        search_prompt(tiny_pipe, _latents(), PROMPT, PromptSearchSettings(steps=1, tokens=11))


def test_the_search_is_deterministic_keeps_its_best_and_freezes_the_models(tiny_pipe):
    from pytest_uoc.attacks.prompt_search import _loss, _start, _vocabulary

    latents = _latents()
    weights = copy.deepcopy(tiny_pipe.unet.state_dict())
    encoder_weights = copy.deepcopy(tiny_pipe.text_encoder.state_dict())
    flags = [p.requires_grad for p in (*tiny_pipe.unet.parameters(), *tiny_pipe.text_encoder.parameters())]
    settings = PromptSearchSettings(steps=12, tokens=2, lr=0.5, batch_size=3, seed=5)
    first = search_prompt(tiny_pipe, latents, PROMPT, settings)
    again = search_prompt(tiny_pipe, latents, PROMPT, settings)
    assert (first.token_ids, first.losses, first.best_loss, first.text) == (
        again.token_ids, again.losses, again.best_loss, again.text)
    other = search_prompt(tiny_pipe, latents, PROMPT, PromptSearchSettings(steps=12, tokens=2, lr=0.5, batch_size=3,
                                                                           seed=6))
    assert other.losses != first.losses  # another seed, other draws
    # losses[k]: the fixed evaluation batch's loss after k updates; the best is the lowest, never above the start.
    assert len(first.losses) == settings.steps + 1
    assert first.best_loss == min(first.losses) <= first.losses[0]
    # The starting tokens and the evaluation batch, drawn again from the seed: losses[0] is their loss.
    weight = tiny_pipe.text_encoder.get_input_embeddings().weight
    candidates = _vocabulary(tiny_pipe.tokenizer, weight.shape[0], None)
    start, batch = _start(settings, len(candidates), latents.float(), 1000, torch.Generator().manual_seed(5))
    row = torch.tensor([prompt_row(tiny_pipe.tokenizer, PROMPT, candidates[start].tolist())])
    with torch.no_grad():
        initial = float(_loss(tiny_pipe, latents.float(), row, weight[candidates[start]].detach(), batch, "cpu"))
    assert first.losses[0] == pytest.approx(initial, rel=1e-6)
    assert first.best_loss <= initial
    # Training: steps × batch; evaluation: one batch per distinct token ids visited (at least the start).
    distinct = len(set(first.losses))
    assert first.unet_evals >= settings.steps * 3 + 3 and (first.unet_evals - settings.steps * 3) % 3 == 0
    assert (first.unet_evals - settings.steps * 3) // 3 >= distinct
    assert all(torch.equal(weights[k], v) for k, v in tiny_pipe.unet.state_dict().items())
    assert all(torch.equal(encoder_weights[k], v) for k, v in tiny_pipe.text_encoder.state_dict().items())
    assert [p.requires_grad for p in (*tiny_pipe.unet.parameters(), *tiny_pipe.text_encoder.parameters())] == flags


def test_requires_grad_is_handed_back_as_it_was(tiny_pipe):
    params = list(tiny_pipe.unet.parameters())
    before = [p.requires_grad for p in params]
    params[0].requires_grad_(not before[0])
    try:
        search_prompt(tiny_pipe, _latents(), PROMPT, PromptSearchSettings(steps=1, tokens=1, batch_size=1))
        assert params[0].requires_grad == (not before[0])
        assert [p.requires_grad for p in params[1:]] == before[1:]
    finally:
        params[0].requires_grad_(before[0])


def test_a_vocabulary_of_whole_words_gives_a_prompt_that_retokenizes(tiny_pipe):
    tokenizer = tiny_pipe.tokenizer
    words = ["trois", "drei", "tres", "seven", "eight", "blue", "green", "digit"]
    ids = [ids[0] for ids in (tokenizer(word, add_special_tokens=False).input_ids for word in words) if len(ids) == 1]
    assert len(ids) >= 3  # words the tiny vocabulary holds whole
    found = search_prompt(tiny_pipe, _latents(), PROMPT, PromptSearchSettings(steps=5, tokens=2, batch_size=2),
                          vocabulary=ids)
    assert set(found.token_ids) <= set(ids) and found.retokenizes
    assert found.text == " ".join(tokenizer.decode([i]) for i in found.token_ids) + f" {PROMPT}"
    for bad in ([], [tokenizer.eos_token_id], [10**6], ["a"]):
        with pytest.raises(ValueError, match="prompt search vocabulary"):
            search_prompt(tiny_pipe, _latents(), PROMPT, PromptSearchSettings(steps=1), vocabulary=bad)


def test_the_override_draws_a_text_that_does_not_retokenize_from_its_ids(tiny_pipe):
    tokenizer = tiny_pipe.tokenizer
    piece = next(i for token, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
                 if len(token) == 1 and token.isalpha())  # a word piece: "a" followed by the prompt reads otherwise
    found = FoundPrompt(PROMPT, tokenizer.decode([piece, piece]) + f" {PROMPT}", (piece, piece), (1.0,), 1.0, 0, 0.0,
                        retokenizes=False)
    meant = _encode(tiny_pipe, prompt_row(tokenizer, PROMPT, found.token_ids))
    assert not torch.equal(_encode_text(tiny_pipe, found.text), meant)
    plain = _encode_text(tiny_pipe, PROMPTS[1])
    with found_prompts_override(tiny_pipe, [found]):
        assert torch.equal(_encode_text(tiny_pipe, found.text), meant)
        assert torch.equal(_encode_text(tiny_pipe, PROMPTS[1]), plain)  # other texts are untouched
    assert not torch.equal(_encode_text(tiny_pipe, found.text), meant)  # the hook is gone
    twin = FoundPrompt(PROMPT, found.text, (piece, piece + 1), (1.0,), 1.0, 0, 0.0, retokenizes=False)
    with pytest.raises(AmbiguousFoundPrompts, match="tokenizes like another found prompt"):
        with found_prompts_override(tiny_pipe, [found, twin]):
            pass


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"steps": 0}, "prompt search steps must be an integer >= 1, got 0"),
    ({"tokens": 0}, "prompt search tokens must be an integer >= 1, got 0"),
    ({"batch_size": 1.5}, "prompt search batch_size must be an integer >= 1, got 1.5"),
    ({"lr": 0}, r"prompt search lr must be a number in \(0, 10\), got 0"),
    ({"lr": True}, r"prompt search lr must be a number in \(0, 10\), got True"),
    ({"seed": "0"}, "prompt search seed must be an integer, got '0'"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromptSearchSettings(**kwargs)


def test_other_families_are_refused_by_name():
    from family_builders import build_flux, build_sd3, build_sdxl

    # SDXL is supported (tests/test_attacks_sdxl.py): one step runs.
    found = search_prompt(build_sdxl(), _latents(), PROMPT, PromptSearchSettings(steps=1, tokens=1, batch_size=1))
    assert len(found.token_ids) == 1
    for build, label in ((build_sd3, "SD3"), (build_flux, "Flux")):
        with pytest.raises(ValueError, match=f"prompt search supports SD 1.x/2.x and SDXL pipelines .*{label} is "
                                             "not supported yet"):
            search_prompt(build(), _latents(), PROMPT, PromptSearchSettings(steps=1))


def _engine(pipe, unet) -> PartialDiffusion:
    return PartialDiffusion(pipe, unet, num_inference_steps=4)


def test_the_prompt_attack_on_a_probe_attacks_unlearned_original_and_reference(tiny_pipe, tiny_unet):
    probe = Probe(Concept("three", PROMPTS), _engine(tiny_pipe, tiny_unet),
                  ProbeSettings(seeds=tuple(range(16)), n_boot=50), judge=bright_judge,
                  reference_engine=_engine(tiny_pipe, copy.deepcopy(tiny_unet)))
    settings = PromptSearchSettings(steps=3, tokens=2, batch_size=2)
    result = probe.prompt_attack(settings)
    assert probe.prompt_attack(settings) is result  # once per settings
    assert set(result.found) == {"unlearned", "original", "reference"}
    assert result.prompts == list(PROMPTS) and result.seeds == probe.eval_seeds
    for name, found in result.found.items():
        assert [item.prompt for item in found] == list(PROMPTS)
        assert all(item.text.endswith(item.prompt) and len(item.token_ids) == 2 for item in found)
        assert result.images[name].shape == (len(PROMPTS) * 8, 3, 16, 16) and result.images[name].dtype == torch.uint8
        assert result.values[name].shape == (len(PROMPTS) * 8,)
        assert 0.0 <= result.share(name).mean <= 1.0
    # The reference is a copy of the unlearned UNet: the same search finds the same prompts and drawings.
    assert [f.token_ids for f in result.found["reference"]] == [f.token_ids for f in result.found["unlearned"]]
    assert torch.equal(result.images["reference"], result.images["unlearned"])
    # Prompt-major: the first 8 drawings are of prompt 0's found prompt, the scoring seeds in order.
    drawer = PartialDiffusion(tiny_pipe, probe.engine.unlearned, num_inference_steps=4)
    with torch.inference_mode(), found_prompts_override(probe.engine.unlearned, result.found["unlearned"][:1]):
        alone = drawer.generate([result.found["unlearned"][0].text], 0.0, probe.eval_seeds).images
    assert torch.equal(alone, result.images["unlearned"][:8])
    assert probe.cost.seconds["prompt_attack"] > 0
    report = result.to_dict()
    assert report["attack"] == "prompt_attack" and set(report["models"]) == {"unlearned", "original", "reference"}
    assert report["settings"] == {"steps": 3, "tokens": 2, "lr": 0.1, "batch_size": 2, "seed": 0}
    kept = report["models"]["original"]["found"]
    assert [item["text"] for item in kept] == [f.text for f in result.found["original"]]
    assert [item["token_ids"] for item in kept] == [list(f.token_ids) for f in result.found["original"]]


def _cached_probe(pipe, unet, folder):
    """A fresh probe (nothing in memory) whose cache folder is ``folder``."""
    return Probe(Concept("three", PROMPTS), _engine(pipe, unet), ProbeSettings(
        seeds=tuple(range(16)), n_boot=50, classifier_cache=str(folder)), judge=bright_judge)


def test_a_rerun_reads_the_found_prompts_and_drawings_from_the_cache(tiny_pipe, tiny_unet, tmp_path):
    """Cached under both models' fingerprints: a second probe searches and draws nothing, with the same drawings."""
    def probe():
        return _cached_probe(tiny_pipe, tiny_unet, tmp_path)

    settings = PromptSearchSettings(steps=3, tokens=2, batch_size=2)
    first = probe().prompt_attack(settings)
    assert len(list(tmp_path.glob("prompt-attack-*.pt"))) == 2
    again = probe()
    again.bank.training["unlearned"].get([1.0])  # the λO training images (no trajectory cache here)
    before = again.cost.unet_evals
    second = again.prompt_attack(settings)
    assert again.cost.unet_evals == before  # nothing searched, nothing drawn
    for name in ("unlearned", "original"):
        assert all(f.from_cache for f in second.found[name]) and not any(f.from_cache for f in first.found[name])
        assert [dataclass_values(f) for f in second.found[name]] == [dataclass_values(f) for f in first.found[name]]
        assert torch.equal(second.images[name], first.images[name])
        assert (second.values[name] == first.values[name]).all()
    other = probe().prompt_attack(PromptSearchSettings(steps=4, tokens=2, batch_size=2))  # another budget
    assert not other.found["unlearned"][0].from_cache


def dataclass_values(found: FoundPrompt) -> tuple:
    return (found.prompt, found.text, found.token_ids, found.losses, found.best_loss, found.unet_evals,
            found.seconds, found.retokenizes)


def test_a_damaged_prompt_attack_entry_is_warned_about_and_searched_again(tiny_pipe, tiny_unet, tmp_path):
    def probe():
        return _cached_probe(tiny_pipe, tiny_unet, tmp_path)

    settings = PromptSearchSettings(steps=2, tokens=2, batch_size=2)
    first = probe().prompt_attack(settings)
    for path in tmp_path.glob("prompt-attack-*.pt"):
        path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable prompt attack cache entry"):
        again = probe().prompt_attack(settings)
    assert not again.found["unlearned"][0].from_cache
    assert [f.token_ids for f in again.found["unlearned"]] == [f.token_ids for f in first.found["unlearned"]]
    assert torch.equal(again.images["unlearned"], first.images["unlearned"])


def test_the_search_shows_its_steps_on_the_progress_line(tiny_pipe, tiny_unet):
    from pytest_uoc import progress

    probe = Probe(Concept("three", PROMPTS), _engine(tiny_pipe, tiny_unet),
                  ProbeSettings(seeds=tuple(range(16)), n_boot=50), judge=bright_judge)
    probe.bank.training["unlearned"].get([1.0])
    lines: list[str] = []
    with progress.showing(lambda status: lines.append(status.text())):
        probe.prompt_attack(PromptSearchSettings(steps=3, tokens=2, batch_size=2))
    assert "prompt attack, searching (unlearned): 3/3 steps" in lines
    assert any(line.startswith("prompt attack, drawing with the found prompts (original): ") and " images" in line
               for line in lines)


def test_found_prompts_that_tokenize_alike_are_drawn_apart(tiny_pipe, tiny_unet):
    from pytest_uoc.attacks.prompt_search_probe import _draw

    tokenizer = tiny_pipe.tokenizer
    piece = tokenizer("a", add_special_tokens=False).input_ids[0]
    text = tokenizer.decode([piece, piece]) + f" {PROMPT}"
    found = [FoundPrompt(PROMPT, text, (piece, piece + k), (1.0,), 1.0, 0, 0.0, retokenizes=False) for k in (0, 1)]
    drawer = _engine(tiny_pipe, tiny_unet)
    with torch.inference_mode():
        images, evals = _draw(drawer, drawer.unlearned, found, [0, 1])
        apart = []
        for item in found:
            with found_prompts_override(drawer.unlearned, [item]):
                apart.append(drawer.generate([text], 0.0, [0, 1]).images)
    assert torch.equal(images, torch.cat(apart)) and evals > 0
    assert not torch.equal(apart[0], apart[1])  # each drawn from its own ids


def test_quiet_truncation_silences_both_libraries_and_restores_their_levels():
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    from pytest_uoc.attacks.prompt_search import quiet_truncation

    before = (dlog.get_verbosity(), tlog.get_verbosity())
    dlog.set_verbosity_warning()
    tlog.set_verbosity_info()
    try:
        with quiet_truncation():
            assert dlog.get_verbosity() == dlog.ERROR and tlog.get_verbosity() == tlog.ERROR
        assert dlog.get_verbosity() == dlog.WARNING and tlog.get_verbosity() == tlog.INFO
    finally:
        dlog.set_verbosity(before[0])
        tlog.set_verbosity(before[1])
