"""``imagenet_judge``: an ImageNet classifier from local weights; an image shows the concept when its top-k holds a class.

The object evaluations of the erasure literature (UnlearnDiffAtk's ``microsoft/resnet-50``
for church, garbage truck, parachute, tench...) count an image as showing an object when a
pretrained ImageNet classifier's top-1 prediction is that object's class. This judge does
the same from local weights, with the model's own preprocessing:

- a transformers image-classification folder (``config.json`` with ``architectures``):
  ``AutoModelForImageClassification`` and ``AutoImageProcessor``, labels from ``id2label``;
- a timm folder (``config.json`` with ``architecture``, ``model.safetensors`` or
  ``pytorch_model.bin``): timm's model, its data config (resize, centre crop, normalise);
- one weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``): a timm architecture
  named by ``arch=`` or by the file name (``resnet50-0676ba61.pth``, ``resnet50.a1_in1k.safetensors``),
  its head sized from the weights and the weights loaded strictly.

Class names match any of a label's comma-separated synonyms, ignoring case ("church" and
"Church building" both name ``church, church building``); timm heads of a known ImageNet
size take timm's ImageNet label names. Offline: nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import JudgeRecord, JudgeUnavailable, to_uint8_rgb

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["ImageNetJudge", "imagenet_classes_for", "imagenet_judge"]

#: Files a weights path may be, and those a timm folder holds (in the order looked for).
_WEIGHT_FILES = (".safetensors", ".pth", ".pt", ".bin")
_TIMM_FOLDER_FILES = ("model.safetensors", "pytorch_model.bin")
_BATCH = 32


@dataclass
class _Loaded:
    """A classifier ready to run: the model, its preprocessing, its class names and who ran it."""

    model: Any
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    labels: list[str] | None
    num_classes: int
    version: str


class ImageNetJudge:
    """True where one of an image's top-k predicted classes is in ``indices``."""

    def __init__(self, loaded: _Loaded, indices: tuple[int, ...], *, top_k: int, weights: str,
                 weights_sha256: str, device: str | torch.device) -> None:
        self.model = loaded.model.to(device).eval()
        self.device = device
        self.preprocess = loaded.preprocess
        self.labels = loaded.labels
        self.num_classes = loaded.num_classes
        self.indices = indices
        self.top_k = top_k
        names = tuple(f"{i}:{_label(loaded.labels, i)}" for i in indices)
        self.__name__ = f"imagenet_judge({', '.join(names)}, top_k={top_k})"
        self.record = JudgeRecord(name="imagenet_judge", version=loaded.version, weights=weights,
                                  weights_sha256=weights_sha256, threshold=None, classes=names,
                                  extra={"top_k": top_k})

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's logits, N×classes, on the CPU."""
        import torch

        outputs = []
        with torch.no_grad():
            for start in range(0, int(images.shape[0]), _BATCH):
                pixels = self.preprocess(images[start:start + _BATCH]).to(self.device)
                out = self.model(pixels)
                out = out.logits if hasattr(out, "logits") else out
                outputs.append(out.float().cpu())
        if not outputs:
            return torch.zeros(0, self.num_classes)
        return torch.cat(outputs)

    def top_classes(self, images: torch.Tensor) -> np.ndarray:
        """The indices of each image's top-k classes, N×k, best first."""
        logits = self.logits(images)
        return logits.topk(min(self.top_k, logits.shape[1]), dim=1).indices.numpy()

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        import numpy as np

        if int(images.shape[0]) == 0:
            return np.zeros(0, dtype=bool)
        return np.isin(self.top_classes(images), np.asarray(self.indices)).any(axis=1)

    def __repr__(self) -> str:
        return f"ImageNetJudge(classes={list(self.record.classes)}, top_k={self.top_k})"


