"""Checkpoint kinds built offline from the zoo: partial, LDM, LoRA, text encoder; bad files; quiet loading."""

from __future__ import annotations

import copy
import logging
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from pytest_uoc import zoo
from pytest_uoc.config import SettingError, resolve_settings
from pytest_uoc.diffusion import load_unlearned
from pytest_uoc.diffusion.checkpoints import detect_kind, summarise_families

pytestmark = pytest.mark.skipif(not zoo.names(), reason="the zoo's weights are not installed")


@pytest.fixture(scope="module")
def original():
    """The zoo's original pipeline (float32, CPU); never mutated."""
    return zoo.load("digits")


@pytest.fixture(scope="module")
def esd() -> dict[str, torch.Tensor]:
    """The zoo's ESD-x UNet (digits-esd-three) as a complete diffusers state dict.

    The zoo ships it as ESD's script saves it (only the cross-attention's trained tensors); the
    original's float16 weights fill in the rest, so every value is exactly a shipped one.
    """
    base = load_file(str(zoo.pipeline_path() / "unet" / "diffusion_pytorch_model.safetensors"))
    trained = load_file(str(zoo.unet_path("digits-esd-three")))
    assert set(trained) < set(base) and all(".attn2." in k for k in trained)
    return {**base, **trained}


def unet_equals(unet, expected: dict[str, torch.Tensor]) -> None:
    """Every tensor of ``unet`` is exactly ``expected``'s."""
    state = unet.state_dict()
    assert state.keys() == expected.keys()
    different = [k for k in state if not torch.equal(state[k], expected[k])]
    assert not different, different[:5]


def untouched(original, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in original.unet.state_dict().items())


# -- partial state dicts (ESD's own files) ---------------------------------------------------


def test_partial_esd_x_file_as_esds_script_saves_it(original, esd, tmp_path):
    """ESD's script saves only the trained cross-attention tensors; the rest is the original's."""
    trained = {k: v for k, v in esd.items() if "attn2" in k}
    path = tmp_path / "esd-x-three.safetensors"
    save_file(trained, str(path))
    base = {k: v.clone() for k, v in original.unet.state_dict().items()}
    pipe = load_unlearned(original, path)
    unet_equals(pipe.unet, {k: trained.get(k, base[k]) for k in base})
    assert untouched(original, base)
    assert pipe.vae is original.vae and pipe.text_encoder is original.text_encoder
    differ = sum(not torch.equal(v, base[k]) for k, v in trained.items())
    assert differ > 0
    assert pipe.uoc_checkpoint == {"kind": "partial", "path": str(path), "tensors": len(trained),
                                   "differ": differ, "where": "cross-attention only"}


def test_a_file_lacking_a_few_tensors_needs_kind_partial(original, esd, tmp_path):
    """Auto refuses a complete file with holes (naming them); kind='partial' takes it."""
    state = {k: v for k, v in esd.items() if not k.startswith("conv_in.")}
    path = tmp_path / "holes.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"2 missing key.*conv_in.*kind partial"):
        load_unlearned(original, path)
    pipe = load_unlearned(original, path, kind="partial")
    expected = {**esd, **{k: v for k, v in original.unet.state_dict().items() if k.startswith("conv_in.")}}
    unet_equals(pipe.unet, expected)
    assert pipe.uoc_checkpoint["kind"] == "partial"


def test_partial_with_no_key_in_common_is_rejected(original, tmp_path):
    path = tmp_path / "elsewhere.safetensors"
    save_file({"some.other.model.weight": torch.zeros(3)}, str(path))
    with pytest.raises(ValueError, match=r"elsewhere\.safetensors has no tensor in common.*some\.other\.model\.weight"):
        load_unlearned(original, path, kind="partial")


