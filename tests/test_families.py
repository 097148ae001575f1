"""SDXL, SD3 and Flux: the engine reproduces each family's own diffusers pipeline exactly.

The reference is the family's pipeline (``StableDiffusionXLPipeline``,
``StableDiffusion3Pipeline``, ``FluxPipeline``) called once with a step-end
callback that swaps the denoiser (``pipe.unet`` / ``pipe.transformer``) at the
cutoff, one CPU generator per image (``reference_partial_diffusion``). Every
component is a tiny random-weight model built offline (``family_builders.py``), with the sizes of
diffusers' own pipeline tests; T5 (Flux's second encoder) shares the CLIP
tokenizer, and SD3 runs without T5 (``text_encoder_3=None``, which SD3 supports).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from family_builders import (
    MSL,
    SIZE,
    build_flux,
    build_sd3,
    build_sdxl,
    flux_transformer,
    sd3_transformer,
    sdxl_unet,
)

from pytest_uoc.diffusion import PartialDiffusion as CompactPartialDiffusion
from pytest_uoc.diffusion import load_unlearned, restore
from pytest_uoc.diffusion.engine import NullFinish
from pytest_uoc.diffusion.families import family_name_of_model, family_name_of_state, family_of
from pytest_uoc.diffusion.reference import reference_partial_diffusion
from pytest_uoc.diffusion.restore import encode_references


def PartialDiffusion(*args, **kwargs):  # noqa: N802 - stands for the class in these comparisons
    """The engine keeping float32 images: compared with diffusers' float output to 1e-5, before rounding.

    The default engine keeps uint8 images; ``test_compact_images_are_the_float_images_rounded`` shows
    they are exactly these images rounded.
    """
    kwargs.setdefault("image_dtype", torch.float32)
    return CompactPartialDiffusion(*args, **kwargs)

PROMPTS = ["a red handwritten three", "a green handwritten eight"]
ANCHORS = ("a red handwritten", "a green handwritten")
SEEDS = [0, 7]
PSIS = [0.0, 0.001, 0.3, 0.6, 1.0]
STEPS = 5
ATOL = 1e-4


#: name: (builder, unlearned denoiser, engine kwargs, pipeline call kwargs)
CASES = {
    "sdxl-euler": (lambda: build_sdxl("euler"), lambda: sdxl_unet(1), {}, {}),
    "sdxl-ddim-eta1": (lambda: build_sdxl("ddim"), lambda: sdxl_unet(1), {"eta": 1.0}, {"eta": 1.0}),
    "sd3": (build_sd3, lambda: sd3_transformer(1), {"max_sequence_length": MSL}, {"max_sequence_length": MSL}),
    "flux": (build_flux, lambda: flux_transformer(1), {"max_sequence_length": MSL, "guidance_scale": 3.5},
             {"max_sequence_length": MSL}),
}


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def make_engine(name: str, **overrides):
    build, unlearned, engine_kwargs, _ = CASES[name]
    pipe, denoiser = build(), unlearned()
    kwargs = {"num_inference_steps": STEPS, "guidance_scale": 5.0, "height": SIZE, "width": SIZE,
              **engine_kwargs, **overrides}
    return PartialDiffusion(pipe, denoiser, **kwargs)


def call_kwargs(name: str, engine) -> dict:
    """What the family's pipeline call needs to run as the engine runs."""
    kwargs = {"height": SIZE, "width": SIZE, **CASES[name][3]}
    eta = kwargs.pop("eta", 0.0)
    kwargs["guidance_scale"] = engine.guidance_scale
    return {"eta": eta, **kwargs}


def reference(name: str, engine, psi: float, prompts=PROMPTS, seeds=SEEDS, **extra) -> torch.Tensor:
    kwargs = call_kwargs(name, engine)
    return reference_partial_diffusion(
        engine.original, engine.family.denoiser(engine.unlearned), prompts, psi, seeds,
        num_inference_steps=STEPS, **kwargs, **extra,
    )


