"""Loading unlearned models the ways unlearning methods publish them.

An unlearned model arrives as a whole pipeline, a ``UNet2DConditionModel``, a
diffusers ``unet/`` or ``text_encoder/`` folder, or a weight file
(``.safetensors``, ``.pt``, ``.bin``, ``.ckpt``) of one of the kinds in
``checkpoints.py``: a complete or partial UNet state dict, an LDM single-file
checkpoint, a LoRA adapter or a CLIP text encoder. Everything but a whole
pipeline is placed into a new pipeline that shares the original's other parts,
so no second copy of them is held in memory. Nothing is ever fetched from a hub,
and loading prints no diffusers noise (see ``quiet_loading``).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from . import checkpoints as ck
from . import families as fam

__all__ = [
    "KINDS", "check_unet_compatible", "is_pipeline", "load_pipeline", "load_unlearned", "load_unet_state_dict",
    "pipeline_class_of_folder", "pretrained_dtype", "quiet_loading", "read_weight_file",
]

KINDS = ck.KINDS

_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_COMPAT_KEYS = ("in_channels", "out_channels", "sample_size", "cross_attention_dim")
_PARTS = ("unet", "scheduler", "vae", "text_encoder", "tokenizer")


# -- quiet loading -------------------------------------------------------------------------


class _DropEmptyFp32Notice(logging.Filter):
    """Drops diffusers' "modules ... kept in float32: []" notice, which diffusers logs on
    every ``.to(dtype)`` even when no module is to be kept in float32 (the list is empty)."""

    _pattern = re.compile(r"^There are modules in \w+ that should be kept in float32: \[\]\.")

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._pattern.search(record.getMessage())


def _install_log_filters() -> None:
    logger = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(f, _DropEmptyFp32Notice) for f in logger.filters):
        logger.addFilter(_DropEmptyFp32Notice())


_install_log_filters()


def pretrained_dtype(dtype: torch.dtype | None) -> dict[str, Any]:
    """``{"dtype": dtype}`` where diffusers takes it, else the older ``torch_dtype``."""
    if dtype is None:
        return {}
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401 (diffusers that take dtype=)
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No diffusers/transformers progress bars while weights load (restored after)."""
    from diffusers.utils import logging as dlog

    restore = []
    if dlog.is_progress_bar_enabled():
        dlog.disable_progress_bar()
        restore.append(dlog.enable_progress_bar)
    try:
        from transformers.utils import logging as tlog

        if tlog.is_progress_bar_enabled():
            tlog.disable_progress_bar()
            restore.append(tlog.enable_progress_bar)
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        yield
    finally:
        for enable in restore:
            enable()


def is_pipeline(obj: object) -> bool:
    """True for anything with the parts of a StableDiffusionPipeline."""
    return all(hasattr(obj, part) for part in _PARTS)


def check_pipeline(obj: object, *, name: str) -> None:
    """Raise a TypeError naming the missing parts when ``obj`` is no SD-like pipeline."""
    missing = [part for part in _PARTS if not hasattr(obj, part)]
    if missing:
        raise TypeError(
            f"{name} must be a diffusers pipeline of the StableDiffusionPipeline family "
            f"(with {', '.join(_PARTS)}); {type(obj).__name__} lacks {', '.join(missing)}"
        )


def _unet_config(unet: Any) -> dict[str, Any]:
    config = getattr(unet, "config", None)
    if config is None:
        raise TypeError(f"expected a UNet2DConditionModel with a .config, got {type(unet).__name__}")
    return dict(config)


def check_unet_compatible(original_unet: Any, unet: Any) -> None:
    """Raise ValueError when ``unet`` cannot stand in for ``original_unet``."""
    ref, new = _unet_config(original_unet), _unet_config(unet)
    diffs = [
        f"{key}: original {ref.get(key)!r}, unlearned {new.get(key)!r}"
        for key in _COMPAT_KEYS
        if ref.get(key) != new.get(key)
    ]
    if diffs:
        raise ValueError(
            "the unlearned UNet does not match the original's configuration ("
            + "; ".join(diffs)
            + "); it must be the same architecture with edited weights"
        )