def test_partial_for_another_base_names_key_and_both_shapes(original, esd, tmp_path):
    key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    trained = {k: v for k, v in esd.items() if "attn2" in k}
    trained[key] = torch.zeros(40, 768)  # an SD 1.x cross-attention: 768-wide text
    path = tmp_path / "sd15-esd-x.safetensors"
    save_file(trained, str(path))
    with pytest.raises(ValueError) as info:
        load_unlearned(original, path)
    message = str(info.value)
    assert str(path) in message and key in message
    assert "(40, 768)" in message and str(tuple(esd[key].shape)) in message


# -- LDM / CompVis single-file checkpoints ---------------------------------------------------

_RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                  "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def to_ldm(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Write a diffusers UNet state dict with LDM keys: the inverse of diffusers'
    ``convert_ldm_unet_checkpoint`` (its top-level table, and its block arithmetic run
    backwards). Keys with no LDM counterpart (the zoo's ``add_embedding``) are dropped."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    n = config["layers_per_block"]

    def resnet(rest: list[str]) -> str:
        return ".".join([_RESNET_TO_LDM[rest[0]], *rest[1:]])

    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key in top:
            new = top[key]
        elif parts[0] == "down_blocks" and parts[2] == "downsamplers":
            new = f"input_blocks.{1 + int(parts[1]) * (n + 1) + n}.0.op.{parts[-1]}"
        elif parts[0] == "down_blocks":
            index = 1 + int(parts[1]) * (n + 1) + int(parts[3])
            inner = resnet(parts[4:]) if parts[2] == "resnets" else ".".join(parts[4:])
            new = f"input_blocks.{index}.{0 if parts[2] == 'resnets' else 1}.{inner}"
        elif parts[0] == "mid_block":
            index = {("resnets", "0"): 0, ("attentions", "0"): 1, ("resnets", "1"): 2}[(parts[1], parts[2])]
            new = f"middle_block.{index}." + (resnet(parts[3:]) if parts[1] == "resnets" else ".".join(parts[3:]))
        elif parts[0] == "up_blocks" and parts[2] == "upsamplers":
            block = int(parts[1])
            after = 2 if config["up_block_types"][block].startswith("CrossAttn") else 1
            new = f"output_blocks.{block * (n + 1) + n}.{after}.conv.{parts[-1]}"
        elif parts[0] == "up_blocks":
            index = int(parts[1]) * (n + 1) + int(parts[3])
            inner = resnet(parts[4:]) if parts[2] == "resnets" else ".".join(parts[4:])
            new = f"output_blocks.{index}.{0 if parts[2] == 'resnets' else 1}.{inner}"
        else:
            continue
        out["model.diffusion_model." + new] = value
    return out


@pytest.mark.parametrize("layout", ["full-ckpt", "unet-only-safetensors", "bare-unet-keys"])
def test_ldm_single_file(original, esd, tmp_path, layout):
    ldm = to_ldm(esd, original.unet.config)
    assert len(ldm) == len(esd)  # an SD 1.x UNet: every tensor has its LDM name
    if layout == "full-ckpt":
        full = {**ldm, "first_stage_model.decoder.conv_in.weight": torch.zeros(2),
                "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(2)}
        path = tmp_path / "esd-three.ckpt"
        torch.save({"state_dict": full, "global_step": 10}, path)
    else:
        if layout == "bare-unet-keys":
            ldm = {k.removeprefix("model.diffusion_model."): v for k, v in ldm.items()}
        path = tmp_path / "esd-three.safetensors"
        save_file(ldm, str(path))
    pipe = load_unlearned(original, path)
    unet_equals(pipe.unet, esd)  # every tensor converted back to the ESD UNet's
    record = pipe.uoc_checkpoint
    assert record["kind"] == "ldm" and record["path"] == str(path) and record["where"] == "cross-attention only"
    assert "kept_from_original" not in record  # nothing of the UNet was missing from the file
    if layout == "full-ckpt":
        assert record["ignored"] == ["first_stage_model (VAE)", "cond_stage_model (text encoder)"]
    assert load_unlearned(original, path, kind="ldm").uoc_checkpoint["kind"] == "ldm"


@pytest.mark.parametrize(("prefix", "what"), [("first_stage_model.", "VAE"), ("cond_stage_model.transformer.", "text encoder")])
def test_ldm_file_without_a_unet_is_rejected(original, tmp_path, prefix, what):
    path = tmp_path / "part.ckpt"
    torch.save({"state_dict": {prefix + "encoder.conv_in.weight": torch.zeros(2), prefix + "x.bias": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match=rf"part\.ckpt is an LDM checkpoint that holds only a {what}.*no UNet"):
        load_unlearned(original, path)


def test_ldm_file_for_another_base_is_rejected(original, esd, tmp_path):
    ldm = to_ldm(esd, original.unet.config)
    key = "model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"
    ldm[key] = torch.zeros(48, 768)
    path = tmp_path / "sd15.safetensors"
    save_file(ldm, str(path))
    with pytest.raises(ValueError, match=r"sd15\.safetensors.*attn2\.to_k\.weight.*\(48, 768\).*\(48, 64\)"):
        load_unlearned(original, path)


# -- LoRA ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_unet(original):
    """A copy of the zoo UNet with a rank-2 peft LoRA on its attention projections, B random."""
    from peft import LoraConfig

    unet = copy.deepcopy(original.unet)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return unet


def lora_pairs(unet) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Module path → (A, B) of a peft-wrapped UNet."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet)
    return {k.removesuffix(".lora_A.weight"): (v, state[k.replace("lora_A", "lora_B")])
            for k, v in state.items() if k.endswith("lora_A.weight")}


@pytest.mark.parametrize("style", ["peft", "diffusers-old", "kohya"])
def test_lora_is_fused_into_a_copy(original, lora_unet, tmp_path, style):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from peft.utils import get_peft_model_state_dict

    peft_state = get_peft_model_state_dict(lora_unet)
    scale = 1.0
    if style == "kohya":
        path = tmp_path / "lora.safetensors"
        kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in peft_state.items()})
        assert any(k.startswith("lora_unet_") for k in kohya)
        kohya = {k: (v * 2 if k.endswith(".alpha") else v) for k, v in kohya.items()}  # alpha 2r: scale 2
        scale = 2.0
        save_file(kohya, str(path))
    else:
        layers = peft_state if style == "peft" else convert_state_dict_to_diffusers(peft_state)
        StableDiffusionPipeline.save_lora_weights(tmp_path / "lora", unet_lora_layers=layers)
        path = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
        marker = "lora_A" if style == "peft" else "lora.down"
        assert all(marker in k or "lora_B" in k or "lora.up" in k for k in load_file(str(path)))
    base = {k: v.clone() for k, v in original.unet.state_dict().items()}
    pipe = load_unlearned(original, path)
    expected = dict(base)
    for module, (a, b) in lora_pairs(lora_unet).items():
        expected[f"{module}.weight"] = base[f"{module}.weight"] + scale * (b @ a)
    result = pipe.unet.state_dict()
    assert result.keys() == base.keys()  # plain weights: no lora layers left
    for key, value in result.items():
        if key in {f"{m}.weight" for m in lora_pairs(lora_unet)}:
            assert torch.allclose(value, expected[key], atol=1e-6, rtol=0), key
        else:
            assert torch.equal(value, base[key]), key
    assert untouched(original, base)
    assert pipe.text_encoder is original.text_encoder and pipe.vae is original.vae
    record = pipe.uoc_checkpoint
    assert record["kind"] == "lora" and record["fused_into"] == ["unet"]
    assert record["differ"] == len(lora_pairs(lora_unet))
    assert record["where"] == "self-attention (16), cross-attention (16)"


def lora_file(lora_unet, tmp_path, edit) -> str:
    from peft.utils import get_peft_model_state_dict

    state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(lora_unet).items()}
    state = edit(state)
    path = tmp_path / "other-base-lora.safetensors"
    save_file(state, str(path))
    return str(path)


def test_lora_for_a_missing_module_is_rejected(original, lora_unet, tmp_path):
    path = lora_file(lora_unet, tmp_path, lambda s: {k.replace("down_blocks.1", "down_blocks.3"): v for k, v in s.items()})
    with pytest.raises(ValueError, match=r"other-base-lora\.safetensors.*down_blocks\.3.*original unet does not have"):
        load_unlearned(original, path)


def test_lora_of_another_width_is_rejected(original, lora_unet, tmp_path):
    key = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"

    def widen(state):
        return {**state, key: torch.zeros(2, 768)}

    path = lora_file(lora_unet, tmp_path, widen)
    with pytest.raises(ValueError, match=r"other-base-lora.*attn2\.to_k.*768 input features.*\(48, 64\)"):
        load_unlearned(original, path)


def test_kind_lora_on_a_plain_file_is_rejected(original, esd, tmp_path):
    path = tmp_path / "unet.safetensors"
    save_file(dict(esd), str(path))
    with pytest.raises(ValueError, match="given as kind 'lora' but holds no LoRA keys"):
        load_unlearned(original, path, kind="lora")


# -- text encoders ---------------------------------------------------------------------------


def concealer_file() -> str:
    return str(zoo.weights_dir() / "variants" / "digits-conceal-red.text_encoder.safetensors")


@pytest.mark.parametrize("prefix", ["", "text_model.", "text_encoder.text_model."])
def test_text_encoder_state_dict_file(original, tmp_path, prefix):
    shipped = load_file(concealer_file())
    path = tmp_path / "clip.safetensors"
    save_file({prefix + k: v for k, v in shipped.items()}, str(path))
    before = {k: v.clone() for k, v in original.text_encoder.state_dict().items()}
    pipe = load_unlearned(original, path)
    state = pipe.text_encoder.state_dict()
    assert state.keys() == shipped.keys() and all(torch.equal(state[k], shipped[k]) for k in state)
    assert pipe.unet is original.unet and pipe.vae is original.vae and pipe.tokenizer is original.tokenizer
    assert all(torch.equal(v, before[k]) for k, v in original.text_encoder.state_dict().items())
    assert pipe.uoc_checkpoint["kind"] == "text_encoder" and pipe.uoc_checkpoint["where"] == "text encoder only"
    assert pipe.uoc_checkpoint["differ"] > 0


def test_text_encoder_folder(original, tmp_path):
    concealer = zoo.load("digits-conceal-red", original=original)
    concealer.text_encoder.save_pretrained(tmp_path / "text_encoder")
    for source in (tmp_path, tmp_path / "text_encoder"):
        pipe = load_unlearned(original, source)
        expected = concealer.text_encoder.state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in pipe.text_encoder.state_dict().items())
        assert pipe.unet is original.unet
        assert pipe.uoc_checkpoint["kind"] == "text_encoder"


