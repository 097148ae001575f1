"""A concept under test: its name, the prompts that ask for it, what must be retained.

Prompts come from the ``uoc_concept`` marker, a text file (one prompt per
line, ``#`` starts a comment), or, for the zoo's concepts, the zoo's
canonical prompts. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Concept", "read_prompt_file"]


def read_prompt_file(path: str | Path) -> tuple[str, ...]:
    """Prompts from a text file: one per line, blank lines and ``#`` comments skipped."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompt file does not exist: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"prompt file {file} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                         "expected one prompt per line") from None
    except OSError as exc:
        raise ValueError(f"prompt file {file} cannot be read: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise ValueError(f"prompt file {file} holds NUL bytes (a binary file?); expected one prompt per line")
    prompts = tuple(
        line.strip() for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not prompts:
        raise ValueError(f"prompt file {file} holds no prompts")
    return prompts


def _prompt_list(value: Any, *, what: str, base: Path | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, Path) or isinstance(value, str) and value.endswith(".txt"):
        path = Path(value)
        if base is not None and not path.is_absolute():
            path = base / path
        return read_prompt_file(path)
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence):
        raise TypeError(f"{what} must be a list of strings or a .txt file, got {type(value).__name__}")
    items = tuple(value)
    bad = [p for p in items if not isinstance(p, str) or not p.strip()]
    if bad:
        raise TypeError(f"every entry of {what} must be a non-empty string, got {bad[0]!r}")
    return items


def default_prompts(name: str) -> tuple[str, ...]:
    """Prompts for a concept nobody listed: the zoo's canonical ones, else the name itself."""
    from .zoo import world

    try:
        return tuple(world.concept_prompts(name))
    except ValueError:
        return (name,)


def _check_distinct(prompts: Sequence[Any], *, what: str) -> None:
    """Raise ValueError for an empty prompt or one given twice (its images would count twice)."""
    seen: dict[str, str] = {}
    for prompt in prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{what}: every prompt must be a non-empty string, got {prompt!r}")
        key = " ".join(prompt.lower().split())  # the tokenizer ignores case and spacing
        if key in seen:
            raise ValueError(f"{what}: {prompt!r} is given twice (as {seen[key]!r}); each prompt's images would "
                             "count twice and get round the seed minimum: list each prompt once")
        seen[key] = prompt


@dataclass(frozen=True)
class Concept:
    """What one test probes: the concept, its prompts, and retain prompts.

    ``anchors`` are the prompts the calibration nulls ask the original for instead
    (one per prompt; see ``pytest_uoc.anchors``): given ones are checked, None derives
    them from the prompts. ``words`` are extra words that name the concept (synonyms),
    removed from derived anchors and refused in given ones.
    """

    name: str
    prompts: tuple[str, ...]
    retain: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None
    anchors: tuple[str, ...] | None = None
    words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a concept needs a non-empty name, got {self.name!r}")
        if isinstance(self.prompts, str):
            object.__setattr__(self, "prompts", (self.prompts,))
        if not self.prompts:
            raise ValueError(f"concept {self.name!r} has no prompts")
        _check_distinct(self.prompts, what=f"concept {self.name!r} prompts")
        if self.retain:
            _check_distinct(self.retain, what=f"concept {self.name!r} retain prompts")
        if isinstance(self.words, str):
            object.__setattr__(self, "words", (self.words,))
        if self.anchors is not None:
            from .anchors import check_anchors

            object.__setattr__(self, "anchors", check_anchors(self.anchors, self.prompts, self.concept_words,
                                                              concept=self.name))

    @property
    def concept_words(self) -> tuple[str, ...]:
        """The words that name the concept (see ``anchors.concept_words``)."""
        from .anchors import concept_words

        return concept_words(self.name, self.words)

    @property
    def anchor_prompts(self) -> tuple[str, ...]:
        """One anchor per prompt: the given ones, else derived (the concept's words removed)."""
        if self.anchors is not None:
            return self.anchors
        from .anchors import derive_anchors

        return derive_anchors(self.prompts, self.concept_words)

    def anchor_problems(self) -> list[str]:
        """What makes an anchor unusable for the calibration nulls, one line per prompt (empty: none).

        The calibrated rule checks this before any image (``anchors.anchor_problem``).
        """
        from .anchors import anchor_problem

        how = "derived" if self.anchors_derived else "given"
        problems = []
        for prompt, anchor in zip(self.prompts, self.anchor_prompts, strict=True):
            why = anchor_problem(prompt, anchor, self.concept_words)
            if why is not None:
                problems.append(f"prompt {prompt!r}: its {how} anchor {anchor!r} {why}")
        return problems

    def check_anchor_problems(self) -> None:
        """Raise ValueError naming every unusable anchor and the fix (``anchor=`` or ``concept_words=``)."""
        problems = self.anchor_problems()
        if problems:
            raise ValueError(
                f"concept {self.name!r}: the calibration nulls need, per prompt, an anchor that is the prompt "
                "without the concept: " + "; ".join(problems) + ". Give anchor= (one per prompt; ';'-separated "
                "in --uoc-anchor / --anchor) or concept_words= (uoc audit: --concept-word; every word that names "
                "the concept, e.g. a full name)")

    @property
    def anchors_derived(self) -> bool:
        """True when the anchors were derived from the prompts, not given."""
        return self.anchors is None

    @classmethod
    def from_marker(cls, args: Sequence[Any], kwargs: dict[str, Any], *, base: Path | None = None) -> Concept:
        """Build from ``@pytest.mark.uoc_concept(name, prompts=..., retain=..., seeds=...)``."""
        if len(args) != 1 or not isinstance(args[0], str):
            raise TypeError(
                "uoc_concept takes the concept name as its one positional argument, "
                f"e.g. @pytest.mark.uoc_concept('three', prompts=[...]); got args {tuple(args)!r}"
            )
        prompts = _prompt_list(kwargs.get("prompts"), what="prompts", base=base) or default_prompts(args[0])
        retain = _prompt_list(kwargs.get("retain"), what="retain", base=base)
        seeds = kwargs.get("seeds")
        if seeds is not None:
            from .config import SettingError, parse_seeds

            try:
                seeds = parse_seeds(seeds)
            except SettingError as exc:
                raise ValueError(f"uoc_concept seeds={seeds!r}: {exc}") from None
        anchors = kwargs.get("anchor")
        if isinstance(anchors, str):  # as the option: one anchor, or one per prompt separated by ';'
            from .config import SettingError, parse_anchors

            try:
                anchors = parse_anchors(anchors)
            except SettingError as exc:
                raise ValueError(f"uoc_concept anchor={anchors!r}: {exc}") from None
        words = kwargs.get("concept_words", ())
        return cls(args[0], prompts, retain, seeds, anchors, tuple([words] if isinstance(words, str) else words))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "prompts": list(self.prompts), "retain": list(self.retain),
                "seeds": None if self.seeds is None else list(self.seeds),
                "anchors": list(self.anchor_prompts), "anchors_derived": self.anchors_derived}