def imagenet_judge(weights: str | os.PathLike[str], classes: str | int | Sequence[str | int], *, top_k: int = 1,
                   arch: str | None = None, device: str | torch.device | None = None) -> ImageNetJudge:
    """True where an ImageNet classifier's top-k predictions hold one of ``classes``.

    ``weights``: a transformers image-classification folder, a timm folder, or one weights
    file (its timm architecture from ``arch`` or its name). ``classes``: class names (any of a
    label's comma-separated synonyms, any case; a name several labels share, such as ImageNet's
    two "crane"s, counts them all) or indices. ``device``: default CUDA when
    available, else the CPU.
    """
    import torch

    from ..hashing import weights_sha256

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    path = Path(weights).expanduser()
    loaded = _load(path, arch)
    indices = _resolve_classes(classes, loaded.labels, loaded.num_classes, path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return ImageNetJudge(loaded, indices, top_k=top_k, weights=str(path), weights_sha256=weights_sha256(path),
                         device=device)


def imagenet_classes_for(concept_name: str, weights: str | os.PathLike[str], *, arch: str | None = None) -> list[int]:
    """The class indices whose label names ``concept_name`` (one of its synonyms, any case).

    ValueError naming close label names when none does. Reads the labels only, not the model.
    """
    path = Path(weights).expanduser()
    labels, num_classes = _labels_only(path, arch)
    return list(_resolve_classes([concept_name], labels, num_classes, path))


# --- class names ----------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def _synonyms(label: str) -> list[str]:
    """A label's names: the whole label and each comma-separated part, normalised."""
    parts = [_norm(label)] + [_norm(part) for part in label.split(",")]
    return [part for part in dict.fromkeys(parts) if part]


def _label(labels: list[str] | None, index: int) -> str:
    return labels[index] if labels and 0 <= index < len(labels) else f"class {index}"


def _resolve_classes(classes: Any, labels: list[str] | None, num_classes: int, path: Path) -> tuple[int, ...]:
    """Class indices of names (matched against the labels' synonyms) and indices; ValueError naming close names."""
    import difflib

    import numpy as np

    items = [classes] if isinstance(classes, str | int | np.integer) else list(classes)
    if not items:
        raise ValueError("classes must name at least one class (a label name or an index)")
    found: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | np.integer):
            raise TypeError(f"a class is a label name or an index, got {item!r}")
        if not isinstance(item, str):
            if not 0 <= int(item) < num_classes:
                raise ValueError(f"class index {int(item)} is out of range: {path} has {num_classes} classes")
            found.append(int(item))
            continue
        if not labels:
            raise ValueError(f"{path} carries no class names ({num_classes} classes): give class indices, not "
                             f"{item!r}")
        wanted = _norm(item)
        matches = [i for i, label in enumerate(labels) if wanted in _synonyms(label)]
        if not matches:
            names = list(dict.fromkeys(s for label in labels for s in _synonyms(label)))
            close = difflib.get_close_matches(wanted, names, n=5, cutoff=0.6)
            hint = (f"close names: {', '.join(repr(c) for c in close)}" if close
                    else f"no close name; labels look like {', '.join(repr(label) for label in labels[:3])}")
            raise ValueError(f"no class of {path} is named {item!r} ({len(labels)} classes; {hint})")
        found.extend(matches)
    return tuple(dict.fromkeys(found))


# --- loading --------------------------------------------------------------------------------------


def _kind(path: Path) -> str:
    """``transformers``, ``timm`` (folders, by their config.json) or ``file``; JudgeUnavailable otherwise."""
    if path.is_file():
        if not path.name.lower().endswith(_WEIGHT_FILES):
            raise JudgeUnavailable(f"{str(path)!r} is not a weights file: give a {', '.join(_WEIGHT_FILES)} file, "
                                   "a transformers image-classification folder or a timm folder")
        return "file"
    if not path.is_dir():
        raise JudgeUnavailable(f"no file or folder at {str(path)!r}: give local ImageNet classifier weights (a "
                               "transformers or timm folder, or a .safetensors/.pth file); nothing is downloaded")
    config = _config(path)
    if config.get("architectures"):
        return "transformers"
    if config.get("architecture"):
        return "timm"
    raise JudgeUnavailable(f"{str(path / 'config.json')!r} names no model: a transformers folder's config has "
                           "'architectures', a timm folder's 'architecture'")


def _config(folder: Path) -> dict[str, Any]:
    file = folder / "config.json"
    if not file.is_file():
        raise JudgeUnavailable(f"the folder {str(folder)!r} has no config.json: give a transformers "
                               "image-classification folder or a timm folder (config.json and the weights)")
    with open(file, encoding="utf-8") as handle:
        return json.load(handle)


def _load(path: Path, arch: str | None) -> _Loaded:
    kind = _kind(path)
    if kind == "transformers":
        return _load_transformers(path)
    return _load_timm(path, arch, folder=kind == "timm")


def _labels_only(path: Path, arch: str | None) -> tuple[list[str] | None, int]:
    """The class names (None when unknown) and the number of classes, without building the model."""
    kind = _kind(path)
    if kind == "transformers":
        config = _config(path)
        id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
        count = len(id2label) or int(config.get("num_labels", 0))
        return [id2label.get(i, f"LABEL_{i}") for i in range(count)], count
    if kind == "timm":
        config = _config(path)
        pretrained = config.get("pretrained_cfg") or {}
        count = config.get("num_classes") or pretrained.get("num_classes")
        if not count:
            count = _timm_num_classes(config["architecture"], _tensor_shapes(_timm_folder_weights(path)),
                                      pretrained.get("classifier"))
        return _timm_labels(int(count), config), int(count)
    name = _timm_arch(path, arch)
    count = _timm_num_classes(name, _tensor_shapes(path))
    return _timm_labels(count, {}), count


