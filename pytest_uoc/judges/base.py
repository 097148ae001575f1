"""What a judge is: ``judge(images) -> one label (or boolean) per image``, and the record it carries.

A judge is any callable: ``images`` is an N×3×H×W float tensor in [0, 1] and
the result holds one label per image, either booleans ("shows the concept",
what the calibrated rule and ``assert_no_leakage`` need) or labels (strings or
integers, compared with expected labels by ``assert_aligned`` and
``assert_pinpoint``). A judge may carry a ``record`` (``JudgeRecord``): its
name, version, weights and their SHA-256, threshold and classes, written into
reports so that a number can be reproduced. No torch at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["Judge", "JudgeRecord", "JudgeUnavailable", "judge_flags", "judge_labels", "judge_name", "judge_record",
           "to_uint8_rgb"]


class JudgeUnavailable(ValueError):
    """A judge cannot be built here: a missing extra, missing or wrong weights (the message says what to give)."""


@dataclass(frozen=True)
class JudgeRecord:
    """What makes a judge's numbers reproducible: which instrument, which weights, which decision rule."""

    name: str
    #: The package (and version) that runs it, e.g. "nudenet 3.4.2"; None for a user's own callable.
    version: str | None = None
    #: The weights file or folder it read, and the SHA-256 of its weight files (``hashing.weights_sha256``).
    weights: str | None = None
    weights_sha256: str | None = None
    #: The score above which an image counts as showing the concept (None: an argmax or the judge's own rule).
    threshold: float | None = None
    #: The classes (or texts) that count as the concept, and those it is weighed against.
    classes: tuple[str, ...] = ()
    others: tuple[str, ...] = ()
    #: Where the defaults come from (a benchmark's code), when they are a benchmark's.
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "weights": self.weights,
                               "weights_sha256": self.weights_sha256, "threshold": self.threshold,
                               "classes": list(self.classes)}
        if self.others:
            out["others"] = list(self.others)
        if self.source:
            out["source"] = self.source
        out.update(self.extra)
        return out


def judge_record(judge: Any) -> JudgeRecord:
    """A judge's ``record`` when it carries one, else a record with its name only."""
    record = getattr(judge, "record", None)
    return record if isinstance(record, JudgeRecord) else JudgeRecord(name=judge_name(judge))


def to_uint8_rgb(images: torch.Tensor) -> np.ndarray:
    """N×H×W×3 uint8 RGB arrays of N×3×H×W images (float in [0, 1], rounded as diffusers saves a PNG, or uint8)."""
    import numpy as np
    import torch

    if images.dtype == torch.uint8:
        return images.detach().permute(0, 2, 3, 1).cpu().numpy()
    array = images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (array * 255).round().astype(np.uint8)


@runtime_checkable
class Judge(Protocol):
    """``judge(images) -> one label (or boolean) per image``."""

    def __call__(self, images: Any) -> Sequence[Any] | Any: ...


def judge_name(judge: Any) -> str:
    """What a judge is called in messages and reports: its ``__name__``, else its type's name."""
    return getattr(judge, "__name__", None) or type(judge).__name__


def judge_labels(judge: Judge, images: torch.Tensor) -> np.ndarray:
    """Run ``judge`` on ``images`` and return its labels as a 1-D numpy array of length N.

    TypeError when ``judge`` is not callable; ValueError when it returns
    anything but one label per image.
    """
    import numpy as np
    import torch

    if not callable(judge):
        raise TypeError(f"a judge must be callable as judge(images) -> labels, got {type(judge).__name__}")
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
        # Compact images: a judge is given float images in [0, 1], a batch at a time (bounded memory).
        from ..pixels import float_batches

        return np.concatenate([judge_labels(judge, batch) for batch in float_batches(images)])
    n = int(images.shape[0])
    raw = judge(images)
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    if isinstance(raw, str | bytes) or not hasattr(raw, "__len__"):
        raise TypeError(
            f"judge {judge_name(judge)} must return one label per image (a sequence or 1-D tensor of {n}), "
            f"got {type(raw).__name__}"
        )
    labels = np.asarray(raw) if not isinstance(raw, np.ndarray) else raw
    if labels.dtype == object or labels.dtype.kind in "US":
        labels = np.asarray(list(raw), dtype=object)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"judge {judge_name(judge)} must return one label per image: {n} images in, "
            f"got shape {tuple(labels.shape)}"
        )
    return labels


def judge_flags(judge: Judge, images: torch.Tensor) -> np.ndarray:
    """Run a boolean judge ("shows the concept") and return a bool numpy array of length N."""
    import numpy as np

    labels = judge_labels(judge, images)
    if labels.dtype == np.bool_:
        return labels
    if labels.dtype == object and all(isinstance(v, bool | np.bool_) for v in labels):
        return labels.astype(bool)
    raise TypeError(
        f"judge {judge_name(judge)} must return booleans here (True where an image shows the concept), "
        f"got {labels.dtype} values such as {labels[:3].tolist()!r}"
    )