def _read_index(folder: Path) -> dict[str, Any]:
    """A pipeline folder's ``model_index.json``, as a dict (a ValueError naming it when unreadable)."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder / 'model_index.json'} is not readable JSON ({exc})") from None
    if not isinstance(index, dict):
        raise ValueError(f"{folder / 'model_index.json'} does not hold a JSON object")
    return index


def _supported_pipelines() -> str:
    return ", ".join(f"{f.pipeline_class} ({f.label})" for f in fam.FAMILIES.values())


def pipeline_class_of_folder(folder: str | os.PathLike[str]) -> Any:
    """The diffusers pipeline class to load a saved pipeline folder with, from ``model_index.json``.

    ``_class_name`` picks it: ``StableDiffusionXLPipeline``, ``StableDiffusion3Pipeline`` or
    ``FluxPipeline`` load as themselves; any other ``StableDiffusion*`` name, or none, loads
    as ``StableDiffusionPipeline`` (as before the other families were supported). Any other
    class is a ValueError naming it and the supported ones.
    """
    import diffusers

    folder = Path(folder)
    name = _read_index(folder).get("_class_name")
    if name is None:
        return diffusers.StableDiffusionPipeline
    name = str(name)
    family = fam.pipeline_class_name_family(name)
    if family is None and name.startswith("StableDiffusion") and not any(
        name.startswith(prefix) for prefix, _ in fam._PIPELINE_PREFIXES
    ):
        family = "sd"
    if family is None:
        raise ValueError(
            f"{folder} holds a {name} (model_index.json's _class_name), which pytest-uoc cannot probe; "
            f"supported pipeline classes: {_supported_pipelines()}"
        )
    cls = getattr(diffusers, fam.family_of_name(family).pipeline_class, None)
    if cls is None:  # pragma: no cover - an old diffusers without the family
        raise ValueError(f"{folder} holds a {name}, which this diffusers {diffusers.__version__} cannot load")
    return cls


def load_pipeline(path: str | os.PathLike[str], *, dtype: torch.dtype | None = None,
                  pipeline_class: Any = None) -> Any:
    """Load a saved pipeline folder from local disk only (``local_files_only=True``).

    The class is ``pipeline_class``, else the one ``model_index.json`` names
    (``pipeline_class_of_folder``): SD 1.x/2.x, SDXL, SD3 or Flux.
    """
    from diffusers import StableDiffusionPipeline

    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"model path does not exist: {folder}")
    if not (folder / "model_index.json").is_file():
        raise ValueError(
            f"{folder} is not a diffusers pipeline folder (no model_index.json); "
            "give the folder written by pipeline.save_pretrained()"
        )
    kwargs: dict[str, Any] = {"local_files_only": True, **pretrained_dtype(dtype)}
    cls = pipeline_class or pipeline_class_of_folder(folder)
    if "safety_checker" in inspect.signature(cls.__init__).parameters:
        kwargs["safety_checker"] = None
    if pipeline_class is not None or cls is not StableDiffusionPipeline:
        # Parts saved as None (SD3 without T5: "text_encoder_3": [null, null]) must be passed as None.
        for part, value in _read_index(folder).items():
            if not part.startswith("_") and isinstance(value, list) and all(v is None for v in value):
                kwargs.setdefault(part, None)
    with quiet_loading():
        return cls.from_pretrained(str(folder), **kwargs)


def read_weight_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in a ``.safetensors``/``.pt``/``.bin``/``.ckpt`` file, as stored.

    A corrupt, empty or truncated file is a ValueError naming the path.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"UNet weight file does not exist: {file}")
    if file.suffix not in _WEIGHT_SUFFIXES:
        raise ValueError(
            f"unsupported UNet weight file {file.name!r}: expected one of {', '.join(_WEIGHT_SUFFIXES)}"
        )
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file), device="cpu")
        else:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # not objects: noise or a damaged pickle
            raise ValueError(f"cannot read weight file {file} ({file.stat().st_size} bytes): not a readable pickle "
                             "or zip archive; the file is corrupt, empty or truncated") from None
        # torch's own message is pages long and advises weights_only=False, which would run the file's code.
        raise ValueError(
            f"cannot read weight file {file}: it holds Python objects other than tensors and plain containers, "
            "which pytest-uoc does not unpickle (that could run code from the file); save a state dict of tensors "
            "(torch.save(unet.state_dict(), path)) or a .safetensors file"
        ) from None
    except Exception as exc:  # safetensors, pickle and zip errors have no common base
        size = file.stat().st_size
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"cannot read weight file {file} ({size} bytes): {type(exc).__name__}: {first_line}; "
            "the file is corrupt, empty or truncated"
        ) from None
    for wrapper in ("state_dict", "unet", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if isinstance(state, dict):
        state = _flatten_module_dicts(state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = type(state).__name__ if not isinstance(state, dict) else "a dict with non-tensor values"
        raise ValueError(f"{file} does not hold a state dict of tensors (found {found})")
    return state


def _flatten_module_dicts(state: dict[str, Any]) -> dict[str, Any]:
    """``{"unet.<module>": {"weight": tensor, "bias": tensor}}`` (ESD's older diffusers script) as flat keys."""
    if not state or not all(isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())
                            for v in state.values()):
        return state
    return {f"{module}.{name}": tensor for module, tensors in state.items() for name, tensor in tensors.items()}