def narrow_encoder(original):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(**{**original.text_encoder.config.to_dict(), "hidden_size": 32, "intermediate_size": 64,
                               "projection_dim": 32})
    torch.manual_seed(0)
    return CLIPTextModel(config)


def test_text_encoder_of_another_width_is_rejected(original, tmp_path):
    encoder = narrow_encoder(original)
    path = tmp_path / "narrow.safetensors"
    save_file(encoder.state_dict(), str(path))
    with pytest.raises(ValueError, match=r"narrow\.safetensors: the text encoder is 32 wide, the original's is 64 wide"):
        load_unlearned(original, path)
    encoder.save_pretrained(tmp_path / "te" / "text_encoder")
    with pytest.raises(ValueError, match=r"text_encoder: the text encoder is 32 wide, the original's is 64 wide"):
        load_unlearned(original, tmp_path / "te")


# -- detection, existing kinds, and the option ------------------------------------------------


def test_detection_and_family_summary(original, esd):
    unet_keys = set(original.unet.state_dict())
    assert detect_kind(esd, unet_keys) == "diffusers"
    assert detect_kind({k: v for k, v in esd.items() if "attn2" in k}, unet_keys) == "partial"
    assert detect_kind(load_file(concealer_file()), unet_keys) == "text_encoder"
    assert detect_kind(to_ldm(esd, original.unet.config), unet_keys) == "ldm"
    assert detect_kind({"lora_unet_x_to_k.lora_down.weight": torch.zeros(1)}, unet_keys) == "lora"
    assert summarise_families([]) == "no tensor differs from the original"
    assert summarise_families(["a.attn2.to_k.weight", "b.resnets.0.conv1.weight", "c.attn2.to_v.weight"]) == (
        "cross-attention (2), resnets (1)")


