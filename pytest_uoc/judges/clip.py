"""CLIP zero-shot as a boolean judge: does an image match the concept's texts better than the others'?

    judge = clip_judge("path/to/clip", concept=["a handwritten three"], others=["a handwritten eight"])
    judge(images)                 # numpy bool per image: True where it shows the concept
    judge.probabilities(images)   # the summed softmax probability of the concept texts

The weights are a local ``transformers`` ``CLIPModel`` folder (``config.json``, its
weights, the tokenizer files and, optionally, ``preprocessor_config.json``), read with
``local_files_only=True``: a judge that fetched its weights could change under a report.
The decision rule is CLIP's zero-shot classification: a softmax over
``logit_scale`` × cosine similarity with every text of ``concept`` and ``others``;
an image shows the concept when the concept texts' summed probability is above
``threshold``. The embedded zoo ships a tiny CLIP trained on its world
(``pytest_uoc.zoo.clip.clip_dir()``). No torch at import.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import JudgeRecord, JudgeUnavailable

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "ClipJudge", "clip_judge"]

#: OpenAI CLIP's normalisation, used when the folder has no ``preprocessor_config.json``.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
_WHAT_TO_GIVE = ("give the local folder of a transformers CLIPModel: config.json, its weights "
                 "(model.safetensors or pytorch_model.bin) and the tokenizer files (tokenizer.json, or vocab.json "
                 "and merges.txt), e.g. saved with CLIPModel.save_pretrained and CLIPTokenizer.save_pretrained, or "
                 "downloaded beforehand with `hf download openai/clip-vit-large-patch14 --local-dir DIR`")


def _check_folder(path: str | os.PathLike[str]) -> Path:
    """The folder as a Path; JudgeUnavailable naming what is missing and what to give."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"clip_judge: path must be a folder path (str or PathLike), got {type(path).__name__}")
    folder = Path(path)
    if not folder.is_dir():
        what = "a file" if folder.is_file() else "nothing"
        raise JudgeUnavailable(f"clip_judge: {str(folder)!r} is not a folder (there is {what} there); CLIP weights "
                               f"are read offline, never fetched by hub name: {_WHAT_TO_GIVE}")
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json, or vocab.json and merges.txt)")
    if missing:
        raise JudgeUnavailable(f"clip_judge: the folder {str(folder)!r} has no {', no '.join(missing)}; "
                               f"{_WHAT_TO_GIVE}")
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise JudgeUnavailable(f"clip_judge: {str(folder / 'config.json')!r} is not readable JSON ({exc}); "
                               f"{_WHAT_TO_GIVE}") from None
    if model_type != "clip":
        raise JudgeUnavailable(f"clip_judge: {str(folder)!r} holds a {model_type!r} model (config.json model_type), "
                               f"not a CLIPModel ('clip'); {_WHAT_TO_GIVE}")
    return folder