def plain(pipe, name: str, engine, prompts=PROMPTS, seeds=SEEDS, **extra) -> torch.Tensor:
    kwargs = call_kwargs(name, engine)
    if not kwargs["eta"]:
        kwargs.pop("eta")
    generators = [torch.Generator("cpu").manual_seed(s) for _ in prompts for s in seeds]
    with torch.inference_mode():
        out = pipe([p for p in prompts for _ in seeds], num_inference_steps=STEPS, generator=generators,
                   output_type="pt", **kwargs, **extra)
    return out.images.float().cpu()


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    engine = make_engine(request.param)
    return request.param, engine, engine.sweep(PROMPTS, PSIS, SEEDS)


# -- detection and ψ -----------------------------------------------------------------------------


def test_families_are_detected_from_pipeline_and_denoiser(tiny_pipe):
    assert family_of(tiny_pipe).name == "sd"
    assert family_name_of_model(tiny_pipe.unet) == "sd"
    assert family_name_of_model(sdxl_unet(0)) == "sdxl"
    assert family_name_of_model(sd3_transformer(0)) == "sd3"
    assert family_name_of_model(flux_transformer(0)) == "flux"
    assert family_name_of_state(list(sdxl_unet(0).state_dict())) == "sdxl"
    assert family_name_of_state(list(sd3_transformer(0).state_dict())) == "sd3"
    assert family_name_of_state(list(flux_transformer(0).state_dict())) == "flux"
    assert family_name_of_state(list(tiny_pipe.unet.state_dict())) == "sd"


def test_psi_on_flow_matching_schedules(case):
    name, engine, sweep = case
    timesteps = engine.timesteps
    if name in ("sd3", "flux"):
        # t = σ·N: the schedule starts at σ = 1 (t = N) and every t is σ·1000.
        assert timesteps[0] == 1000.0
        sigmas = engine._new_scheduler().sigmas[:-1]
        assert torch.allclose(torch.tensor(timesteps), sigmas.float() * 1000)
        # ψ = 0 is the unlearned model alone; any ψ > 0 gives the original the σ = 1 step.
        assert engine.steps_for(0.0).handoff == 0 and engine.steps_for(0.001).handoff == 1
        split = engine.steps_for(0.3)
        assert all(timesteps[i] >= 700 for i in split.original)
        assert all(timesteps[i] < 700 for i in split.unlearned)
    handoffs = [sweep.splits[p].handoff for p in PSIS]
    assert handoffs[0] == 0 and handoffs[-1] == STEPS
    assert len(set(handoffs)) >= 4, handoffs


# -- partial diffusion ----------------------------------------------------------------------------


def test_sweep_and_generate_match_the_pipeline_with_a_denoiser_swap(case):
    name, engine, sweep = case
    distinct = {}
    for psi in PSIS:
        ref = reference(name, engine, psi)
        assert sweep[psi].shape == (len(PROMPTS) * len(SEEDS), 3, SIZE, SIZE)
        assert max_diff(sweep[psi], ref) <= ATOL, (name, psi)
        distinct.setdefault(sweep.splits[psi].handoff, sweep[psi])
    generated = engine.generate(PROMPTS, 0.6, SEEDS)
    assert torch.equal(generated.images, sweep[0.6])
    images = list(distinct.values())
    for a, b in zip(images, images[1:], strict=False):
        assert max_diff(a, b) > 1e-3  # the hand-off matters: the comparison has teeth


def test_psi_one_and_zero_are_each_pipelines_own_output(case):
    name, engine, sweep = case
    assert max_diff(sweep[1.0], plain(engine.original, name, engine)) <= ATOL
    assert max_diff(sweep[0.0], plain(engine.unlearned, name, engine)) <= ATOL
    assert max_diff(sweep[0.0], sweep[1.0]) > 1e-3