def _strip_unet_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(key.startswith("unet.") for key in state):
        return {key[len("unet."):]: value for key, value in state.items()}
    return state


def load_unet_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a UNet state dict from a ``.safetensors``/``.pt``/``.bin`` file."""
    return _strip_unet_prefix(read_weight_file(path))


def _unet_from_state_dict(original_unet: Any, state: dict[str, torch.Tensor], source: str) -> Any:
    expected = original_unet.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
        hint = ""
        if missing and not unexpected:
            hint = (" (if the file holds only the tensors a method trained, load it as kind partial: "
                    "--uoc-unlearned-kind partial, or kind='partial')")
        raise ValueError(
            f"{source} does not fit the original UNet: " + "; ".join(parts)
            + " (diffusers-format UNet keys are expected)" + hint
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)}, "
                f"the original UNet's has {tuple(expected[key].shape)}"
            )
    unet = copy.deepcopy(original_unet)
    unet.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return unet


def _pipeline_with_unet(original: Any, unet: Any) -> Any:
    """A new pipeline sharing every part of ``original`` but its UNet."""
    return _pipeline_with(original, unet=unet)


def _pipeline_with(original: Any, **parts: Any) -> Any:
    """A new pipeline sharing every part of ``original`` but those given."""
    components = dict(getattr(original, "components", {}))
    if not components:
        clone = copy.copy(original)
        for name, part in parts.items():
            setattr(clone, name, part)
        return clone
    components.update(parts)
    params = inspect.signature(type(original).__init__).parameters
    if "requires_safety_checker" in params:
        components["requires_safety_checker"] = False
    components = {k: v for k, v in components.items() if k in params}
    return type(original)(**components)


def _load_unet_folder(folder: Path, original_unet: Any) -> Any:
    from diffusers import UNet2DConditionModel

    with quiet_loading():
        return UNet2DConditionModel.from_pretrained(
            str(folder), local_files_only=True, **pretrained_dtype(original_unet.dtype)
        )


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of: {', '.join(KINDS)}")
    return kind


def _record(pipe: Any, record: dict[str, Any]) -> Any:
    """Attach what was loaded to the pipeline as ``pipe.uoc_checkpoint``."""
    pipe.uoc_checkpoint = record
    return pipe


def _folder_class(folder: Path) -> str | None:
    """``"unet"``, ``"text_encoder"`` or None for a folder holding a ``config.json``."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{config_file} is not readable JSON ({exc})") from None
    if "CLIPTextModel" in config.get("architectures", []) or config.get("model_type") == "clip_text_model":
        return "text_encoder"
    return "unet"


