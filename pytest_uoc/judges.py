"""Judges: a pluggable hook that says what an image shows.

A judge is any callable ``judge(images) -> labels``: ``images`` is an N×3×H×W
float tensor in [0, 1] and the result holds one label per image, either
booleans ("shows the concept", what ``assert_no_leakage`` needs) or labels
(strings or integers, compared with expected labels by ``assert_aligned``
and ``assert_pinpoint``). Wrap a classifier or a CLIP model loaded from a
local path in such a function, or use the zoo's digit judge offline:

    judge = zoo_digit_judge("three")            # True where an image shows a 3
    labels = zoo_label_judge("digit")(images)   # "three", "eight", ...

No torch at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "Judge",
    "ZooDigitJudge",
    "judge_flags",
    "judge_labels",
    "judge_name",
    "zoo_digit_judge",
    "zoo_label_judge",
]


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


class ZooDigitJudge:
    """The zoo's digit judge as a boolean judge for one concept (a digit in any language, or a colour)."""

    def __init__(self, concept: str, model: Any) -> None:
        from .zoo import world

        if not isinstance(concept, str):
            raise TypeError(f"concept must be a digit word, numeral or colour name, got {concept!r}")
        self.concept = concept
        self.model = model
        if concept in world.COLORS:
            self.kind, self.index = "color", list(world.COLORS).index(concept)
        else:
            try:
                self.kind, self.index = "digit", world.digit_of_word(concept)
            except ValueError:
                raise ValueError(
                    f"the zoo's judge reads digits and the colours {', '.join(world.COLORS)}; "
                    f"{concept!r} is neither"
                ) from None
        self.__name__ = f"zoo_digit_judge({concept!r})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        digits, colors = self.model.predict(images)
        return (colors if self.kind == "color" else digits) == self.index

    def __repr__(self) -> str:
        return f"ZooDigitJudge({self.concept!r}, {self.kind} {self.index})"


def _zoo_model(model: Any) -> Any:
    if model is not None:
        return model
    from . import zoo

    path = zoo.weights_dir() / "judge.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"the zoo's judge weights are missing ({path}); rebuild the zoo with `python -m tools.zoo.train` "
            "(from a clone of the repository)"
        )
    return zoo.load_judge()


def zoo_digit_judge(concept: str, *, model: Any = None) -> ZooDigitJudge:
    """True where an image shows ``concept``: a digit (``"three"``, ``"trois"``, ``"3"``...) or a colour.

    ``model`` is a ``DigitJudge`` (default: the zoo's trained judge).
    """
    return ZooDigitJudge(concept, _zoo_model(model))


def zoo_label_judge(kind: str = "digit", *, model: Any = None) -> Judge:
    """A labelling judge: the English digit word (``kind="digit"``) or colour name (``"color"``) per image."""
    from .zoo import world

    if kind not in ("digit", "color"):
        raise ValueError(f"kind must be 'digit' or 'color', got {kind!r}")
    judge_model = _zoo_model(model)
    names = world.DIGIT_WORDS["en"] if kind == "digit" else list(world.COLORS)

    def judge(images: torch.Tensor) -> list[str]:
        digits, colors = judge_model.predict(images)
        return [names[int(i)] for i in (digits if kind == "digit" else colors)]

    judge.__name__ = f"zoo_label_judge({kind!r})"
    return judge