def test_mixed_branches_agree(case):
    name, engine, sweep = case
    mixed = PartialDiffusion(engine.original, engine.unlearned, num_inference_steps=STEPS,
                             guidance_scale=engine.guidance_scale, eta=engine.eta, height=SIZE, width=SIZE,
                             max_sequence_length=engine.max_sequence_length, mix_branches=True)
    other = mixed.sweep(PROMPTS, PSIS, SEEDS)
    for psi in PSIS:
        assert max_diff(other[psi], sweep[psi]) <= 1e-5, psi


def test_trajectory_cache_is_off_with_a_reason(tmp_path):
    from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache

    pipe = build_sd3()
    with pytest.warns(UserWarning, match="trajectory cache off for this SD3 engine"):
        engine = PartialDiffusion(pipe, sd3_transformer(1), num_inference_steps=STEPS, height=SIZE, width=SIZE,
                                  max_sequence_length=MSL, cache=TrajectoryCache(tmp_path))
    assert engine.cache is None


@pytest.mark.parametrize("scheduler", ["euler", "ddim"])
def test_sdxl_trajectory_cache_second_checkpoint_and_rerun(tmp_path, scheduler):
    """SDXL caches like SD 1.x: a second checkpoint costs the original nothing, a re-run nothing, images exact."""
    from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache

    pipe = build_sdxl(scheduler)

    def engine(unet, cache=None):
        return CompactPartialDiffusion(pipe, unet, num_inference_steps=STEPS, height=SIZE, width=SIZE, cache=cache,
                                       cache_images=cache is not None)

    first, second = sdxl_unet(1), sdxl_unet(2)
    plain, plain_second = engine(first).sweep(PROMPTS, PSIS, SEEDS), engine(second).sweep(PROMPTS, PSIS, SEEDS)
    cold = engine(first, TrajectoryCache(tmp_path)).sweep(PROMPTS, PSIS, SEEDS)
    assert cold.original_unet_evals == plain.original_unet_evals > 0
    other = engine(second, TrajectoryCache(tmp_path)).sweep(PROMPTS, PSIS, SEEDS)
    assert other.original_unet_evals == 0, "a second checkpoint must not redo the original's walk"
    rerun = engine(first, TrajectoryCache(tmp_path)).sweep(PROMPTS, PSIS, SEEDS)
    assert rerun.unet_evals == 0, "a re-run must cost nothing"
    for psi in PSIS:
        assert torch.equal(cold[psi], plain[psi]) and torch.equal(rerun[psi], plain[psi]), psi
        assert torch.equal(other[psi], plain_second[psi]), psi


def test_sdxl_cache_keys_hold_the_second_text_encoder(tmp_path):
    """Another second text encoder (same first one, same UNet) is another original: nothing is reused."""
    from transformers import CLIPTextModelWithProjection

    from pytest_uoc.diffusion.trajectory_cache import TrajectoryCache

    pipe = build_sdxl()
    engine = CompactPartialDiffusion(pipe, sdxl_unet(1), num_inference_steps=STEPS, height=SIZE, width=SIZE,
                                     cache=TrajectoryCache(tmp_path))
    engine.sweep(PROMPTS, PSIS, SEEDS)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        changed = CLIPTextModelWithProjection(pipe.text_encoder_2.config)
    altered = type(pipe)(**{**pipe.components, "text_encoder_2": changed})
    again = CompactPartialDiffusion(altered, sdxl_unet(1), num_inference_steps=STEPS, height=SIZE, width=SIZE,
                                    cache=TrajectoryCache(tmp_path)).sweep(PROMPTS, PSIS, SEEDS)
    assert again.original_unet_evals > 0


# -- calibration nulls: the original finishes with the anchors ------------------------------------


