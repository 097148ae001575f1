"""The embedded model world: a tiny Stable Diffusion trained on coloured digits.

``load("digits")`` is the original pipeline; every other name is an unlearned
variant (``digits-<method>-<concept>``) or a gold standard retrained without
the concept (``digits-gold-<concept>``). Variants ship as UNet-only weight
files, as real unlearning methods publish them; the concealer ships its edited
text encoder. Everything loads from the package, offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["ZOO_PREFIX", "load", "load_judge", "manifest", "names", "pipeline_path", "resolve", "unet_path", "weights_dir"]

ZOO_PREFIX = "zoo:"
ORIGINAL = "digits"
_TEXT_SUFFIX = ".text_encoder.safetensors"


def weights_dir() -> Path:
    """Folder of the shipped weights (``UOC_ZOO_DIR`` overrides it, for rebuilt zoos)."""
    override = os.environ.get("UOC_ZOO_DIR")
    return Path(override) if override else Path(__file__).parent / "weights"


def _variants() -> dict[str, Path]:
    folder = weights_dir() / "variants"
    if not folder.is_dir():
        return {}
    out = {}
    for file in sorted(folder.iterdir()):
        if file.name.endswith(_TEXT_SUFFIX):
            out[file.name[: -len(_TEXT_SUFFIX)]] = file
        elif file.suffix == ".safetensors":
            out[file.stem] = file
    return out


def names() -> list[str]:
    """Every model that ships: the original first, then the variants."""
    if not (weights_dir() / ORIGINAL / "model_index.json").is_file():
        return []
    return [ORIGINAL, *_variants()]


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"zoo model name must be a string, got {type(name).__name__}")
    bare = name[len(ZOO_PREFIX):] if name.startswith(ZOO_PREFIX) else name
    known = names()
    if not known:
        raise FileNotFoundError(
            f"the zoo's weights are missing from {weights_dir()}; rebuild them with "
            "`python -m tools.zoo.train` (from a clone of the repository)"
        )
    if bare not in known:
        raise ValueError(f"unknown zoo model {name!r}; the zoo ships: {', '.join(known)}")
    return bare


def pipeline_path() -> Path:
    """The original pipeline's folder (loadable with ``StableDiffusionPipeline.from_pretrained``)."""
    _check_name(ORIGINAL)
    return weights_dir() / ORIGINAL


def unet_path(name: str) -> Path:
    """The UNet weight file of a variant (the concealer has none: it edits the text encoder)."""
    bare = _check_name(name)
    if bare == ORIGINAL:
        return weights_dir() / ORIGINAL / "unet" / "diffusion_pytorch_model.safetensors"
    file = _variants()[bare]
    if file.name.endswith(_TEXT_SUFFIX):
        raise ValueError(f"{bare} edits the text encoder only; its UNet is the original's (load it with zoo.load)")
    return file


def manifest() -> dict[str, Any]:
    """How every shipped model was trained (steps, seconds, judge accuracy)."""
    return json.loads((weights_dir() / "manifest.json").read_text())


def load(name: str = ORIGINAL, *, device: str | None = None, original: Any | None = None) -> Any:
    """A StableDiffusionPipeline for a zoo model, in float32.

    Variants share the VAE and tokenizer (and, but for the concealer, the text
    encoder) of ``original`` when it is given, else of a freshly loaded original.
    """
    import torch
    from diffusers import StableDiffusionPipeline

    from ..diffusion.loading import load_unlearned, pretrained_dtype, quiet_loading

    bare = _check_name(name)
    base = original
    if base is None:
        with quiet_loading():
            base = StableDiffusionPipeline.from_pretrained(
                str(weights_dir() / ORIGINAL), local_files_only=True, safety_checker=None,
                requires_safety_checker=False, **pretrained_dtype(torch.float32),
            )
        base.set_progress_bar_config(disable=True)
        if device:
            base.to(device)
    if bare == ORIGINAL:
        return base
    file = _variants()[bare]
    kind = "text_encoder" if file.name.endswith(_TEXT_SUFFIX) else "auto"
    pipe = load_unlearned(base, file, kind=kind)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_judge() -> Any:
    """The digit judge (a small CNN reading digit and colour) trained with the zoo."""
    from .judge import load_judge as _load

    return _load(weights_dir() / "judge.safetensors")


def resolve(location: str) -> str | Path:
    """Map ``zoo:NAME`` to the name (validated); other locations pass through as paths."""
    if isinstance(location, str) and location.startswith(ZOO_PREFIX):
        return _check_name(location)
    return Path(location)