def _load_folder(original: Any, path: Path, kind: str) -> Any:
    _check_folder_family(original, path)
    if (path / "model_index.json").is_file() and kind in ("auto", "diffusers"):
        cls = None if fam.family_of(original).name == "sd" else type(original)
        pipe = load_pipeline(path, dtype=original.unet.dtype, pipeline_class=cls).to(original.unet.device)
        check_unet_compatible(original.unet, pipe.unet)
        return _record(pipe, {"kind": "diffusers", "path": str(path), "what": "whole pipeline"})
    for folder in (path, path / "unet", path / "text_encoder"):
        found = _folder_class(folder)
        if found == "unet" and kind in ("auto", "diffusers"):
            unet = _load_unet_folder(folder, original.unet)
            check_unet_compatible(original.unet, unet)
            pipe = _pipeline_with_unet(original, unet.to(original.unet.device))
            return _record(pipe, ck.checkpoint_record("diffusers", str(folder), original.unet.state_dict(),
                                                      unet.state_dict()))
        if found == "text_encoder" and kind in ("auto", "text_encoder"):
            encoder = ck.text_encoder_from_folder(original.text_encoder, folder)
            pipe = _pipeline_with(original, text_encoder=encoder)
            return _record(pipe, ck.checkpoint_record("text_encoder", str(folder),
                                                      original.text_encoder.state_dict(), encoder.state_dict()))
    weight_files = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if len(weight_files) == 1:
        return _load_file(original, weight_files[0], kind)
    raise ValueError(
        f"{path} is neither a diffusers pipeline/unet folder nor holds exactly one UNet weight file"
        + (f" (looked for a {kind} checkpoint)" if kind != "auto" else "")
    )


def _load_file(original: Any, path: Path, kind: str) -> Any:
    source = str(path)
    state = read_weight_file(path)
    _check_same_family(original, fam.family_name_of_state(list(state)), f"{source} (from its keys)")
    if not ck.is_lora(list(state)):
        state = _strip_unet_prefix(state)
    reference = original.unet.state_dict()
    detected = ck.detect_kind(state, set(reference))
    if kind == "auto":
        kind = detected
    elif kind == "lora" and detected != "lora":
        raise ValueError(f"{source} was given as kind 'lora' but holds no LoRA keys (it looks like {detected})")
    if kind == "lora":
        pipe, parts = ck.fuse_lora(original, state, source, _pipeline_with)
        differ: list[str] = []
        for part in sorted(parts):
            before = getattr(original, part).state_dict()
            after = getattr(pipe, part).state_dict()
            differ += [k for k in after if not torch.equal(after[k], before[k])]
        return _record(pipe, {"kind": "lora", "path": source, "tensors": len(state), "differ": len(differ),
                              "where": ck.summarise_families(differ), "fused_into": sorted(parts)})
    if kind == "text_encoder":
        encoder = ck.text_encoder_from_state(original.text_encoder, state, source)
        pipe = _pipeline_with(original, text_encoder=encoder)
        return _record(pipe, ck.checkpoint_record("text_encoder", source, original.text_encoder.state_dict(),
                                                  encoder.state_dict()))
    extra: dict[str, Any] = {}
    if kind == "ldm":
        ignored = ck.ldm_ignored(state)
        state = ck.ldm_unet_state(original.unet, state, source)
        if ignored:
            extra["ignored"] = ignored
        missing = sorted(set(reference) - set(state))
        if missing:
            if not ck.looks_partial(state, reference):
                raise ValueError(
                    f"{source}: the converted LDM UNet lacks {len(missing)} of the original UNet's tensors, "
                    f"e.g. {', '.join(missing[:3])}; the file was made for another model"
                )
            extra["kept_from_original"] = f"{len(missing)} tensors: {ck.summarise_families(missing)}"
    if kind in ("partial", "ldm"):
        unet = ck.merge_partial(original.unet, state, source)
    else:
        unet = _unet_from_state_dict(original.unet, state, source)
    pipe = _pipeline_with_unet(original, unet)
    return _record(pipe, ck.checkpoint_record(kind, source, reference, state, **extra))


