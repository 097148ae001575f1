"""The zoo's judges: its trained digit and colour reader as a boolean or labelling judge (offline).

    judge = zoo_digit_judge("three")            # True where an image shows a 3
    labels = zoo_label_judge("digit")(images)   # "three", "eight", ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Judge, JudgeRecord

if TYPE_CHECKING:
    import torch

__all__ = ["ZooDigitJudge", "zoo_digit_judge", "zoo_label_judge"]


class ZooDigitJudge:
    """The zoo's digit judge as a boolean judge for one concept (a digit in any language, or a colour)."""

    def __init__(self, concept: str, model: Any) -> None:
        from ..zoo import world

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
        self.record = _zoo_record(self.__name__, (concept,))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        digits, colors = self.model.predict(images)
        return (colors if self.kind == "color" else digits) == self.index

    def __repr__(self) -> str:
        return f"ZooDigitJudge({self.concept!r}, {self.kind} {self.index})"


def _zoo_record(name: str, classes: tuple[str, ...]) -> JudgeRecord:
    """The zoo judge's record: the package version and the shipped weights' SHA-256."""
    from .. import __version__, zoo
    from ..hashing import weights_sha256

    path = zoo.weights_dir() / "judge.safetensors"
    return JudgeRecord(name=name, version=f"pytest-uoc {__version__} (zoo judge)", weights=str(path),
                       weights_sha256=weights_sha256(path) if path.is_file() else None, classes=classes)


def _zoo_model(model: Any) -> Any:
    if model is not None:
        return model
    from .. import zoo

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
    from ..zoo import world

    if kind not in ("digit", "color"):
        raise ValueError(f"kind must be 'digit' or 'color', got {kind!r}")
    judge_model = _zoo_model(model)
    names = world.DIGIT_WORDS["en"] if kind == "digit" else list(world.COLORS)

    def judge(images: torch.Tensor) -> list[str]:
        digits, colors = judge_model.predict(images)
        return [names[int(i)] for i in (digits if kind == "digit" else colors)]

    judge.__name__ = f"zoo_label_judge({kind!r})"
    judge.record = _zoo_record(judge.__name__, tuple(names))  # type: ignore[attr-defined]
    return judge