def _null_reference(name: str, engine, psi: float, null: NullFinish) -> torch.Tensor:
    """The original's pipeline call whose callback swaps the conditioning to the anchors at the hand-off."""
    pipe = engine.original
    kwargs = call_kwargs(name, engine)
    eta = kwargs.pop("eta")
    if eta:
        kwargs["eta"] = eta
    rows = [a for a in null.anchors for _ in SEEDS]
    negatives = [p for p in PROMPTS for _ in SEEDS] if null.negative == "concept" else None
    generators = [torch.Generator("cpu").manual_seed(s) for _ in PROMPTS for s in SEEDS]
    cutoff = engine.steps_for(psi).cutoff
    if engine.steps_for(psi).handoff == 0:
        with torch.inference_mode():
            return pipe(rows, negative_prompt=negatives, num_inference_steps=STEPS, generator=generators,
                        output_type="pt", **kwargs).images.float().cpu()
    device = torch.device("cpu")
    with torch.inference_mode():
        if name.startswith("sdxl"):
            pe, npe, pp, npp = pipe.encode_prompt(prompt=rows, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=True, negative_prompt=negatives)
            swap = {"prompt_embeds": torch.cat([npe, pe]), "add_text_embeds": torch.cat([npp, pp])}
        else:
            pe, npe, pp, npp = pipe.encode_prompt(prompt=rows, prompt_2=None, prompt_3=None,
                                                  negative_prompt=negatives, do_classifier_free_guidance=True,
                                                  device=device, num_images_per_prompt=1, max_sequence_length=MSL)
            swap = {"prompt_embeds": torch.cat([npe, pe]), "pooled_prompt_embeds": torch.cat([npp, pp])}

    def callback(p, step, timestep, callback_kwargs):
        ts = p.scheduler.timesteps
        if step + 1 < len(ts) and ts[step + 1] < cutoff:
            return dict(swap)
        return {}

    with torch.inference_mode():
        return pipe([p for p in PROMPTS for _ in SEEDS], num_inference_steps=STEPS, generator=generators,
                    output_type="pt", callback_on_step_end=callback, **kwargs).images.float().cpu()


class _Conditioned(torch.nn.Module):
    """Flux's transformer with the text conditioning replaced (FluxPipeline's callback cannot swap pooled)."""

    def __init__(self, inner, embeds, pooled):
        super().__init__()
        self.inner, self.embeds, self.pooled = inner, embeds, pooled
        self.config = inner.config

    def cache_context(self, name):
        return self.inner.cache_context(name)

    def forward(self, **kwargs):
        kwargs["encoder_hidden_states"], kwargs["pooled_projections"] = self.embeds, self.pooled
        return self.inner(**kwargs)


@pytest.mark.parametrize("negative", ["empty", "concept"])
@pytest.mark.parametrize("name", ["sdxl-euler", "sd3"])
def test_null_finishes_match_the_pipeline(name, negative):
    engine = make_engine(name)
    null = NullFinish(ANCHORS, negative)
    psis = [0.0, 0.3, 0.6]
    sweep = engine.sweep(PROMPTS, psis, SEEDS, null=null)
    plain_sweep = engine.sweep(PROMPTS, psis, SEEDS)
    for psi in psis:
        assert max_diff(sweep[psi], _null_reference(name, engine, psi, null)) <= ATOL, psi
        assert max_diff(sweep[psi], plain_sweep[psi]) > 1e-3  # the original finishing is not the unlearned one


def test_flux_null_finish_matches_the_pipeline():
    engine = make_engine("flux")
    null = NullFinish(ANCHORS, "empty")
    psi = 0.6
    sweep = engine.sweep(PROMPTS, [psi], SEEDS, null=null)
    pipe = engine.original
    rows = [a for a in ANCHORS for _ in SEEDS]
    with torch.inference_mode():
        embeds, pooled, _ = pipe.encode_prompt(prompt=rows, prompt_2=None, device=torch.device("cpu"),
                                               num_images_per_prompt=1, max_sequence_length=MSL)
    finisher = _Conditioned(pipe.transformer, embeds, pooled)
    ref = reference_partial_diffusion(pipe, finisher, PROMPTS, psi, SEEDS, num_inference_steps=STEPS,
                                      **{k: v for k, v in call_kwargs("flux", engine).items() if k != "eta"})
    assert max_diff(sweep[psi], ref) <= ATOL
    # Without true CFG the pipeline ignores negative prompts; the lower null says so and equals the upper.
    with pytest.warns(UserWarning, match="lower null equals the upper null"):
        lower = engine.sweep(PROMPTS, [psi], SEEDS, null=NullFinish(ANCHORS, "concept"))
    assert torch.equal(lower[psi], sweep[psi])