def test_complete_file_is_unchanged_and_recorded(original, esd, tmp_path):
    path = tmp_path / "esd.safetensors"
    save_file(dict(esd), str(path))
    pipe = load_unlearned(original, path)
    unet_equals(pipe.unet, esd)
    assert pipe.uoc_checkpoint["kind"] == "diffusers" and pipe.uoc_checkpoint["tensors"] == len(esd)
    with pytest.raises(ValueError, match="unknown checkpoint kind 'safetensors'"):
        load_unlearned(original, path, kind="safetensors")


def test_the_kind_option_everywhere():
    assert resolve_settings({}, {}, {}).unlearned_kind == "auto"
    assert resolve_settings({}, {"unlearned_kind": "ldm"}, {}).unlearned_kind == "ldm"
    assert resolve_settings({}, {"unlearned_kind": "ldm"}, {"UOC_UNLEARNED_KIND": "lora"}).unlearned_kind == "lora"
    settings = resolve_settings({"unlearned_kind": "partial"}, {}, {"UOC_UNLEARNED_KIND": "lora"})
    assert settings.unlearned_kind == "partial"
    assert resolve_settings({}, {}, {}).with_marker(kind="text_encoder").unlearned_kind == "text_encoder"
    assert settings.with_marker(kind="lora").unlearned_kind == "partial"  # the command line wins
    with pytest.raises(SettingError, match="expected one of: auto, diffusers, partial, ldm, lora, text_encoder"):
        resolve_settings({}, {}, {"UOC_UNLEARNED_KIND": "kohya"})
    with pytest.raises(SettingError, match="kind"):
        resolve_settings({}, {}, {}).with_marker(kind="kohya")


