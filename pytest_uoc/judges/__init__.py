"""Judges: what an image shows, decided by an instrument a reader trusts.

A judge is any callable ``judge(images) -> labels`` (``base``): booleans "shows
the concept" for the calibrated rule and ``assert_no_leakage``, or labels for
``assert_aligned`` and ``assert_pinpoint``. Ready-made, offline, each carrying a
``JudgeRecord`` (name, version, weights' SHA-256, threshold, classes):

    zoo_digit_judge("three")                       # the embedded zoo's digit/colour reader
    nudenet_judge()                                # NudeNet's shipped detector (pytest-uoc[nudity])
    safety_checker_judge("path/to/sd-v1-4")        # the SD folder's own safety checker
    clip_judge("path/to/clip", concept=[...], others=[...])   # CLIP zero-shot, local weights
    imagenet_judge("path/to/resnet50", classes=["church"])    # ImageNet top-1 in the given classes

``--uoc-judge SPEC`` picks one by name (``spec``). No torch at import.
"""

from __future__ import annotations

from .base import (
    Judge,
    JudgeRecord,
    JudgeUnavailable,
    judge_flags,
    judge_labels,
    judge_name,
    judge_record,
    to_uint8_rgb,
)
from .zoo import ZooDigitJudge, zoo_digit_judge, zoo_label_judge

__all__ = [
    "Judge",
    "JudgeRecord",
    "JudgeUnavailable",
    "ZooDigitJudge",
    "clip_judge",
    "imagenet_judge",
    "judge_flags",
    "judge_labels",
    "judge_name",
    "judge_record",
    "nudenet_judge",
    "safety_checker_judge",
    "to_uint8_rgb",
    "zoo_digit_judge",
    "zoo_label_judge",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy: each judge's module loads only when asked for
    modules = {"nudenet_judge": "nudenet", "safety_checker_judge": "safety", "clip_judge": "clip",
               "imagenet_judge": "imagenet"}
    if name in modules:
        import importlib

        return getattr(importlib.import_module(f".{modules[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
