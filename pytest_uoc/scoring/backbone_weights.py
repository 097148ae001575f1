"""Where the domain classifier's ImageNet weights come from: a given file, or a cache already on disk.

The classifier without a judge tells λO from λU; on real images a backbone that
starts from ImageNet weights learns that from 32 images far better than one that
starts at random. pytest-uoc never downloads: it uses ``--uoc-backbone-weights``
when given, else the weights timm would download if they are already in the
Hugging Face hub cache (``HF_HUB_CACHE``, ``HF_HOME``; ``timm/<arch>.<tag>``, as
``timm.create_model(pretrained=True)`` leaves them) or in torch hub's checkpoint
folder (timm's older download path), else random weights, with a warning that
says how to give weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BackboneWeights", "find_backbone_weights", "random_init_warning"]


@dataclass(frozen=True)
class BackboneWeights:
    """The weights file for a backbone (None: random initialisation) and where it was found."""

    path: Path | None
    #: "given" (the option), "huggingface cache", "torch hub cache" or "none".
    source: str
    #: The Hugging Face repository or file name timm would fetch (for the warning's advice).
    wanted: str = ""


def _pretrained_cfg(backbone: str) -> dict:
    """timm's default pretrained config of ``backbone`` (read from its registry: no model is built)."""
    import dataclasses

    import timm

    cfg = timm.models.get_pretrained_cfg(backbone)
    return dataclasses.asdict(cfg) if cfg is not None else {}


def find_backbone_weights(backbone: str, given: str | os.PathLike[str] | None = None) -> BackboneWeights:
    """The weights to start ``backbone`` from: ``given``, or timm's own weights if cached on disk, or none.

    Reads the file system only (``huggingface_hub.try_to_load_from_cache``, the torch hub
    folder): no network call, whatever ``HF_HUB_OFFLINE`` says.
    """
    if given is not None:
        return BackboneWeights(Path(given), "given")
    cfg = _pretrained_cfg(backbone)
    repo = cfg.get("hf_hub_id") or ""
    if repo:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - diffusers depends on huggingface_hub
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            for filename in filter(None, (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin")):
                found = try_to_load_from_cache(repo, filename)
                if isinstance(found, str) and Path(found).is_file():
                    return BackboneWeights(Path(found), "huggingface cache", repo)
    url = cfg.get("url") or ""
    if url:
        import torch

        candidate = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return BackboneWeights(candidate, "torch hub cache", repo or candidate.name)
    return BackboneWeights(None, "none", repo or backbone)


def random_init_warning(backbone: str, weights: BackboneWeights) -> str:
    """What to tell a user whose classifier starts from random weights."""
    fetch = (f"`huggingface-cli download {weights.wanted}` (or `timm.create_model({backbone!r}, pretrained=True)`) "
             "once on a machine with network" if "/" in weights.wanted else
             f"timm's {backbone} weights in the Hugging Face cache")
    return (f"pytest-uoc: the domain classifier's {backbone} backbone starts from random weights: no "
            f"--uoc-backbone-weights was given and none are cached on disk. On real images give ImageNet weights: "
            f"--uoc-backbone-weights PATH (a timm state dict), or {fetch}; pytest-uoc never downloads.")
