"""The learned attacks on SDXL: the conditioning layer, concept inversion, prompt search and the runs on a probe.

The pipelines are ``family_builders.build_sdxl``'s, with ``tokenizer_2`` padding with "!" as the
released SDXL's does (same vocabulary, another padding id); ``wide`` also gives ``text_encoder_2``
another width than ``text_encoder`` (48 and 32, as 1280 and 768 differ in SDXL), so a vector or a
table of the wrong encoder cannot go unnoticed.
"""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch
from family_builders import WORDS, build_sdxl, sdxl_unet
from uoc_test_helpers import bright_judge

from pytest_uoc.attacks.inversion import (
    InversionSettings,
    LearnedToken,
    _target,
    learn_token,
    placeholder,
    token_override,
)
from pytest_uoc.attacks.prompt_search import (
    FoundPrompt,
    PromptSearchSettings,
    check_shared_vocabulary,
    found_prompts_override,
    prompt_row,
    search_prompt,
    special_ids,
)
from pytest_uoc.attacks.text_conditioning import SDXLConditioning, text_conditioning
from pytest_uoc.concept import Concept
from pytest_uoc.diffusion import PartialDiffusion
from pytest_uoc.probe import Probe, ProbeSettings

PROMPTS = ("a red handwritten three", "a green handwritten three")
PROMPT = PROMPTS[0]


def _with(pipe, **parts):
    """A pipeline of ``pipe``'s class with some parts replaced (the others shared)."""
    new = type(pipe)(**{**pipe.components, **parts})
    new.set_progress_bar_config(disable=True)
    return new


def _bang_tokenizer(tokenizer, folder):
    """``tokenizer`` padding with "!" (id 0), as SDXL's ``tokenizer_2`` does: same vocabulary, other padding."""
    from transformers import CLIPTokenizer

    tokenizer.save_pretrained(folder)
    return CLIPTokenizer.from_pretrained(folder, pad_token="!")


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    """``build_sdxl()`` with a "!"-padding ``tokenizer_2`` (do not mutate it)."""
    pipe = build_sdxl()
    return _with(pipe, tokenizer_2=_bang_tokenizer(pipe.tokenizer, tmp_path_factory.mktemp("tokenizer_2")))


@pytest.fixture(scope="module")
def sdxl_unlearned():
    """A second SDXL UNet of ``build_sdxl``'s shape: the "unlearned" model."""
    return sdxl_unet(1)