def load_unlearned(original: Any, source: Any, kind: str = "auto") -> Any:
    """Return a pipeline for the unlearned model ``source`` next to ``original``.

    ``source`` is a pipeline (returned as is, after a compatibility check), a
    ``UNet2DConditionModel``, a diffusers pipeline, ``unet/`` or ``text_encoder/``
    folder, or a weight file. ``kind`` (one of ``KINDS``) says what a file holds
    when detection from its keys is not wanted: ``diffusers`` (a complete UNet),
    ``partial`` (some UNet tensors; the rest from the original), ``ldm`` (a
    CompVis single file), ``lora`` (fused into a copy) or ``text_encoder``.
    UNets are moved to the original's device and dtype; the pipeline built from
    a path carries ``pipe.uoc_checkpoint`` (kind, path, tensors, how many differ
    from the original and where).
    """
    family = fam.family_of(original)
    if family.denoiser_attr != "unet":
        return _load_transformer_family(original, source, kind, family)
    if family.name == "sd":
        check_pipeline(original, name="original")
    else:
        fam.check_family_pipeline(original, family, name="original")
    _check_kind(kind)
    if _is_any_pipeline(source):
        _check_same_family(original, fam.family_of(source).name, f"the unlearned pipeline ({type(source).__name__})")
        check_unet_compatible(original.unet, source.unet)
        return source
    if isinstance(source, torch.nn.Module):
        unet = _checked_denoiser(original, original.unet, source, "UNet2DConditionModel", check_unet_compatible)
        return _pipeline_with_unet(original, unet)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            "unlearned model must be a pipeline, a UNet2DConditionModel or a path to UNet weights, "
            f"got {type(source).__name__}"
        )
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"unlearned model path does not exist: {path}")
    if path.is_dir():
        return _load_folder(original, path, kind)
    return _load_file(original, path, kind)


# -- model families ---------------------------------------------------------------------------


def _is_any_pipeline(obj: object) -> bool:
    """A diffusers pipeline of any family (it has a scheduler, a VAE and a UNet or transformer)."""
    return hasattr(obj, "scheduler") and hasattr(obj, "vae") and (hasattr(obj, "unet") or hasattr(obj, "transformer"))


def _check_same_family(original: Any, found: str | None, what: str) -> None:
    """ValueError naming both families when ``found`` (a family name; None: unknown) is not the original's."""
    ours = fam.family_of(original)
    if found is None or found == ours.name:
        return
    theirs = fam.family_of_name(found)
    raise ValueError(
        f"{what} is a {theirs.label} model, but the original is a {ours.label} pipeline "
        f"({type(original).__name__}); an unlearned model must be of the original's family "
        f"({ours.label}), with the same architecture and edited weights"
    )