def _load_transformers(folder: Path) -> _Loaded:
    import transformers
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    if not (folder / "preprocessor_config.json").is_file():
        raise JudgeUnavailable(f"the transformers folder {str(folder)!r} has no preprocessor_config.json: give the "
                               "folder as it ships (config.json, the weights and preprocessor_config.json)")
    try:
        model = AutoModelForImageClassification.from_pretrained(str(folder), local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise JudgeUnavailable(f"cannot load an image classifier from {str(folder)!r} ({error}); give a "
                               "transformers image-classification folder with its weights (model.safetensors or "
                               "pytorch_model.bin)") from error
    id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    count = int(model.config.num_labels)

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        pils = [Image.fromarray(array) for array in to_uint8_rgb(images)]  # as the PNG files a script reads
        return processor(images=pils, return_tensors="pt").pixel_values

    return _Loaded(model=model, preprocess=preprocess, labels=[id2label.get(i, f"LABEL_{i}") for i in range(count)],
                   num_classes=count, version=f"transformers {transformers.__version__}")


def _timm_folder_weights(folder: Path) -> Path:
    for name in _TIMM_FOLDER_FILES:
        if (folder / name).is_file():
            return folder / name
    raise JudgeUnavailable(f"the timm folder {str(folder)!r} has no {' or '.join(_TIMM_FOLDER_FILES)}: give the "
                           "folder with its weights")


def _timm_arch(file: Path, arch: str | None) -> str:
    """The timm model name of a weights file: ``arch``, else its name (``resnet50-0676ba61.pth`` -> ``resnet50``)."""
    import timm

    if arch is not None:
        try:
            known = timm.is_model(arch) and (timm.models.get_pretrained_cfg(arch) or True)
        except RuntimeError:  # a known architecture with an unknown pretrained tag
            known = False
        if not known:
            raise JudgeUnavailable(f"arch={arch!r} is not a timm model name (such as 'resnet50', "
                                   "'resnet50.a1_in1k' or 'vit_base_patch16_224')")
        return arch
    stem = file.name
    for suffix in _WEIGHT_FILES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for candidate in dict.fromkeys((stem, stem.split("-")[0], stem.split("-")[0].split(".")[0])):
        if candidate and timm.is_model(candidate):
            try:
                timm.models.get_pretrained_cfg(candidate)
            except RuntimeError:  # a known architecture with a tag timm does not know: use the architecture's cfg
                continue
            return candidate
    raise JudgeUnavailable(f"cannot tell the architecture of {str(file)!r} from its name: give arch= (a timm "
                           "model name such as 'resnet50'), or name the file after it (resnet50-....pth)")


def _tensor_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor in a weights file (a safetensors file is not read whole)."""
    if file.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    return {key: tuple(value.shape) for key, value in _state_dict(file).items()}


def _state_dict(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (a checkpoint's ``state_dict`` or ``model`` entry when it wraps them)."""
    import torch

    try:
        if file.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise JudgeUnavailable(f"cannot read the weights file {str(file)!r} ({error}); give a .safetensors file "
                               "or a PyTorch state dict (.pth, .pt, .bin)") from error
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise JudgeUnavailable(f"{str(file)!r} holds a {type(state).__name__}, not a state dict of tensors")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _timm_num_classes(name: str, shapes: dict[str, tuple[int, ...]], classifier: Any = None) -> int:
    """The number of classes of the weights: the rows of the architecture's classifier weight."""
    import timm

    if classifier is None:
        cfg = timm.models.get_pretrained_cfg(name)
        classifier = cfg.classifier if cfg is not None else None
    if classifier is None:
        classifier = timm.create_model(name, pretrained=False).pretrained_cfg.get("classifier")
    heads = [classifier] if isinstance(classifier, str) else list(classifier or [])
    for head in heads:
        if f"{head}.weight" in shapes:
            return int(shapes[f"{head}.weight"][0])
    raise JudgeUnavailable(f"the weights hold no classifier for {name} (no {' or '.join(f'{h}.weight' for h in heads)}"
                           "): give a classifier's weights, or the right arch=")


def _timm_labels(count: int, config: dict[str, Any]) -> list[str] | None:
    """Class names of a timm head: the config's own, else timm's ImageNet names for a head of an ImageNet size."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    pretrained = config.get("pretrained_cfg") or {}
    descriptions = config.get("label_descriptions") or pretrained.get("label_descriptions")
    names = config.get("label_names") or pretrained.get("label_names")
    if isinstance(descriptions, dict) and names:
        descriptions = [descriptions.get(n, n) for n in names]
    if isinstance(descriptions, list) and len(descriptions) == count:
        return [str(d) for d in descriptions]
    subset = infer_imagenet_subset({"num_classes": count})
    if subset is not None:
        info = ImageNetInfo(subset)
        if isinstance(names, list) and len(names) == count:
            try:
                return [info.label_name_to_description(str(n)) for n in names]
            except KeyError:
                return [str(n) for n in names]
        return list(info.label_descriptions())
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    return None


def _load_timm(path: Path, arch: str | None, *, folder: bool) -> _Loaded:
    import timm
    from timm.data import resolve_data_config

    if folder:
        config = _config(path)
        file = _timm_folder_weights(path)
        state = _state_dict(file)
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        classifier = (config.get("pretrained_cfg") or {}).get("classifier")
        count = _timm_num_classes(config["architecture"], shapes, classifier)
        try:
            model = timm.create_model(f"local-dir:{path}", pretrained=False, num_classes=count)
        except (RuntimeError, ValueError, KeyError) as error:
            raise JudgeUnavailable(f"timm cannot build the model of {str(path / 'config.json')!r} ({error})") from error
    else:
        config, file = {}, path
        name = _timm_arch(path, arch)
        state = _state_dict(path)
        count = _timm_num_classes(name, {k: tuple(v.shape) for k, v in state.items()})
        model = timm.create_model(name, pretrained=False, num_classes=count)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise JudgeUnavailable(f"the weights {str(file)!r} do not fit timm's {type(model).__name__} "
                               f"({_mismatch(model, state, error)}): give the right arch= or the weights of "
                               "a timm model") from error
    data = resolve_data_config({}, model=model)
    return _Loaded(model=model, preprocess=_timm_preprocess(data), labels=_timm_labels(count, config),
                   num_classes=count, version=f"timm {timm.__version__}")


def _mismatch(model: Any, state: dict[str, torch.Tensor], error: Exception) -> str:
    """What keeps weights from loading strictly: missing and unexpected keys, else the first size mismatch."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
             for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if parts:
        return "; ".join(parts)
    sizes = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
    return sizes[0] if sizes else str(error).splitlines()[0]


def _timm_preprocess(data: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """timm's eval transform in torch: resize (to size / crop_pct), centre crop, normalise; on 8-bit images."""
    height, width = (int(s) for s in data["input_size"][1:])
    crop_pct = float(data.get("crop_pct") or 0.875)
    crop_mode = data.get("crop_mode") or "center"
    interpolation = data.get("interpolation") or "bilinear"
    mode = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
    scale_h, scale_w = math.floor(height / crop_pct), math.floor(width / crop_pct)
    mean, std = tuple(data["mean"]), tuple(data["std"])

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(to_uint8_rgb(images)).permute(0, 3, 1, 2).float() / 255  # as the saved PNGs
        h, w = x.shape[-2:]
        if crop_mode == "squash":
            size = (scale_h, scale_w)
        elif crop_mode == "border":  # the longer side fits; the crop below pads the rest
            ratio = min(scale_h / h, scale_w / w)
            size = (round(h * ratio), round(w * ratio))
        elif scale_h == scale_w:  # torchvision's Resize(int): the shorter side to the size
            short, long = (h, w) if h <= w else (w, h)
            new_long = int(scale_h * long / short)
            size = (scale_h, new_long) if h <= w else (new_long, scale_h)
        else:
            ratio = max(scale_h / h, scale_w / w)
            size = (round(h * ratio), round(w * ratio))
        if tuple(size) != (h, w):
            antialias = mode in ("bilinear", "bicubic")
            x = F.interpolate(x, size=size, mode=mode, antialias=antialias,
                              **({"align_corners": False} if antialias else {}))
            x = (x.clamp(0, 1) * 255).round() / 255  # PIL resizes to 8 bits
        x = _center_crop(x, height, width)
        return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    return preprocess


def _center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre height×width of N×3×H×W images, padded with zeros where they are smaller (as torchvision)."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    if h < height or w < width:
        pad_h, pad_w = max(height - h, 0), max(width - w, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        h, w = x.shape[-2:]
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return x[..., top:top + height, left:left + width]