@pytest.fixture(scope="module")
def wide(sdxl):
    """``sdxl`` with a 48-wide ``text_encoder_2`` (``text_encoder`` is 32 wide) and a UNet attending to 32 + 48."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(2)
    encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**{**sdxl.text_encoder_2.config.to_dict(),
                                                              "hidden_size": 48}))
    torch.manual_seed(3)
    unet = UNet2DConditionModel.from_config({**sdxl.unet.config, "cross_attention_dim": 32 + 48})
    return _with(sdxl, text_encoder_2=encoder_2, unet=unet)


def _latents() -> torch.Tensor:
    return torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def _state(pipe) -> tuple[list[dict[str, torch.Tensor]], list[bool]]:
    """Copies of the UNet's and both text encoders' weights, and their requires_grad flags."""
    modules = (pipe.unet, pipe.text_encoder, pipe.text_encoder_2)
    return ([copy.deepcopy(m.state_dict()) for m in modules],
            [p.requires_grad for m in modules for p in m.parameters()])


def _assert_unchanged(pipe, state) -> None:
    weights, flags = state
    for module, before in zip((pipe.unet, pipe.text_encoder, pipe.text_encoder_2), weights, strict=True):
        assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert [p.requires_grad for m in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2)
            for p in m.parameters()] == flags


# -- (a) the conditioning layer -----------------------------------------------------------------


def test_the_conditioning_is_what_the_sdxl_pipeline_feeds_the_unet(wide):
    text = text_conditioning(wide)
    assert isinstance(text, SDXLConditioning)
    prompts = ["a red handwritten three", "a green handwritten eight"]
    latents = torch.zeros(2, 4, 8, 8)
    size = text.image_size(latents)
    assert size == (16, 16)  # 8×8 latents, VAE scale 2
    ids = text.ids(prompts, "cpu")
    assert ids[1][0, -1] == 0 and ids[0][0, -1] == wide.tokenizer.eos_token_id  # each tokenizer pads its own way
    with torch.no_grad():
        cond = text.encode(ids, size)
        embeds, _, pooled, _ = wide.encode_prompt(prompts, device="cpu", num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        time_ids = wide._get_add_time_ids((16, 16), (0, 0), (16, 16), dtype=embeds.dtype,
                                          text_encoder_projection_dim=wide.text_encoder_2.config.projection_dim)
    assert cond["prompt_embeds"].shape == (2, 16, 32 + 48)
    assert torch.equal(cond["prompt_embeds"], embeds)
    assert torch.equal(cond["text_embeds"], pooled)
    assert torch.equal(cond["time_ids"], time_ids.repeat(2, 1))
    # And the UNet is called as the engine calls it (``Family.forward``, ``added_cond_kwargs``).
    engine = PartialDiffusion(wide, wide.unet, num_inference_steps=2, guidance_scale=1.0)
    x_t, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([10, 500])
    with torch.no_grad():
        positive, _ = engine.family.encode(wide, prompts, torch.device("cpu"), False, None, engine)
        assert all(torch.equal(cond[k], positive[k]) for k in positive)
        expected = wide.unet(x_t, t, encoder_hidden_states=embeds,
                             added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids.repeat(2, 1)}).sample
        assert torch.equal(text.predict(x_t, t, cond, "cpu"), expected)


def test_an_sdxl_pipeline_without_its_second_encoder_is_refused_by_name(sdxl):
    from types import SimpleNamespace

    half = SimpleNamespace(text_encoder=None, text_encoder_2=sdxl.text_encoder_2, tokenizer=None,
                           tokenizer_2=sdxl.tokenizer_2)
    with pytest.raises(ValueError, match="need both CLIP text encoders and tokenizers; .* has no text_encoder, "
                                         "tokenizer"):
        SDXLConditioning(half)


# -- (b) concept inversion ------------------------------------------------------------------------


def test_the_placeholder_is_one_unused_token_of_both_tokenizers(sdxl):
    token, ids = placeholder(sdxl, PROMPTS)
    assert len(ids) == 2
    for tokenizer, token_id in zip((sdxl.tokenizer, sdxl.tokenizer_2), ids, strict=True):
        assert tokenizer(token, add_special_tokens=False).input_ids == [token_id]
        assert token_id not in special_ids(tokenizer)
        assert all(token_id not in tokenizer(p, add_special_tokens=False).input_ids for p in PROMPTS)


def _fixed_loss(pipe, latents, prompts, learned: LearnedToken | None) -> float:
    """The denoising loss on fixed draws, the prompts encoded by the pipeline itself (under the token override)."""
    import contextlib

    gen = torch.Generator().manual_seed(7)
    t = torch.randint(0, 1000, (len(latents),), generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    x_t, target = _target(pipe.scheduler, latents, noise, t)
    override = token_override(pipe, learned) if learned is not None else contextlib.nullcontext()
    with torch.no_grad(), override:
        embeds, _, pooled, _ = pipe.encode_prompt(list(prompts), device="cpu", num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
    time_ids = pipe._get_add_time_ids((16, 16), (0, 0), (16, 16), dtype=embeds.dtype,
                                      text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    with torch.no_grad():
        out = pipe.unet(x_t, t, encoder_hidden_states=embeds,
                        added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids.repeat(len(x_t), 1)}).sample
    return float(torch.nn.functional.mse_loss(out, target))


def test_inversion_on_sdxl_learns_one_vector_per_encoder_deterministically_and_freezes_the_models(wide):
    token, (id_1, id_2) = placeholder(wide, PROMPTS)
    latents = _latents()
    prompts = [f"a red {token}"] * 6
    state = _state(wide)
    settings = InversionSettings(steps=30, lr=5e-2, batch_size=4)
    first = learn_token(wide, latents, prompts, token, id_1, settings)
    again = learn_token(wide, latents, prompts, token, id_1, settings, token_id_2=id_2)
    assert first.token_ids == (id_1, id_2) and first.token_id_2 == id_2
    assert first.vector.shape == (32,) and first.vector_2.shape == (48,)  # each encoder's own width
    assert torch.equal(first.vector, again.vector) and torch.equal(first.vector_2, again.vector_2)
    assert first.losses == again.losses and first.unet_evals == 30 * 4
    # Both vectors moved from their encoder's own row of the placeholder.
    assert not torch.equal(first.vector, wide.text_encoder.get_input_embeddings().weight[id_1].detach())
    assert not torch.equal(first.vector_2, wide.text_encoder_2.get_input_embeddings().weight[id_2].detach())
    # On fixed noised latents, with the pipeline's own encoding, the learned token fits better than the placeholder.
    assert _fixed_loss(wide, latents, prompts, first) < _fixed_loss(wide, latents, prompts, None)
    _assert_unchanged(wide, state)
    with pytest.raises(ValueError, match="tokenizer_2 reads the placeholder 'a red' as 2 tokens"):
        learn_token(wide, latents, prompts, "a red", id_1, settings)


def test_drawing_under_the_override_changes_both_encoders_embeddings_only_at_the_token(wide):
    token, ids = placeholder(wide, PROMPTS)
    learned = learn_token(wide, _latents(), [f"a red {token}"] * 6, token, ids[0],
                          InversionSettings(steps=3, lr=5e-2, batch_size=2))
    engine = PartialDiffusion(wide, wide.unet, num_inference_steps=2, image_dtype=torch.float32)
    encoders = (wide.text_encoder, wide.text_encoder_2)
    seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {0: [], 1: []}

    def capture(i):
        def hook(_module, inputs, output):
            seen[i].append((inputs[0].clone(), output.clone()))
        return hook

    with torch.inference_mode():
        plain = engine.generate([f"a red {token}"], 0.0, [0]).images
        with token_override(wide, learned):
            handles = [e.get_input_embeddings().register_forward_hook(capture(i)) for i, e in enumerate(encoders)]
            try:
                attacked = engine.generate([f"a red {token}"], 0.0, [0]).images
            finally:
                for handle in handles:
                    handle.remove()
        after = engine.generate([f"a red {token}"], 0.0, [0]).images
    assert not torch.equal(plain, attacked) and torch.equal(plain, after)  # the hooks are gone after the block
    for i, (encoder, token_id, vector) in enumerate(zip(encoders, learned.token_ids, learned.vectors, strict=True)):
        assert seen[i], f"text encoder {i + 1} was not called while drawing"
        weight = encoder.get_input_embeddings().weight.detach()
        for input_ids, output in seen[i]:
            at = input_ids == token_id
            assert at.any()
            assert torch.equal(output[at], vector.expand(int(at.sum()), -1))
            assert torch.equal(output[~at], weight[input_ids][~at])


def test_a_token_with_another_number_of_vectors_than_encoders_is_refused(sdxl, tiny_pipe):
    single = LearnedToken("*", 3, torch.zeros(32), (1.0,), 0, 0.0)
    with pytest.raises(ValueError, match="holds 1 vector"):
        with token_override(sdxl, single):
            pass
    with pytest.raises(ValueError, match="token_id_2 is for SDXL's second tokenizer"):
        learn_token(tiny_pipe, _latents(), ["a"] * 6, "*", 3, InversionSettings(steps=1), token_id_2=3)


# -- (c) prompt search ----------------------------------------------------------------------------


def test_prompt_search_on_sdxl_is_deterministic_finds_real_ids_and_freezes_the_models(wide):
    state = _state(wide)
    settings = PromptSearchSettings(steps=8, tokens=2, lr=0.5, batch_size=3, seed=5)
    first = search_prompt(wide, _latents(), PROMPT, settings)
    again = search_prompt(wide, _latents(), PROMPT, settings)
    assert (first.token_ids, first.losses, first.best_loss, first.text) == (
        again.token_ids, again.losses, again.best_loss, again.text)
    special = special_ids(wide.tokenizer) | special_ids(wide.tokenizer_2)
    assert 0 in special  # tokenizer_2's "!" padding is never searched
    assert len(first.token_ids) == 2 and all(0 <= i < len(wide.tokenizer) and i not in special
                                             for i in first.token_ids)
    assert first.best_loss == min(first.losses) <= first.losses[0] and len(first.losses) == settings.steps + 1
    _assert_unchanged(wide, state)


def test_one_id_per_slot_maximises_the_summed_cosine_of_both_encoders():
    from pytest_uoc.attacks.prompt_search import _nearest

    # Encoder 1 alone prefers id 0, encoder 2 alone id 1; their sum prefers id 2.
    unit_1 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]]), dim=-1)
    unit_2 = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.8, 0.6]]), dim=-1)
    continuous_1, continuous_2 = torch.tensor([[1.0, 0.05]]), torch.tensor([[1.0, 0.05]])
    assert _nearest([continuous_1], [unit_1]).tolist() == [0]
    assert _nearest([continuous_2], [unit_2]).tolist() == [1]
    assert _nearest([continuous_1, continuous_2], [unit_1, unit_2]).tolist() == [2]


def test_a_vocabulary_of_whole_words_gives_a_prompt_both_tokenizers_read_back(sdxl):
    words = ["trois", "red", "green", "seven", "eight"]
    ids = [ids[0] for ids in (sdxl.tokenizer(w, add_special_tokens=False).input_ids for w in words) if len(ids) == 1]
    assert len(ids) >= 3
    state = _state(sdxl)
    found = search_prompt(sdxl, _latents(), PROMPT, PromptSearchSettings(steps=4, tokens=2, batch_size=2),
                          vocabulary=ids)
    assert set(found.token_ids) <= set(ids) and found.retokenizes
    for tokenizer in (sdxl.tokenizer, sdxl.tokenizer_2):
        own = tokenizer(PROMPT, add_special_tokens=False).input_ids
        assert tokenizer(found.text, add_special_tokens=False).input_ids == [*found.token_ids, *own]
        length = tokenizer.model_max_length
        assert tokenizer(found.text, padding="max_length", max_length=length).input_ids == prompt_row(
            tokenizer, PROMPT, found.token_ids)  # the row the search scored is the row the pipeline reads
    _assert_unchanged(sdxl, state)


def test_the_found_ids_override_builds_each_encoders_row_with_its_own_tokenizer(wide):
    tokenizer, tokenizer_2 = wide.tokenizer, wide.tokenizer_2
    piece = next(i for token, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
                 if len(token) == 1 and token.isalpha())  # a word piece: its text does not read back as itself
    found = FoundPrompt(PROMPT, tokenizer.decode([piece, piece]) + f" {PROMPT}", (piece, piece), (1.0,), 1.0, 0,
                        0.0, retokenizes=False)
    rows = [prompt_row(tokenizer, PROMPT, found.token_ids), prompt_row(tokenizer_2, PROMPT, found.token_ids)]
    assert rows[0][-1] == tokenizer.eos_token_id and rows[1][-1] == 0  # tokenizer_2 pads with "!"
    encoders = (wide.text_encoder, wide.text_encoder_2)

    def embedded(i, text):
        own = (tokenizer, tokenizer_2)[i]
        ids = torch.tensor([own(text, padding="max_length", max_length=own.model_max_length,
                                truncation=True).input_ids])
        with torch.no_grad():
            return encoders[i].get_input_embeddings()(ids)[0]

    meant = [encoders[i].get_input_embeddings().weight.detach()[torch.tensor(rows[i])] for i in range(2)]
    plain = [embedded(i, PROMPTS[1]) for i in range(2)]
    with found_prompts_override(wide, [found]):
        for i in range(2):
            assert torch.equal(embedded(i, found.text), meant[i])
            assert torch.equal(embedded(i, PROMPTS[1]), plain[i])  # other texts are untouched
    assert all(not torch.equal(embedded(i, found.text), meant[i]) for i in range(2))  # the hooks are gone


# -- (e) two vocabularies -------------------------------------------------------------------------


def test_tokenizers_that_do_not_share_a_vocabulary_are_refused_by_name(sdxl, tmp_path):
    from pytest_uoc.zoo.build import build_tokenizer

    other = build_tokenizer([*WORDS, "zebra crossing"], 16, tmp_path)
    assert other.get_vocab() != sdxl.tokenizer.get_vocab()
    pipe = _with(sdxl, tokenizer_2=other)
    message = r"tokenizer \(CLIPTokenizer, 546 tokens\) and tokenizer_2 \(CLIPTokenizer, \d+ tokens\) must share one"
    with pytest.raises(ValueError, match=message):
        check_shared_vocabulary(pipe)
    with pytest.raises(ValueError, match=message):
        search_prompt(pipe, _latents(), PROMPT, PromptSearchSettings(steps=1))
    check_shared_vocabulary(sdxl)  # same vocabulary, another padding token: accepted


# -- (d) on a probe -------------------------------------------------------------------------------


def _probe(pipe, unet, folder=None, reference=None):
    settings = ProbeSettings(seeds=tuple(range(16)), n_boot=50, classifier_cache=None if folder is None else
                             str(folder))
    reference_engine = None if reference is None else PartialDiffusion(pipe, reference, num_inference_steps=3)
    return Probe(Concept("three", PROMPTS), PartialDiffusion(pipe, unet, num_inference_steps=3), settings,
                 judge=bright_judge, reference_engine=reference_engine)


def test_both_attacks_run_on_an_sdxl_probe_and_a_rerun_reads_the_cache(sdxl, sdxl_unlearned, tmp_path):
    inversion, search = InversionSettings(steps=3, batch_size=2), PromptSearchSettings(steps=2, tokens=2, batch_size=2)
    reference = sdxl_unet(2)  # a third UNet: each model gets its own cache entry
    cold = _probe(sdxl, sdxl_unlearned, tmp_path, reference=reference)
    inverted, attacked = cold.inversion(inversion), cold.prompt_attack(search)
    models = {"unlearned", "original", "reference"}
    assert set(inverted.tokens) == models and set(attacked.found) == models
    for result in (inverted, attacked):
        for name in models:
            assert result.images[name].shape == (len(PROMPTS) * 8, 3, 16, 16)
            assert result.values[name].shape == (len(PROMPTS) * 8,)
            assert 0.0 <= result.share(name).mean <= 1.0
    for token in inverted.tokens.values():
        assert token.vector.shape == (32,) and token.vector_2 is not None and token.vector_2.shape == (32,)
    assert all(len(f.token_ids) == 2 for found in attacked.found.values() for f in found)
    assert len(list(tmp_path.glob("inversion-*.pt"))) == 3 and len(list(tmp_path.glob("prompt-attack-*.pt"))) == 3

    warm = _probe(sdxl, sdxl_unlearned, tmp_path, reference=reference)
    warm.bank.training["unlearned"].get([1.0])  # the λO training images (no trajectory cache here)
    before = warm.cost.unet_evals
    inverted_again, attacked_again = warm.inversion(inversion), warm.prompt_attack(search)
    assert warm.cost.unet_evals == before  # nothing learned, searched or drawn
    for name in models:
        kept = inverted_again.tokens[name]
        assert kept.from_cache and not inverted.tokens[name].from_cache
        assert torch.equal(kept.vector, inverted.tokens[name].vector)
        assert torch.equal(kept.vector_2, inverted.tokens[name].vector_2)
        assert kept.token_ids == inverted.tokens[name].token_ids
        assert torch.equal(inverted_again.images[name], inverted.images[name])
        assert all(f.from_cache for f in attacked_again.found[name])
        assert [f.token_ids for f in attacked_again.found[name]] == [f.token_ids for f in attacked.found[name]]
        assert torch.equal(attacked_again.images[name], attacked.images[name])


def test_the_cache_keys_fingerprint_the_second_encoder_and_tokenizer(sdxl, tmp_path):
    from pytest_uoc.attacks.on_probe import model_key
    from pytest_uoc.attacks.prompt_search_probe import _key

    encoder_2 = copy.deepcopy(sdxl.text_encoder_2)
    with torch.no_grad():
        encoder_2.get_input_embeddings().weight[5] += 1.0
    other_encoder = _with(sdxl, text_encoder_2=encoder_2)
    other_padding = _with(sdxl, tokenizer_2=sdxl.tokenizer)  # the end token pads instead of "!"
    for key in (model_key, _key):
        assert key("shared", sdxl) == key("shared", _with(sdxl))  # same parts, same key
        assert key("shared", other_encoder) != key("shared", sdxl)
        assert key("shared", other_padding) != key("shared", sdxl)


def test_sd_cache_keys_are_unchanged(tiny_pipe):
    """Pipelines with one text encoder hash what they always did: existing entries keep their keys."""
    from pytest_uoc.attacks.on_probe import model_key
    from pytest_uoc.attacks.prompt_search_probe import _key
    from pytest_uoc.stores import fingerprint_module, stable_config

    def old(shared, *extra):
        parts = [shared, fingerprint_module(tiny_pipe.unet), fingerprint_module(tiny_pipe.text_encoder), *extra,
                 stable_config(tiny_pipe.scheduler.config)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    tokenizer = tiny_pipe.tokenizer
    assert model_key("shared", tiny_pipe) == old("shared")
    assert _key("shared", tiny_pipe) == old("shared", f"CLIPTokenizer:{len(tokenizer)}:{tokenizer.model_max_length}")


def test_an_sd_inversion_entry_still_loads_and_an_sdxl_entry_needs_both_vectors(tmp_path):
    from pytest_uoc.attacks.inversion_probe import _load
    from pytest_uoc.stores import ClassifierStore

    store = ClassifierStore(tmp_path, prefix="inversion")
    images = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    store.save("sd", {"vector": torch.ones(32), "losses": torch.tensor([1.0, 0.5]), "unet_evals": 8,
                      "seconds": 1.5, "images": images})  # what the SD-only code kept
    learned, kept = _load(store, "sd", "*", 265)
    assert learned.from_cache and learned.token_ids == (265,) and learned.vector_2 is None
    assert torch.equal(learned.vector, torch.ones(32)) and learned.losses == (1.0, 0.5) and torch.equal(kept, images)
    with pytest.warns(UserWarning, match="unreadable inversion cache entry .*no vector_2"):
        assert _load(store, "sd", "*", 265, 265) is None  # an SDXL run cannot use a one-vector entry