def _check_texts(concept: Sequence[str], others: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The texts as tuples; ValueError for empty lists, empty or repeated texts, or a text on both sides."""
    out = []
    for what, texts in (("concept", concept), ("others", others)):
        if isinstance(texts, str):
            texts = [texts]
        if texts is None or not isinstance(texts, Sequence) or len(texts) == 0:
            raise ValueError(f"clip_judge: {what} must be a non-empty list of texts, got {texts!r}")
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"clip_judge: every {what} text must be a non-empty string, got {text!r}")
        repeated = sorted({t for t in texts if list(texts).count(t) > 1})
        if repeated:
            raise ValueError(f"clip_judge: {what} lists {repeated[0]!r} more than once; list each text once")
        out.append(tuple(texts))
    both = [t for t in out[0] if t in out[1]]
    if both:
        raise ValueError(f"clip_judge: {both[0]!r} is in both concept and others; a text must count for one side "
                         "only")
    return out[0], out[1]


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold) \
            or not 0 < threshold < 1:
        raise ValueError(f"clip_judge: threshold must be a probability strictly between 0 and 1, got {threshold!r}")
    return float(threshold)


def _normalisation(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of ``preprocessor_config.json`` when the folder has one, else OpenAI CLIP's."""
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    try:
        config = json.loads(file.read_text())
        mean = tuple(float(v) for v in config.get("image_mean", OPENAI_CLIP_MEAN))
        std = tuple(float(v) for v in config.get("image_std", OPENAI_CLIP_STD))
    except (OSError, ValueError, TypeError) as exc:
        raise JudgeUnavailable(f"clip_judge: {str(file)!r} is not a readable image processor config ({exc}); fix "
                               "or remove it (without it OpenAI CLIP's mean and std are used)") from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise JudgeUnavailable(f"clip_judge: {str(file)!r} must give 3 image_mean values and 3 positive image_std "
                               f"values, got {mean} and {std}")
    return mean, std


def _features(output: Any) -> torch.Tensor:
    """The projected embedding: transformers 5 returns an output object, earlier versions the tensor."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipJudge:
    """A CLIP zero-shot boolean judge: the concept's texts against the others' (see ``clip_judge``)."""

    def __init__(self, path: str | os.PathLike[str], concept: Sequence[str], others: Sequence[str], *,
                 threshold: float = 0.5, device: str | None = None, batch_size: int = 64) -> None:
        import torch
        import transformers
        from transformers import AutoTokenizer, CLIPModel

        from ..diffusion.loading import quiet_loading
        from ..hashing import weights_sha256

        self.concept, self.others = _check_texts(concept, others)
        self.threshold = _check_threshold(threshold)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"clip_judge: batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        folder = _check_folder(path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            with quiet_loading():
                model = CLIPModel.from_pretrained(str(folder), local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise JudgeUnavailable(f"clip_judge: cannot load a CLIPModel from {str(folder)!r} ({exc}); "
                                   f"{_WHAT_TO_GIVE}") from None
        self.model = model.float().eval().requires_grad_(False).to(self.device)
        self.image_size = int(model.config.vision_config.image_size)
        mean, std = _normalisation(folder)
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        texts = [*self.concept, *self.others]
        max_length = min(int(model.config.text_config.max_position_embeddings),
                         int(getattr(tokenizer, "model_max_length", 10**6)))
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            text = _features(self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                          attention_mask=tokens["attention_mask"].to(self.device)))
            # Text embeddings once: unit-normalised and scaled, so an image batch costs one matmul.
            self._text = (text / text.norm(dim=-1, keepdim=True)) * self.model.logit_scale.exp()
        head = repr(self.concept[0]) + (", ..." if len(self.concept) > 1 else "")
        self.__name__ = f"clip_judge({head})"
        self.record = JudgeRecord(
            name=self.__name__, version=f"transformers {transformers.__version__}", weights=str(folder),
            weights_sha256=weights_sha256(folder), threshold=self.threshold, classes=self.concept,
            others=self.others,
        )

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Images resized (bicubic, antialiased; shortest side, then a centre crop) and normalised."""
        import torch.nn.functional as F

        from ..pixels import float_images

        x = float_images(images).to(self.device, dtype=self.model.logit_scale.dtype)
        height, width = x.shape[-2:]
        if (height, width) != (self.image_size, self.image_size):
            scale = self.image_size / min(height, width)
            size = (max(self.image_size, round(height * scale)), max(self.image_size, round(width * scale)))
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
            top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
            x = x[..., top:top + self.image_size, left:left + self.image_size]
        return (x - self._mean) / self._std

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """The summed softmax probability of the concept texts, per image (a float tensor of length N, on the CPU)."""
        import torch

        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{self.__name__}: images must be an N×3×H×W tensor in [0, 1], got {shape}")
        out = []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                pixels = self._pixels(images[start:start + self.batch_size])
                embedding = _features(self.model.get_image_features(pixel_values=pixels))
                logits = (embedding / embedding.norm(dim=-1, keepdim=True)) @ self._text.T
                out.append(logits.softmax(dim=-1)[:, : len(self.concept)].sum(dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """True where an image shows the concept (its concept texts' probability is above the threshold)."""
        return (self.probabilities(images) > self.threshold).numpy()

    def __repr__(self) -> str:
        return (f"ClipJudge({str(self.record.weights)!r}, {len(self.concept)} concept texts, "
                f"{len(self.others)} others, threshold={self.threshold})")


def clip_judge(path: str | os.PathLike[str], concept: Sequence[str], others: Sequence[str], *,
               threshold: float = 0.5, device: str | None = None, batch_size: int = 64) -> ClipJudge:
    """A CLIP zero-shot judge: True where the ``concept`` texts' summed probability is above ``threshold``.

    ``path`` is a local ``CLIPModel`` folder (never a hub name); ``concept`` and
    ``others`` are the texts weighed against each other (e.g. the concept's prompts
    and other digits' prompts). ``device`` None: CUDA when available, else the CPU.
    Raises ``JudgeUnavailable`` when the folder lacks what a CLIPModel needs and
    ValueError for empty or overlapping texts or a threshold outside (0, 1).
    """
    return ClipJudge(path, concept, others, threshold=threshold, device=device, batch_size=batch_size)