# -- corrupt, empty, truncated files ----------------------------------------------------------


def truncated(tmp_path, esd):
    path = tmp_path / "truncated.safetensors"
    save_file(dict(esd), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.safetensors", b""), ("tiny.safetensors", b"\x01\x00"), ("empty.pt", b""), ("garbage.ckpt", b"PK\x03\x04 not a zip"),
     ("noise.bin", bytes(range(256)) * 4)],
)
def test_corrupt_files_name_their_path(original, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match="cannot read weight file") as info:
        load_unlearned(original, path)
    assert str(path) in str(info.value) and "corrupt, empty or truncated" in str(info.value)


def test_a_truncated_file_names_its_path(original, esd, tmp_path):
    path = truncated(tmp_path, esd)
    with pytest.raises(ValueError, match="cannot read weight file") as info:
        load_unlearned(original, path)
    assert str(path) in str(info.value)


def test_the_plugin_names_a_corrupt_file(pytester):
    pytester.makepyfile(
        """
        def test_load(unlearned_pipeline):
            pass
        """
    )
    (pytester.path / "broken.safetensors").write_bytes(b"")
    result = pytester.runpytest_inprocess("--uoc-device", "cpu", "--uoc-unlearned", "broken.safetensors", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot read weight file*broken.safetensors*corrupt, empty or truncated*"])


# -- quiet loading ------------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_loading_the_zoo_is_quiet(capfd):
    handler = Records()
    logging.getLogger("diffusers").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe = zoo.load("digits")
            pipe.to("cpu", torch.float32)
            for name in ("digits-esd-three", "digits-conceal-red"):
                zoo.load(name, original=pipe).to("cpu", torch.float32)
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    out, err = capfd.readouterr()
    said = "\n".join([*handler.messages, *(str(w.message) for w in caught), out, err])
    for noise in ("accelerate", "kept in float32", "torch_dtype", "Loading pipeline components", "Loading weights"):
        assert noise not in said, said


def test_real_diffusers_warnings_still_show():
    handler = Records()
    logger = logging.getLogger("diffusers.models.modeling_utils")
    logging.getLogger("diffusers").addHandler(handler)
    try:
        logger.warning("There are modules in UNet2DConditionModel that should be kept in float32: []. Casting ...")
        logger.warning("There are modules in UNet2DConditionModel that should be kept in float32: ['norm']. Casting ...")
        logger.warning("Some other problem")
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert len(handler.messages) == 2 and "['norm']" in handler.messages[0]


def test_folder_with_one_lora_file(original, lora_unet, tmp_path):
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(lora_unet))
    pipe = load_unlearned(original, tmp_path)
    assert pipe.uoc_checkpoint["kind"] == "lora"
    shutil.rmtree(tmp_path)