class _Alternating(torch.nn.Module):
    """Flux's transformer under true CFG: the pipeline calls it for the prompt, then for the negative."""

    def __init__(self, inner, cond, uncond):
        super().__init__()
        self.inner, self.conds, self.calls = inner, (cond, uncond), 0
        self.config = inner.config

    def cache_context(self, name):
        return self.inner.cache_context(name)

    def forward(self, **kwargs):
        embeds, pooled = self.conds[self.calls % 2]
        self.calls += 1
        kwargs["encoder_hidden_states"], kwargs["pooled_projections"] = embeds, pooled
        return self.inner(**kwargs)


def test_flux_lower_null_under_true_cfg_matches_the_pipeline():
    engine = make_engine("flux", true_cfg_scale=4.0)
    psi = 0.6
    sweep = engine.sweep(PROMPTS, [psi], SEEDS, null=NullFinish(ANCHORS, "concept"))
    pipe = engine.original
    with torch.inference_mode():
        def embed(rows):
            embeds, pooled, _ = pipe.encode_prompt(prompt=rows, prompt_2=None, device=torch.device("cpu"),
                                                   num_images_per_prompt=1, max_sequence_length=MSL)
            return embeds, pooled

        anchors = embed([a for a in ANCHORS for _ in SEEDS])
        concept = embed([p for p in PROMPTS for _ in SEEDS])
    finisher = _Alternating(pipe.transformer, anchors, concept)
    kwargs = {k: v for k, v in call_kwargs("flux", engine).items() if k != "eta"}
    ref = reference_partial_diffusion(pipe, finisher, PROMPTS, psi, SEEDS, num_inference_steps=STEPS,
                                      negative_prompt=[""] * len(PROMPTS) * len(SEEDS), true_cfg_scale=4.0, **kwargs)
    assert finisher.calls == 2 * len(engine.steps_for(psi).unlearned)  # cond + uncond per finishing step
    assert max_diff(sweep[psi], ref) <= ATOL
    upper = engine.sweep(PROMPTS, [psi], SEEDS, null=NullFinish(ANCHORS, "empty"))
    assert max_diff(sweep[psi], upper[psi]) > 1e-3  # with true CFG the concept negative matters


def test_flux_true_cfg_matches_the_pipeline():
    engine = make_engine("flux", true_cfg_scale=4.0)
    assert engine.do_cfg
    sweep = engine.sweep(PROMPTS, [0.0, 0.6, 1.0], SEEDS)
    kwargs = {k: v for k, v in call_kwargs("flux", engine).items() if k != "eta"}
    for psi in (0.0, 0.6, 1.0):
        ref = reference_partial_diffusion(
            engine.original, engine.unlearned.transformer, PROMPTS, psi, SEEDS, num_inference_steps=STEPS,
            negative_prompt=[""] * len(PROMPTS) * len(SEEDS), true_cfg_scale=4.0, **kwargs,
        )
        assert max_diff(sweep[psi], ref) <= ATOL, psi
    assert max_diff(sweep[1.0], make_engine("flux").sweep(PROMPTS, [1.0], SEEDS)[1.0]) > 1e-3


# -- restoration: the family's img2img pipeline ----------------------------------------------------


IMG2IMG = {"sdxl-euler": "StableDiffusionXLImg2ImgPipeline", "sd3": "StableDiffusion3Img2ImgPipeline",
           "flux": "FluxImg2ImgPipeline"}


