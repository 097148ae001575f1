"""Loading unlearned models the ways unlearning methods publish them.

An unlearned model arrives as a whole pipeline, a ``UNet2DConditionModel``, a
diffusers ``unet/`` folder, or a bare UNet state dict (``.safetensors``,
``.pt``, ``.bin``). Everything but a whole pipeline is placed into a new
pipeline that shares the original's VAE, text encoder and tokenizer, so no
second copy of them is held in memory. Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["check_unet_compatible", "is_pipeline", "load_pipeline", "load_unlearned", "load_unet_state_dict"]

_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_COMPAT_KEYS = ("in_channels", "out_channels", "sample_size", "cross_attention_dim")
_PARTS = ("unet", "scheduler", "vae", "text_encoder", "tokenizer")


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


def load_pipeline(path: str | os.PathLike[str], *, dtype: torch.dtype | None = None) -> Any:
    """Load a StableDiffusionPipeline folder from local disk only."""
    from diffusers import StableDiffusionPipeline

    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"model path does not exist: {folder}")
    if not (folder / "model_index.json").is_file():
        raise ValueError(
            f"{folder} is not a diffusers pipeline folder (no model_index.json); "
            "give the folder written by pipeline.save_pretrained()"
        )
    kwargs: dict[str, Any] = {"local_files_only": True, "safety_checker": None}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    return StableDiffusionPipeline.from_pretrained(str(folder), **kwargs)


def load_unet_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a UNet state dict from a ``.safetensors``/``.pt``/``.bin`` file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"UNet weight file does not exist: {file}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file), device="cpu")
    elif file.suffix in _WEIGHT_SUFFIXES:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "unet", "model"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
    else:
        raise ValueError(
            f"unsupported UNet weight file {file.name!r}: expected one of {', '.join(_WEIGHT_SUFFIXES)}"
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file} does not hold a state dict of tensors")
    if state and all(key.startswith("unet.") for key in state):
        state = {key[len("unet."):]: value for key, value in state.items()}
    return state


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
        raise ValueError(
            f"{source} does not fit the original UNet: " + "; ".join(parts)
            + " (diffusers-format UNet keys are expected)"
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
    components = dict(getattr(original, "components", {}))
    if not components:
        clone = copy.copy(original)
        clone.unet = unet
        return clone
    components["unet"] = unet
    params = inspect.signature(type(original).__init__).parameters
    if "requires_safety_checker" in params:
        components["requires_safety_checker"] = False
    components = {k: v for k, v in components.items() if k in params}
    return type(original)(**components)


def _load_unet_folder(folder: Path, original_unet: Any) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(
        str(folder), local_files_only=True, torch_dtype=original_unet.dtype
    )


def load_unlearned(original: Any, source: Any) -> Any:
    """Return a pipeline for the unlearned model ``source`` next to ``original``.

    ``source`` is a pipeline (returned as is, after a compatibility check), a
    ``UNet2DConditionModel``, a diffusers pipeline or ``unet/`` folder, or a
    UNet state-dict file. UNets are moved to the original's device and dtype.
    """
    check_pipeline(original, name="original")
    if is_pipeline(source):
        check_unet_compatible(original.unet, source.unet)
        return source
    if isinstance(source, torch.nn.Module):
        if not hasattr(source, "config"):
            raise TypeError(
                f"unlearned model must be a pipeline, a UNet2DConditionModel or a path, got {type(source).__name__}"
            )
        check_unet_compatible(original.unet, source)
        unet = source
        if (source.device, source.dtype) != (original.unet.device, original.unet.dtype):
            unet = source.to(device=original.unet.device, dtype=original.unet.dtype)
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
        if (path / "model_index.json").is_file():
            pipe = load_pipeline(path, dtype=original.unet.dtype).to(original.unet.device)
            check_unet_compatible(original.unet, pipe.unet)
            return pipe
        for folder in (path, path / "unet"):
            if (folder / "config.json").is_file():
                unet = _load_unet_folder(folder, original.unet)
                check_unet_compatible(original.unet, unet)
                return _pipeline_with_unet(original, unet.to(original.unet.device))
        weight_files = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
        if len(weight_files) == 1:
            path = weight_files[0]
        else:
            raise ValueError(
                f"{path} is neither a diffusers pipeline/unet folder nor holds exactly one UNet weight file"
            )
    state = load_unet_state_dict(path)
    unet = _unet_from_state_dict(original.unet, state, str(path))
    return _pipeline_with_unet(original, unet)