# -- both of ESD's own file layouts under auto (issue 22) --------------------------------------------


def _esd_trained_names(unet, method: str) -> list[str]:
    """The parameter names ESD's current script trains: Linear/Conv2d modules in attn2 (esd-x) or outside (esd-u)."""
    names = []
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d) and (("attn2" in name) == (method == "esd-x")):
            names += [f"{name}.{n}" for n, _ in module.named_parameters()]
    return names


def test_esd_u_file_of_the_current_script_loads_under_auto(original, tmp_path):
    """esd-u holds every Linear/Conv2d tensor outside cross-attention (no norms): a partial file, not a broken one."""
    esdu = load_file(str(zoo.unet_path("digits-esdu-three")))
    names = _esd_trained_names(original.unet, "esd-u")
    base = {k: v.clone() for k, v in original.unet.state_dict().items()}
    assert 0 < len(names) < len(base) and not any("attn2" in n or ".norm" in n for n in names)
    trained = {k: esdu[k] for k in names}
    path = tmp_path / "esd-three-from-three-esdu.safetensors"
    save_file(trained, str(path))
    assert detect_kind(trained, set(base)) == "partial"
    pipe = load_unlearned(original, path)
    unet_equals(pipe.unet, {k: trained.get(k, base[k]) for k in base})


def test_a_complete_file_missing_a_few_tensors_is_still_refused(original, esd, tmp_path):
    broken = {k: v for k, v in esd.items() if not k.startswith("down_blocks.0.resnets.0.conv1")}
    path = tmp_path / "broken.safetensors"
    save_file(broken, str(path))
    with pytest.raises(ValueError, match="missing key"):
        load_unlearned(original, path)


def test_esd_older_diffusers_script_nested_pt_loads_under_auto(original, esd, tmp_path):
    """The older script saved ``{"unet.<module>": {"weight": tensor, "bias": tensor}}`` with torch.save."""
    names = _esd_trained_names(original.unet, "esd-x")
    nested: dict[str, dict[str, torch.Tensor]] = {}
    for key in names:
        module, _, param = key.rpartition(".")
        nested.setdefault(f"unet.{module}", {})[param] = esd[key]
    path = tmp_path / "diffusers-three-ESDx1-UNET.pt"
    torch.save(nested, str(path))
    base = {k: v.clone() for k, v in original.unet.state_dict().items()}
    pipe = load_unlearned(original, path)
    assert pipe.uoc_checkpoint["kind"] == "partial" and pipe.uoc_checkpoint["tensors"] == len(names)
    unet_equals(pipe.unet, {k: esd[k] if k in names else base[k] for k in base})


def test_a_pickle_of_objects_is_one_clear_error(original, tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, str(path))
    with pytest.raises(ValueError, match="holds Python objects other than tensors") as info:
        load_unlearned(original, path)
    assert len(str(info.value).splitlines()) == 1 and "weights_only=False" not in str(info.value)