@pytest.mark.parametrize("name", list(IMG2IMG))
def test_restore_matches_the_img2img_pipeline(name):
    import diffusers

    engine = make_engine(name)
    references = engine.generate(PROMPTS, 1.0, SEEDS).images
    latents = encode_references(engine, references)
    strengths = [0.3, 0.6]
    restored = restore(engine, latents, PROMPTS, strengths, SEEDS)
    cls = getattr(diffusers, IMG2IMG[name])
    img2img = cls(**{k: v for k, v in engine.unlearned.components.items()
                     if k in cls.__init__.__code__.co_varnames})
    img2img.set_progress_bar_config(disable=True)
    kwargs = {k: v for k, v in call_kwargs(name, engine).items() if k != "eta"}
    if name.startswith("sdxl"):
        kwargs.pop("height"), kwargs.pop("width")
    for strength in strengths:
        generators = [torch.Generator("cpu").manual_seed(s) for _ in PROMPTS for s in SEEDS]
        with torch.inference_mode():
            own = img2img([p for p in PROMPTS for _ in SEEDS], image=latents, strength=strength,
                          num_inference_steps=STEPS, generator=generators, output_type="pt", **kwargs).images
        assert max_diff(restored[strength], own.float().cpu()) <= ATOL, strength
    assert max_diff(restored[0.3], restored[0.6]) > 1e-3


@pytest.mark.parametrize("name", ["sdxl-euler", "sd3"])
def test_restore_null_matches_the_originals_img2img(name):
    import diffusers

    engine = make_engine(name)
    latents = encode_references(engine, engine.generate(PROMPTS, 1.0, SEEDS).images)
    null = NullFinish(ANCHORS, "concept")
    restored = restore(engine, latents, PROMPTS, [0.6], SEEDS, null=null)
    cls = getattr(diffusers, IMG2IMG[name])
    img2img = cls(**{k: v for k, v in engine.original.components.items()
                     if k in cls.__init__.__code__.co_varnames})
    img2img.set_progress_bar_config(disable=True)
    kwargs = {k: v for k, v in call_kwargs(name, engine).items() if k != "eta"}
    if name.startswith("sdxl"):
        kwargs.pop("height"), kwargs.pop("width")
    generators = [torch.Generator("cpu").manual_seed(s) for _ in PROMPTS for s in SEEDS]
    with torch.inference_mode():
        own = img2img([a for a in ANCHORS for _ in SEEDS], negative_prompt=[p for p in PROMPTS for _ in SEEDS],
                      image=latents, strength=0.6, num_inference_steps=STEPS, generator=generators,
                      output_type="pt", **kwargs).images
    assert max_diff(restored[0.6], own.float().cpu()) <= ATOL


# -- loading: the family's own kinds, and another family's checkpoint -------------------------------


def test_sdxl_checkpoints_given_an_sd15_original_are_refused(tiny_pipe, tmp_path):
    from safetensors.torch import save_file

    unet = sdxl_unet(1)
    with pytest.raises(ValueError, match=r"SDXL.*SD 1\.x/2\.x"):
        load_unlearned(tiny_pipe, unet)
    with pytest.raises(ValueError, match=r"SDXL.*SD 1\.x/2\.x"):
        load_unlearned(tiny_pipe, build_sdxl())
    unet.save_pretrained(tmp_path / "unet")
    with pytest.raises(ValueError, match=r"SDXL.*SD 1\.x/2\.x"):
        load_unlearned(tiny_pipe, tmp_path / "unet")
    save_file(unet.state_dict(), str(tmp_path / "sdxl.safetensors"))
    with pytest.raises(ValueError, match=r"sdxl\.safetensors.*SDXL.*SD 1\.x/2\.x"):
        load_unlearned(tiny_pipe, tmp_path / "sdxl.safetensors")
    # And the other way round: an SD 1.x UNet for an SDXL original; an SDXL pipeline is taken as is.
    sdxl = build_sdxl()
    with pytest.raises(ValueError, match=r"SD 1\.x/2\.x.*SDXL"):
        load_unlearned(sdxl, tiny_pipe.unet)
    other = build_sdxl("ddim")
    assert load_unlearned(sdxl, other) is other
    # Refused before any image: the engine does not get built.
    with pytest.raises(ValueError, match="SDXL"):
        PartialDiffusion(tiny_pipe, unet)


