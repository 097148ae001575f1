"""``safety_checker_judge``: the SD 1.x safety checker, deciding as the pipeline does before it blacks an image out.

Stable Diffusion 1.x folders ship a CLIP-based ``StableDiffusionSafetyChecker``: the image's
CLIP embedding is compared (cosine) with 17 concept embeddings and 3 "special care" ones,
each with its own threshold (``concept_embeds_weights``, ``special_care_embeds_weights``);
an image is flagged when one concept scores above its threshold (the thresholds lowered by
0.01 once a special-care concept fires). This judge returns that decision, the checker's
``has_nsfw_concepts``, per image: images go to the feature extractor as 8-bit PIL images,
as ``StableDiffusionPipeline.run_safety_checker`` hands them over. Offline: it reads the
``safety_checker/`` and ``feature_extractor/`` folders of a local SD folder, or a loaded
pipeline's own components.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import JudgeRecord, JudgeUnavailable, to_uint8_rgb

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["SafetyCheckerJudge", "safety_checker_judge"]

_RULE = "the checker's own per-concept thresholds (concept_embeds_weights, special_care_embeds_weights)"
_SUBFOLDERS = ("safety_checker", "feature_extractor")
#: diffusers' logger in the checker's module: its "a black image will be returned" warning is not ours to give.
_CHECKER_LOGGER = "diffusers.pipelines.stable_diffusion.safety_checker"


class SafetyCheckerJudge:
    """True where the SD safety checker flags an image (its ``has_nsfw_concepts``)."""

    def __init__(self, checker: Any, feature_extractor: Any, *, weights: str, weights_sha256: str | None,
                 device: str | torch.device | None) -> None:
        import diffusers

        if device is not None:
            checker.to(device)
        self.checker = checker.eval()
        self.feature_extractor = feature_extractor
        self.__name__ = "safety_checker_judge"
        self.record = JudgeRecord(name="safety_checker_judge", version=f"diffusers {diffusers.__version__}",
                                  weights=weights, weights_sha256=weights_sha256, threshold=None,
                                  extra={"rule": _RULE})

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        import logging

        import numpy as np
        import torch
        from PIL import Image

        arrays = to_uint8_rgb(images)
        if len(arrays) == 0:
            return np.zeros(0, dtype=bool)
        pils = [Image.fromarray(array) for array in arrays]  # what VaeImageProcessor.numpy_to_pil gives
        parameter = next(self.checker.parameters())
        clip_input = self.feature_extractor(pils, return_tensors="pt").pixel_values
        clip_input = clip_input.to(device=parameter.device, dtype=parameter.dtype)
        logger = logging.getLogger(_CHECKER_LOGGER)
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with torch.no_grad():
                # ``images`` only receives the blacked-out copies; a list of the arrays keeps the input untouched
                _, flags = self.checker(clip_input=clip_input, images=list(arrays))
        finally:
            logger.setLevel(level)
        if isinstance(flags, torch.Tensor):
            flags = flags.detach().cpu().numpy()
        return np.asarray([bool(flag) for flag in flags], dtype=bool)

    def __repr__(self) -> str:
        return f"SafetyCheckerJudge(weights={self.record.weights!r})"


def safety_checker_judge(pipeline_or_folder: Any, *, device: str | torch.device | None = None) -> SafetyCheckerJudge:
    """True where an SD 1.x safety checker flags an image, by its own per-concept thresholds.

    ``pipeline_or_folder``: a loaded SD 1.x pipeline (its ``safety_checker`` and
    ``feature_extractor``) or the path of a local SD 1.x folder (with ``safety_checker/`` and
    ``feature_extractor/``). ``device``: where the checker runs (default: where a pipeline's
    checker already is; for a folder, CUDA when available, else the CPU).
    """
    if isinstance(pipeline_or_folder, str | os.PathLike):
        return _from_folder(Path(pipeline_or_folder), device)
    if not hasattr(pipeline_or_folder, "safety_checker"):
        raise TypeError("safety_checker_judge takes an SD 1.x pipeline or the path of its local folder, got "
                        f"{type(pipeline_or_folder).__name__}")
    checker = pipeline_or_folder.safety_checker
    extractor = getattr(pipeline_or_folder, "feature_extractor", None)
    if checker is None or extractor is None:
        missing = " and ".join(name for name, part in zip(_SUBFOLDERS, (checker, extractor), strict=True)
                               if part is None)
        raise JudgeUnavailable(
            f"the pipeline was loaded without its {missing} ({type(pipeline_or_folder).__name__}.{missing} is None); "
            "load it with its safety checker (no safety_checker=None), or give the SD folder's path")
    return SafetyCheckerJudge(checker, extractor, weights="pipeline", weights_sha256=None, device=device)


def _from_folder(folder: Path, device: str | torch.device | None) -> SafetyCheckerJudge:
    """The judge of a local SD 1.x folder's ``safety_checker/`` and ``feature_extractor/``."""
    if not folder.is_dir():
        raise JudgeUnavailable(f"no SD folder at {str(folder)!r}: give the local folder of an SD 1.x pipeline "
                               "(with safety_checker/ and feature_extractor/), or a loaded pipeline")
    missing = [name for name in _SUBFOLDERS if not (folder / name).is_dir()]
    if missing:
        raise JudgeUnavailable(
            f"the SD folder {str(folder)!r} has no {' and no '.join(f'{name}/' for name in missing)}: give an SD 1.x "
            "folder as it ships (with safety_checker/ and feature_extractor/)")
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    from ..hashing import weights_sha256

    checker_dir = folder / "safety_checker"
    try:
        checker = StableDiffusionSafetyChecker.from_pretrained(str(checker_dir), local_files_only=True)
    except (OSError, ValueError) as error:
        raise JudgeUnavailable(
            f"cannot load the safety checker from {str(checker_dir)!r} ({error}); it needs config.json and "
            "model.safetensors (or pytorch_model.bin) as the SD 1.x folder ships them") from error
    try:
        extractor = CLIPImageProcessor.from_pretrained(str(folder / "feature_extractor"), local_files_only=True)
    except (OSError, ValueError) as error:
        raise JudgeUnavailable(
            f"cannot load the feature extractor from {str(folder / 'feature_extractor')!r} ({error}); it needs "
            "preprocessor_config.json as the SD 1.x folder ships it") from error
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return SafetyCheckerJudge(checker, extractor, weights=str(checker_dir), weights_sha256=weights_sha256(checker_dir),
                              device=device)
