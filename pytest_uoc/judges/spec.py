"""``--uoc-judge SPEC``: which judge counts "shows the concept", named in one string and checked before any image.

Forms (option, ini ``uoc_judge``, ``UOC_JUDGE``, marker ``judge=``, ``uoc audit --judge``):

- ``auto``: the zoo's judge for the zoo's concepts on the zoo's original, else none (the default);
- ``none``: no judge: the concept classifier trained on the training seeds decides;
- ``zoo``: the zoo's digit and colour judge;
- ``nudenet``: NudeNet's shipped detector with UnlearnDiffAtk's classes and threshold (extra ``nudity``);
- ``safety-checker``: the original SD folder's own ``safety_checker`` (the folder must have one);
- ``clip:PATH``: CLIP zero-shot from a local transformers CLIP folder: the concept's prompts against its anchors
  (``clip:zoo``: the embedded zoo's tiny CLIP);
- ``imagenet:PATH``: an ImageNet classifier from local weights: top-1 in the classes named like the concept;
- ``module:factory``: ``factory(concept)`` returns the judge (``concept`` has ``name``, ``prompts``, ``anchor_prompts``).

A spec that cannot work (an unknown word, a missing path, a missing extra, a factory that
cannot be imported) is refused when it is read, with the form expected. No torch at import.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["JUDGE_FORMS", "JudgeSpec", "build_judge", "check_judge_for_original", "parse_judge_spec"]

#: The words a spec may be; ``clip:``, ``imagenet:`` and ``module:factory`` take a target.
_WORDS = ("auto", "none", "zoo", "nudenet", "safety-checker")
JUDGE_FORMS = "auto, none, zoo, nudenet, safety-checker, clip:PATH, imagenet:PATH or module:factory"


@dataclass(frozen=True)
class JudgeSpec:
    """A parsed judge spec: its kind (a word, ``clip``, ``imagenet`` or ``factory``) and target."""

    kind: str
    target: str | None = None

    def __str__(self) -> str:
        if self.kind == "factory":
            return str(self.target)
        return self.kind if self.target is None else f"{self.kind}:{self.target}"


def parse_judge_spec(text: Any) -> JudgeSpec:
    """The ``JudgeSpec`` of ``text``; ValueError naming the value and the forms expected when it cannot work."""
    if isinstance(text, JudgeSpec):
        return text
    if not isinstance(text, str):
        raise ValueError(f"a judge spec is a string ({JUDGE_FORMS}), got {text!r}")
    value = text.strip()
    word = value.lower().replace("_", "-")
    if word in _WORDS:
        if word == "nudenet":
            from .nudenet import nudenet_available

            problem = nudenet_available()
            if problem:
                raise ValueError(f"judge {value!r}: {problem}")
        return JudgeSpec(word)
    head, sep, rest = value.partition(":")
    if not sep or not head or not rest:
        raise ValueError(f"unknown judge {value!r}; expected {JUDGE_FORMS}")
    if head.lower() == "clip" and rest == "zoo":  # the embedded zoo's tiny CLIP
        from ..zoo.clip import clip_dir

        try:
            return JudgeSpec("clip", str(clip_dir()))
        except FileNotFoundError as exc:
            raise ValueError(f"judge {value!r}: {exc}") from None
    if head.lower() in ("clip", "imagenet"):
        path = Path(rest).expanduser()
        if not path.exists():
            raise ValueError(f"judge {value!r}: no file or folder at {rest!r}; give the local weights of the "
                             f"{head.lower()} judge (nothing is downloaded)")
        if head.lower() == "clip" and not (path.is_dir() and (path / "config.json").is_file()):
            raise ValueError(f"judge {value!r}: {rest!r} is not a transformers CLIP folder (a folder with "
                             "config.json, the weights and the tokenizer files)")
        return JudgeSpec(head.lower(), str(path))
    if head.lower() in _WORDS:
        raise ValueError(f"judge {value!r}: {head.lower()!r} takes no argument; expected {JUDGE_FORMS}")
    _factory(value)  # imports it now: a typo is a usage error, not a failed test
    return JudgeSpec("factory", value)


def _factory(value: str) -> Any:
    module_name, _, attribute = value.partition(":")
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ValueError(f"judge {value!r}: no module {module_name!r} to import (expected {JUDGE_FORMS})")
    module = importlib.import_module(module_name)
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"judge {value!r}: module {module_name!r} has no attribute {attribute!r}")
    if not callable(factory):
        raise ValueError(f"judge {value!r}: {attribute!r} is not callable; give a factory(concept) -> judge")
    return factory


def clip_others(concept: Any) -> list[str]:
    """What a CLIP judge weighs the concept's prompts against: its anchors and, for the zoo's concepts, the other
    digits' (or colours') prompts (the zoo's tiny CLIP never read a caption without a digit or colour in it)."""
    others = list(dict.fromkeys(concept.anchor_prompts))
    from ..factory import zoo_concept

    if zoo_concept(concept.name):
        from ..zoo import world

        others += [p for p in world.rival_prompts(concept.name) if p not in others]
    return [p for p in others if p not in set(concept.prompts)]


def check_judge_for_original(spec: JudgeSpec, original: str | None) -> None:
    """ValueError when the spec cannot work with this original (``safety-checker`` needs its SD folder's checker)."""
    if spec.kind != "safety-checker":
        return
    folder = Path(str(original or ""))
    missing = [name for name in ("safety_checker", "feature_extractor") if not (folder / name).is_dir()]
    if str(original or "").startswith("zoo:") or not folder.is_dir() or missing:
        raise ValueError(
            f"judge 'safety-checker' reads the original SD folder's own safety checker, but the original "
            f"{original!r} has no {' or '.join(missing or ['safety_checker'])} folder; give the SD folder as it "
            "ships (with safety_checker/ and feature_extractor/), or another judge")


def build_judge(spec: JudgeSpec | str, concept: Any, *, original: str | None, zoo_original: bool) -> tuple[Any, str | None]:
    """The judge a spec names for ``concept``, and a key that names it in caches (None, None: no judge).

    ``original`` is the original's location (the safety checker's folder); ``zoo_original``:
    whether the original is the zoo's (``auto`` picks the zoo judge then).
    """
    spec = parse_judge_spec(spec)
    if spec.kind == "auto":
        from ..factory import default_judge

        return default_judge(concept, zoo_original)
    if spec.kind == "none":
        return None, None
    if spec.kind == "zoo":
        from .zoo import zoo_digit_judge

        return zoo_digit_judge(concept.name), f"zoo:{concept.name}"
    if spec.kind == "nudenet":
        from .nudenet import nudenet_judge

        judge: Any = nudenet_judge()
    elif spec.kind == "safety-checker":
        check_judge_for_original(spec, original)
        from .safety import safety_checker_judge

        judge = safety_checker_judge(str(original))
    elif spec.kind == "clip":
        from .clip import clip_judge

        judge = clip_judge(str(spec.target), concept=list(concept.prompts), others=clip_others(concept))
    elif spec.kind == "imagenet":
        from .imagenet import imagenet_classes_for, imagenet_judge

        judge = imagenet_judge(str(spec.target), classes=imagenet_classes_for(concept.name, str(spec.target)))
    else:
        judge = _factory(str(spec.target))(concept)
        if not callable(judge):
            raise ValueError(f"judge {spec}: the factory returned {type(judge).__name__}, not a judge(images)")
    from .base import judge_record

    record = judge_record(judge)
    return judge, f"{spec}:{concept.name}:{record.weights_sha256 or ''}"