def test_transformer_families_load_their_kinds_and_refuse_others(tiny_pipe, tmp_path):
    from safetensors.torch import save_file

    pipe = build_sd3()
    unlearned = sd3_transformer(1)
    whole = build_sd3()
    assert load_unlearned(pipe, whole) is whole
    as_model = load_unlearned(pipe, unlearned)
    assert as_model.transformer is unlearned and as_model.vae is pipe.vae
    unlearned.save_pretrained(tmp_path / "transformer")
    folder = load_unlearned(pipe, tmp_path)
    state = unlearned.state_dict()
    assert all(torch.equal(folder.transformer.state_dict()[k], v) for k, v in state.items())
    save_file({f"transformer.{k}": v for k, v in state.items()}, str(tmp_path / "full.safetensors"))
    full = load_unlearned(pipe, tmp_path / "full.safetensors")
    assert full.uoc_checkpoint["kind"] == "diffusers"
    assert all(torch.equal(full.transformer.state_dict()[k], v) for k, v in state.items())
    attention = {k: v for k, v in state.items() if ".attn." in k}
    save_file(attention, str(tmp_path / "partial.safetensors"))
    partial = load_unlearned(pipe, tmp_path / "partial.safetensors")
    merged = partial.transformer.state_dict()
    assert partial.uoc_checkpoint["kind"] == "partial"
    original = pipe.transformer.state_dict()
    assert all(torch.equal(merged[k], attention[k] if k in attention else original[k]) for k in merged)
    with pytest.raises(ValueError, match=r"Flux.*SD3"):
        load_unlearned(pipe, flux_transformer(1))
    with pytest.raises(ValueError, match=r"SD 1\.x/2\.x.*SD3"):
        load_unlearned(pipe, tiny_pipe.unet)
    with pytest.raises(ValueError, match=r"SD3.*SD 1\.x/2\.x"):
        load_unlearned(tiny_pipe, unlearned)
    save_file(flux_transformer(1).state_dict(), str(tmp_path / "flux.safetensors"))
    with pytest.raises(ValueError, match=r"flux\.safetensors.*Flux.*SD3"):
        load_unlearned(pipe, tmp_path / "flux.safetensors")
    with pytest.raises(ValueError, match="kind 'lora' is not supported for SD3"):
        load_unlearned(pipe, tmp_path / "partial.safetensors", kind="lora")


@pytest.mark.parametrize("name", ["sdxl", "sd3"])
def test_diffusers_folders_of_the_family_load(name, tmp_path):
    original = build_sdxl() if name == "sdxl" else build_sd3()
    other = build_sdxl("ddim") if name == "sdxl" else build_sd3()
    denoiser = sdxl_unet(1) if name == "sdxl" else sd3_transformer(1)
    attr = "unet" if name == "sdxl" else "transformer"
    setattr(other, attr, denoiser)
    other.save_pretrained(tmp_path / "pipe")
    whole = load_unlearned(original, tmp_path / "pipe")
    assert type(whole) is type(original) and whole.uoc_checkpoint["what"] == "whole pipeline"
    denoiser.save_pretrained(tmp_path / attr)
    part = load_unlearned(original, tmp_path / attr)
    for loaded in (whole, part):
        state = getattr(loaded, attr).state_dict()
        assert all(torch.equal(state[k], v) for k, v in denoiser.state_dict().items())
    assert part.vae is original.vae and part.text_encoder_2 is original.text_encoder_2


def test_an_sd_pipeline_still_gets_the_sd_path(tiny_pipe, tiny_unet):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=4)
    assert engine.family.name == "sd" and engine.family.cache_off_reason is None


