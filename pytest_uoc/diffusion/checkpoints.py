"""Checkpoint kinds: what a weight file holds, and how each kind becomes a pipeline.

A file is a complete diffusers UNet state dict (``diffusers``), a part of one
(``partial``: the tensors a method trained, as ESD's script saves them), a
CompVis/LDM single-file checkpoint (``ldm``), a LoRA adapter (``lora``), or a
CLIP text encoder (``text_encoder``). ``detect_kind`` tells them apart from the
keys; ``--uoc-unlearned-kind`` / ``kind=`` overrides it. Every loader checks
keys and shapes against the original before anything runs, and records what it
loaded on the pipeline as ``pipe.uoc_checkpoint``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["KINDS", "checkpoint_record", "detect_kind", "module_family", "summarise_families"]

KINDS = ("auto", "diffusers", "partial", "ldm", "lora", "text_encoder")

LDM_UNET_PREFIX = "model.diffusion_model."
_LDM_UNET_BARE = ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "out.")
_LDM_VAE_PREFIXES = ("first_stage_model.", "vae.")
_LDM_TEXT_PREFIXES = ("cond_stage_model.", "conditioner.embedders.")
_VAE_BARE = ("encoder.down.", "encoder.mid.", "decoder.up.", "decoder.mid.", "quant_conv.", "post_quant_conv.")
_CLIP_BARE = ("embeddings.token_embedding.", "encoder.layers.", "final_layer_norm.")
_TEXT_PREFIXES = ("text_encoder.", "cond_stage_model.transformer.", "text_model.")
_LORA_MARKERS = (".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.", ".lora_down.", ".lora_up.",
                 ".lora_linear_layer.", "lora_unet_", "lora_te_", "lora_te1_")
#: The parts a method that trains "everything else" leaves out (ESD-u's "noxattn":
#: cross-attention, the time embedding and the output convolutions), and the added
#: (text/class) embedding, which LDM files do not have.
_OMITTABLE = ("cross-attention", "time embedding", "added embedding", "output convs")


# -- where a tensor lives --------------------------------------------------------------------


def module_family(key: str) -> str:
    """The module family of a diffusers UNet (or CLIP) key, for summaries."""
    if "attn2" in key:
        return "cross-attention"
    if "attn1" in key:
        return "self-attention"
    if ".ff." in key:
        return "feed-forward"
    if "attentions." in key:
        return "attention norms/projections"
    if "resnets." in key:
        return "resnets"
    if "samplers." in key:
        return "down/upsamplers"
    if key.startswith("time_embedding."):
        return "time embedding"
    if key.startswith(("add_embedding.", "class_embedding.")):
        return "added embedding"
    if key.startswith(("conv_out.", "conv_norm_out.")):
        return "output convs"
    if key.startswith("conv_in."):
        return "input conv"
    if key.startswith(("embeddings.", "encoder.layers.", "final_layer_norm.", "text_model.")):
        return "text encoder"
    return "other"


def summarise_families(keys: list[str]) -> str:
    """``"cross-attention only"`` or ``"cross-attention (12), resnets (3)"``."""
    if not keys:
        return "no tensor differs from the original"
    counts = Counter(module_family(k) for k in keys)
    if len(counts) == 1:
        return f"{next(iter(counts))} only"
    return ", ".join(f"{family} ({n})" for family, n in counts.most_common())


def _differing(reference: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    out = []
    for key, value in state.items():
        ref = reference[key]
        if not torch.equal(ref, value.to(device=ref.device, dtype=ref.dtype)):
            out.append(key)
    return out


def checkpoint_record(kind: str, path: str, reference: Mapping[str, torch.Tensor],
                      state: Mapping[str, torch.Tensor], **extra: Any) -> dict[str, Any]:
    """What was loaded: kind, path, tensors in the file, how many differ and where."""
    differ = _differing(reference, state)
    record = {"kind": kind, "path": path, "tensors": len(state), "differ": len(differ),
              "where": summarise_families(differ)}
    record.update(extra)
    return record


# -- detection -------------------------------------------------------------------------------


def is_lora(keys: list[str]) -> bool:
    """LoRA keys in diffusers/peft (``lora_A``/``lora.down``) or kohya (``lora_unet_``) style."""
    return any(marker in key for key in keys for marker in _LORA_MARKERS)


def ldm_parts(keys: list[str]) -> dict[str, int]:
    """How many keys of an LDM file belong to its UNet, VAE and text encoder."""
    parts = {"unet": 0, "vae": 0, "text_encoder": 0}
    for key in keys:
        if key.startswith(LDM_UNET_PREFIX) or key.startswith(_LDM_UNET_BARE):
            parts["unet"] += 1
        elif key.startswith(_LDM_VAE_PREFIXES) or key.startswith(_VAE_BARE):
            parts["vae"] += 1
        elif key.startswith(_LDM_TEXT_PREFIXES):
            parts["text_encoder"] += 1
    return parts


def strip_text_prefix(key: str) -> str:
    """A CLIP text-model key without ``text_encoder.``/``cond_stage_model.transformer.``/``text_model.``."""
    for prefix in _TEXT_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def detect_kind(state: Mapping[str, torch.Tensor], unet_keys: set[str]) -> str:
    """The kind of a state dict, from its keys alone."""
    keys = list(state)
    if is_lora(keys):
        return "lora"
    in_unet = sum(k in unet_keys for k in keys)
    parts = ldm_parts(keys)
    if sum(parts.values()) > in_unet:
        return "ldm"
    bare_text = {strip_text_prefix(k) for k in keys}
    if in_unet == 0 and any(k.startswith(_CLIP_BARE) for k in bare_text):
        return "text_encoder"
    if in_unet == len(keys) and looks_partial(keys, unet_keys):
        return "partial"
    return "diffusers"


def looks_partial(present: Iterable[str], reference: Iterable[str]) -> bool:
    """Whether a strict subset of the reference keys is a deliberate partial file.

    It is when it holds at most half the tensors, or lacks only whole parts a method
    leaves out (all of the cross-attention, time embedding, added embedding or output
    convs; all normalisation layers and bare parameters, as ESD's ``esd-u`` files do);
    a file lacking a few other tensors is a broken complete one.
    """
    have, ref = set(present), set(reference)
    missing = ref - have
    if not missing or not have <= ref:
        return False
    if len(have) * 2 <= len(ref):
        return True
    omittable = {*_OMITTABLE, _NORMS, _BARE}
    kept = {c for k in have for c in _omission_classes(k)}
    # Each missing tensor must belong to a whole part the file leaves out (none of it present).
    return all(any(c in omittable and c not in kept for c in _omission_classes(k)) for k in missing)


#: ESD's current script trains only Linear and Conv2d modules, so its ``esd-u`` file (everything
#: outside ``attn2``) leaves out, besides cross-attention, every normalisation layer and every
#: parameter held by a module directly (not a ``weight``/``bias``, e.g. a positional embedding).
_NORMS = "normalisation layers"
_BARE = "bare parameters"
_NORM_KEY = re.compile(r"(^|\.)(conv_)?norm[\w]*\.(weight|bias)$")


def _omission_classes(key: str) -> tuple[str, ...]:
    """The whole parts a key belongs to that a method may leave out: its module family, norms, bare parameters."""
    classes = [module_family(key)]
    if "attn2" not in key:
        if _NORM_KEY.search(key):
            classes.append(_NORMS)
        elif not key.endswith((".weight", ".bias")):
            classes.append(_BARE)
    return tuple(classes)


# -- partial state dicts ---------------------------------------------------------------------


def check_shapes(reference: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str,
                 what: str = "the original UNet") -> None:
    """Raise ValueError naming the file, the key and both shapes on the first mismatch."""
    for key, value in state.items():
        if tuple(value.shape) != tuple(reference[key].shape):
            raise ValueError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)}, {what}'s has "
                f"{tuple(reference[key].shape)}; the file was made for another model"
            )


def merge_partial(original_unet: Any, state: Mapping[str, torch.Tensor], source: str) -> Any:
    """A copy of ``original_unet`` with the file's tensors in place of the original's."""
    expected = original_unet.state_dict()
    common = [k for k in state if k in expected]
    if not common:
        raise ValueError(
            f"{source} has no tensor in common with the original UNet (e.g. file key {next(iter(state), '-')!r}, "
            f"original key {next(iter(expected), '-')!r}); diffusers-format UNet keys are expected"
        )
    unexpected = sorted(k for k in state if k not in expected)
    if unexpected:
        raise ValueError(
            f"{source}: {len(unexpected)} key(s) the original UNet does not have, e.g. "
            f"{', '.join(unexpected[:3])}; the file was made for another model"
        )
    check_shapes(expected, state, source)
    unet = copy.deepcopy(original_unet)
    unet.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
    return unet


# -- LDM / CompVis single files --------------------------------------------------------------


def ldm_unet_state(original_unet: Any, state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The diffusers UNet state dict of an LDM checkpoint, converted by diffusers' own code."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    parts = ldm_parts(list(state))
    if parts["unet"] == 0:
        held = [name for name, n in (("a VAE (first_stage_model)", parts["vae"]),
                                     ("a text encoder (cond_stage_model)", parts["text_encoder"])) if n]
        if held:
            raise ValueError(
                f"{source} is an LDM checkpoint that holds only {' and '.join(held)}, no UNet "
                f"(no {LDM_UNET_PREFIX}* keys); the original UNet needs a UNet checkpoint"
                + (" (a text encoder alone loads with kind text_encoder)" if parts["text_encoder"] else "")
            )
        raise ValueError(f"{source} holds no LDM UNet keys ({LDM_UNET_PREFIX}*, input_blocks.*, ...)")
    checkpoint = dict(state)
    if not any(k.startswith(LDM_UNET_PREFIX) for k in checkpoint):
        checkpoint = {LDM_UNET_PREFIX + k if k.startswith(_LDM_UNET_BARE) else k: v for k, v in checkpoint.items()}
    config = dict(original_unet.config)
    try:
        converted = convert_ldm_unet_checkpoint(checkpoint, config)
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(
            f"{source}: diffusers could not convert the LDM UNet to the original's layout "
            f"({type(exc).__name__}: {exc}); the file was made for another model"
        ) from None
    converted = {k: v for k, v in converted.items() if v is not None}
    expected = original_unet.state_dict()
    unexpected = sorted(k for k in converted if k not in expected)
    if unexpected:
        raise ValueError(
            f"{source}: the converted LDM UNet has {len(unexpected)} key(s) the original UNet does not have, "
            f"e.g. {', '.join(unexpected[:3])}; the file was made for another model"
        )
    return converted


def ldm_ignored(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The parts of an LDM file that are not used (the original's are)."""
    parts = ldm_parts(list(state))
    return [name for name, key in (("first_stage_model (VAE)", "vae"), ("cond_stage_model (text encoder)", "text_encoder"))
            if parts[key]]


# -- LoRA ------------------------------------------------------------------------------------


class _DropMessages(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


@contextlib.contextmanager
def _without(loggers: tuple[str, ...], pattern: str) -> Iterator[None]:
    flt = _DropMessages(pattern)
    for name in loggers:
        logging.getLogger(name).addFilter(flt)
    try:
        yield
    finally:
        for name in loggers:
            logging.getLogger(name).removeFilter(flt)


_LORA_DOWN = re.compile(r"^(?P<module>.+?)\.(lora_A|lora\.down|lora_down|lora_linear_layer\.down)(\.[^.]+)?\.weight$")
_LORA_PAIRS = (("lora_A", "lora_B"), ("lora.down", "lora.up"), ("lora_down", "lora_up"),
               ("lora_linear_layer.down", "lora_linear_layer.up"))


def check_lora(original: Any, lora: Mapping[str, torch.Tensor], source: str) -> set[str]:
    """Check a diffusers-format LoRA dict fits ``original``; return the parts it edits."""
    from diffusers.utils import convert_unet_state_dict_to_peft

    lora = convert_unet_state_dict_to_peft(dict(lora))  # diffusers' own renaming (processor.to_k_lora → to_k)
    parts: set[str] = set()
    models = {"unet": original.unet, "text_encoder": original.text_encoder}
    modules = {name: dict(model.named_modules()) for name, model in models.items()}
    for key, tensor in lora.items():
        match = _LORA_DOWN.match(key)
        if not match:
            continue
        part, _, path = match["module"].partition(".")
        if part not in models:
            raise ValueError(f"{source}: LoRA key {key!r} is for {part!r}, not the UNet or the text encoder")
        module = modules[part].get(path)
        weight = getattr(module, "weight", None)
        if module is None or weight is None:
            raise ValueError(
                f"{source}: LoRA key {key!r} names {part}.{path}, which the original {part} does not have; "
                "the adapter was made for another model"
            )
        if tensor.shape[1] != weight.shape[1]:
            raise ValueError(
                f"{source}: LoRA key {key!r} takes {tensor.shape[1]} input features, the original's "
                f"{part}.{path} has weight shape {tuple(weight.shape)}; the adapter was made for another model"
            )
        up = next((lora.get(key.replace(a, b)) for a, b in _LORA_PAIRS if a in key), None)
        if up is not None and up.shape[0] != weight.shape[0]:
            raise ValueError(
                f"{source}: LoRA up-projection of {part}.{path} gives {up.shape[0]} output features, the "
                f"original's weight has shape {tuple(weight.shape)}; the adapter was made for another model"
            )
        parts.add(part)
    if not parts:
        raise ValueError(f"{source}: no LoRA down/up pairs found among its {len(lora)} keys")
    return parts


def fuse_lora(original: Any, state: dict[str, torch.Tensor], source: str, with_parts: Any) -> tuple[Any, set[str]]:
    """A pipeline with the LoRA fused into copies of the parts it edits (plain weights after)."""
    try:
        lora, _alphas = type(original).lora_state_dict(dict(state))
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"{source}: diffusers could not read this LoRA ({type(exc).__name__}: {exc})") from None
    parts = check_lora(original, lora, source)
    copies = {part: copy.deepcopy(getattr(original, part)) for part in parts}
    pipe = with_parts(original, **copies)
    quiet = ("diffusers.loaders.lora_base", "diffusers.loaders.peft")
    with _without(quiet, r"^No LoRA keys associated to"):
        pipe.load_lora_weights(dict(state), adapter_name="uoc_lora")
    pipe.fuse_lora(components=sorted(parts), adapter_names=["uoc_lora"])
    pipe.unload_lora_weights()
    return pipe, parts


# -- text encoders ---------------------------------------------------------------------------


def text_encoder_width(encoder: Any) -> int | None:
    config = getattr(encoder, "config", None)
    return getattr(config, "hidden_size", None)


def text_encoder_from_state(original_encoder: Any, state: Mapping[str, torch.Tensor], source: str) -> Any:
    """A copy of the original text encoder with a CLIP text-model state dict loaded."""
    expected = original_encoder.state_dict()
    by_bare = {strip_text_prefix(k): k for k in expected}
    width = next((v.shape[-1] for k, v in state.items() if k.endswith("token_embedding.weight")), None)
    ref_width = text_encoder_width(original_encoder)
    if width is not None and ref_width is not None and width != ref_width:
        raise ValueError(
            f"{source}: the text encoder is {width} wide, the original's is {ref_width} wide "
            "(the UNet's cross-attention takes the original's width)"
        )
    mapped = {}
    for key, value in state.items():
        bare = strip_text_prefix(key)
        if bare not in by_bare:
            if bare.endswith("position_ids"):
                continue
            raise ValueError(
                f"{source}: key {key!r} is not in the original text encoder ({type(original_encoder).__name__}); "
                "a CLIP text-model state dict of the same architecture is expected"
            )
        mapped[by_bare[bare]] = value
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise ValueError(
            f"{source}: {len(missing)} text-encoder tensor(s) missing, e.g. {', '.join(missing[:3])}"
        )
    check_shapes(expected, mapped, source, what="the original text encoder")
    encoder = copy.deepcopy(original_encoder)
    encoder.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.items()}, strict=True)
    return encoder


def text_encoder_from_folder(original_encoder: Any, folder: Path) -> Any:
    """A CLIP text encoder from a ``text_encoder/`` folder, checked against the original's width."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    width, ref_width = getattr(config, "hidden_size", None), text_encoder_width(original_encoder)
    if width != ref_width:
        raise ValueError(
            f"{folder}: the text encoder is {width} wide, the original's is {ref_width} wide "
            "(the UNet's cross-attention takes the original's width)"
        )
    cls = type(original_encoder)
    try:
        encoder = cls.from_pretrained(str(folder), local_files_only=True, dtype=original_encoder.dtype)
    except TypeError:
        encoder = cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=original_encoder.dtype)
    return encoder.to(original_encoder.device)