def _folder_family(path: Path) -> str | None:
    """The family of a diffusers folder: a pipeline's ``model_index.json`` or a denoiser's ``config.json``."""
    index = path / "model_index.json"
    if index.is_file():
        try:
            cls = str(json.loads(index.read_text()).get("_class_name", ""))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{index} is not readable JSON ({exc})") from None
        for prefix, name in fam._PIPELINE_PREFIXES:
            if cls.startswith(prefix):
                return name
        if cls.startswith("StableDiffusion"):
            return "sd"
        return None
    for folder in (path, path / "unet", path / "transformer"):
        config_file = folder / "config.json"
        if config_file.is_file():
            try:
                config = json.loads(config_file.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{config_file} is not readable JSON ({exc})") from None
            found = fam.family_name_of_config(config)
            if found is not None:
                return found
    return None


def _check_folder_family(original: Any, path: Path) -> None:
    _check_same_family(original, _folder_family(path), f"{path} (from its config)")


def _check_denoiser_compatible(original_model: Any, model: Any, label: str) -> None:
    """ValueError naming the configuration entries where two denoisers of one family differ."""
    def plain(value: Any) -> Any:  # a saved config reads tuples back as lists
        return [plain(v) for v in value] if isinstance(value, list | tuple) else value

    ref, new = dict(original_model.config), dict(model.config)
    keys = [k for k in ref if not k.startswith("_")]
    diffs = [f"{k}: original {ref.get(k)!r}, unlearned {new.get(k)!r}"
             for k in keys if plain(ref.get(k)) != plain(new.get(k))]
    if diffs:
        raise ValueError(
            f"the unlearned {label} {type(model).__name__} does not match the original's configuration ("
            + "; ".join(diffs[:6]) + "); it must be the same architecture with edited weights"
        )


def _checked_denoiser(original: Any, reference: Any, source: Any, what: str,
                      check_compatible: Callable[[Any, Any], None]) -> Any:
    """``source``, an unlearned denoiser module, checked against ``reference`` and on its device and dtype.

    ``what`` names the class the error expects; ``check_compatible(reference, source)`` raises
    when the two are not the same architecture.
    """
    if not hasattr(source, "config"):
        raise TypeError(f"unlearned model must be a pipeline, a {what} or a path, got {type(source).__name__}")
    _check_same_family(original, fam.family_name_of_model(source), f"the unlearned {type(source).__name__}")
    check_compatible(reference, source)
    if (source.device, source.dtype) != (reference.device, reference.dtype):
        return source.to(device=reference.device, dtype=reference.dtype)
    return source


def _load_transformer_family(original: Any, source: Any, kind: str, family: Any) -> Any:
    """``load_unlearned`` for SD3 and Flux: a pipeline, a transformer, a diffusers folder or a weight file.

    Weight files are complete or partial diffusers-format transformer state dicts
    (an optional ``transformer.`` prefix is dropped); LDM single files, LoRA and
    text-encoder-only checkpoints are not supported for these families yet.
    """
    fam.check_family_pipeline(original, family, name="original")
    _check_kind(kind)
    denoiser = family.denoiser(original)
    attr = family.denoiser_attr
    if _is_any_pipeline(source):
        _check_same_family(original, fam.family_of(source).name, f"the unlearned pipeline ({type(source).__name__})")
        _check_denoiser_compatible(denoiser, family.denoiser(source), family.label)
        return source
    if isinstance(source, torch.nn.Module):
        model = _checked_denoiser(original, denoiser, source, type(denoiser).__name__,
                                  lambda ref, new: _check_denoiser_compatible(ref, new, family.label))
        return _pipeline_with(original, **{attr: model})
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            f"unlearned model must be a pipeline, a {type(denoiser).__name__} or a path to its weights, "
            f"got {type(source).__name__}"
        )
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"unlearned model path does not exist: {path}")
    if kind in ("ldm", "lora", "text_encoder"):
        raise ValueError(
            f"checkpoint kind {kind!r} is not supported for {family.label} yet (see docs/compatibility.md); "
            "give a pipeline, a transformer, a diffusers folder or a diffusers-format transformer state dict"
        )
    if path.is_dir():
        _check_folder_family(original, path)
        if (path / "model_index.json").is_file():
            pipe = load_pipeline(path, dtype=denoiser.dtype, pipeline_class=type(original)).to(denoiser.device)
            _check_denoiser_compatible(denoiser, family.denoiser(pipe), family.label)
            return _record(pipe, {"kind": "diffusers", "path": str(path), "what": "whole pipeline"})
        for folder in (path, path / attr):
            if (folder / "config.json").is_file():
                with quiet_loading():
                    model = type(denoiser).from_pretrained(
                        str(folder), local_files_only=True, **pretrained_dtype(denoiser.dtype)
                    )
                _check_denoiser_compatible(denoiser, model, family.label)
                pipe = _pipeline_with(original, **{attr: model.to(denoiser.device)})
                return _record(pipe, ck.checkpoint_record("diffusers", str(folder), denoiser.state_dict(),
                                                          model.state_dict()))
        weight_files = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
        if len(weight_files) != 1:
            raise ValueError(
                f"{path} is neither a diffusers pipeline/{attr} folder nor holds exactly one weight file"
            )
        path = weight_files[0]
    source_name = str(path)
    state = read_weight_file(path)
    _check_same_family(original, fam.family_name_of_state(list(state)), f"{source_name} (from its keys)")
    if ck.is_lora(list(state)):
        raise ValueError(f"{source_name} is a LoRA adapter; LoRA is not supported for {family.label} yet")
    if state and all(key.startswith(attr + ".") for key in state):
        state = {key[len(attr) + 1:]: value for key, value in state.items()}
    reference = denoiser.state_dict()
    if set(state) == set(reference) or kind == "diffusers":
        model = _unet_from_state_dict(denoiser, state, source_name)
        found = "diffusers"
    else:
        model = ck.merge_partial(denoiser, state, source_name)
        found = "partial"
    pipe = _pipeline_with(original, **{attr: model})
    return _record(pipe, ck.checkpoint_record(found, source_name, reference, state))