# -- compact images and the VAE's decode ---------------------------------------------------------


@pytest.mark.parametrize("name", ["sdxl-euler", "sd3", "flux"])
def test_compact_images_are_the_float_images_rounded(name):
    from pytest_uoc.scoring.images import compact_images

    exact = make_engine(name)
    compact = make_engine(name, image_dtype=torch.uint8)
    floats = exact.sweep(PROMPTS, [0.0, 0.55], SEEDS)
    kept = compact.sweep(PROMPTS, [0.0, 0.55], SEEDS)
    for psi in (0.0, 0.55):
        assert kept[psi].dtype == torch.uint8
        assert torch.equal(kept[psi], compact_images(floats[psi])), psi
    assert CompactPartialDiffusion(exact.original, exact.unlearned).image_dtype == torch.uint8  # the default


def test_image_dtype_is_checked(tiny_pipe, tiny_unet):
    with pytest.raises(ValueError, match=r"image_dtype must be torch.uint8 .* got torch.float16"):
        CompactPartialDiffusion(tiny_pipe, tiny_unet, image_dtype=torch.float16)


def _spy_decode(vae, calls: list):
    decode = vae.decode

    def spy(latents, *args, **kwargs):
        calls.append((latents.shape[0], latents.dtype, vae.dtype))
        return decode(latents, *args, **kwargs)

    vae.decode = spy


def test_the_vae_decodes_in_chunks_of_bounded_pixels(monkeypatch):
    from pytest_uoc.diffusion import families

    engine = make_engine("sdxl-euler")
    calls: list = []
    _spy_decode(engine.original.vae, calls)
    whole = engine.sweep(PROMPTS, [0.55], SEEDS)[0.55]
    assert [c[0] for c in calls] == [len(PROMPTS) * len(SEEDS)]  # 4 images of 16 px: one call
    calls.clear()
    monkeypatch.setattr(families, "DECODE_PIXELS", SIZE * SIZE)  # one image per call
    chunked = make_engine("sdxl-euler")
    _spy_decode(chunked.original.vae, calls)
    one_by_one = chunked.sweep(PROMPTS, [0.55], SEEDS)[0.55]
    assert [c[0] for c in calls] == [1] * (len(PROMPTS) * len(SEEDS))
    assert max_diff(one_by_one, whole) <= 1e-5


def test_decode_chunks_at_real_sizes():
    from pytest_uoc.diffusion.families import decode_chunk

    assert decode_chunk(512 * 512) == 4 and decode_chunk(1024 * 1024) == 1 and decode_chunk(2048 * 2048) == 1
    assert decode_chunk(32 * 32) == 1024


def test_sdxl_fp16_vae_is_upcast_to_decode_as_the_pipeline_does(tiny_pipe, tiny_unet):
    engine = make_engine("sdxl-euler")
    vae = engine.original.vae
    latents = torch.randn(2, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(0))
    exact = engine.family.decode(vae, latents, engine)
    vae.to(dtype=torch.float16)
    assert vae.config.force_upcast
    calls: list = []
    _spy_decode(vae, calls)
    upcast = engine.family.decode(vae, latents.half(), engine)
    assert calls and all(dtype == torch.float32 and vae_dtype == torch.float32 for _, dtype, vae_dtype in calls)
    assert vae.dtype == torch.float16  # handed back as it was given
    assert torch.isfinite(upcast).all() and max_diff(upcast, exact) <= 1e-2
    # SD 1.x's pipeline does not upcast: neither does its family.
    import copy

    sd = CompactPartialDiffusion(tiny_pipe, tiny_unet)
    sd_vae = copy.deepcopy(tiny_pipe.vae).to(dtype=torch.float16)  # the session's pipeline stays as it is
    calls.clear()
    _spy_decode(sd_vae, calls)
    sd.family.decode(sd_vae, latents.half(), sd)
    assert calls and all(dtype == torch.float16 for _, dtype, _ in calls)
