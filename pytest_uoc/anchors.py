"""Anchor prompts: each concept prompt with the concept's words removed.

The calibration nulls (``scoring.calibration``) let the original model finish a
hand-off without being asked for the concept; the *anchor* is what it is asked
for instead: "a painting by Van Gogh" → "a painting", "a red handwritten two" →
"a handwritten two". An anchor must not name the concept, or the null would
draw it on request and calibrate nothing. No torch here.

Default derivation (``derive_anchor``): remove every concept word (whole words,
case-insensitive; multi-word names as a phrase), then drop the connecting words
the removal leaves dangling at the end ("by", "of", "in the style of", ...), and
collapse spaces. The concept words are the words of the concept's name, plus
any ``concept_words`` given, plus, for the embedded zoo's digit concepts, every
numeral and number word of that digit ("three" → "3", "trois", "drei", "tres").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["anchor_problem", "check_anchors", "concept_words", "derive_anchor", "derive_anchors", "names_concept"]

#: Words a removal can leave dangling at the end of a prompt ("a painting by", "in the style of").
_DANGLING = frozenset({
    "a", "an", "the", "by", "of", "in", "on", "with", "from", "and", "or", "featuring", "style",
    "styled", "like", "as", "for", "to", "at", ",", "-",
})


def concept_words(name: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The words and phrases that name a concept: its name, ``extra``, and the zoo's synonyms of a digit."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a concept needs a non-empty name, got {name!r}")
    words = [name.strip().lower()]
    for word in extra:
        if not isinstance(word, str) or not word.strip():
            raise TypeError(f"every concept word must be a non-empty string, got {word!r}")
        words.append(word.strip().lower())
    try:
        from .zoo import world

        digit = world.digit_of_word(name.strip().lower())
    except (ValueError, ImportError):
        digit = None
    if digit is not None:
        words += [w.lower() for w in world.names_of(digit)]
    # Longest first, so a phrase goes before any word inside it.
    return tuple(sorted(dict.fromkeys(words), key=lambda w: (-len(w), w)))


def _pattern(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w])" + r"\s+".join(re.escape(part) for part in word.split()) + r"(?![\w])",
                      re.IGNORECASE)


def names_concept(prompt: str, words: Sequence[str]) -> str | None:
    """The first concept word ``prompt`` contains (whole words, case-insensitive), or None."""
    for word in words:
        if _pattern(word).search(prompt):
            return word
    return None


def derive_anchor(prompt: str, words: Sequence[str]) -> str:
    """``prompt`` with the concept ``words`` removed and the dangling connectors dropped.

    The result can be the empty prompt (a prompt that was only the concept's name).
    """
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a string, got {prompt!r}")
    text = prompt
    for word in words:
        text = _pattern(word).sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    # A connector left dangling before punctuation ("a photo of , detailed") goes with the removed words.
    connectors = "|".join(sorted(w for w in _DANGLING if w.isalpha()))
    text = re.sub(rf"(?:\s+(?:{connectors}))+\s*(?=[,;:.])", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+([,;:.])", r"\1", text)
    text = re.sub(r"([,;:.])(?:\s*[,;:.])+", r"\1", text)
    tokens = text.split(" ")
    tokens = [t for t in tokens if t]
    while tokens and tokens[-1].lower().strip(",.;:") in _DANGLING:
        tokens.pop()
    # A leading "by"/"of" left by a removed first word ("Van Gogh's ..." aside) is dropped too.
    while tokens and tokens[0].lower() in {"by", "of", "in", "with", "and", ",", "-"}:
        tokens.pop(0)
    return " ".join(tokens).strip(" ,;:-")


def derive_anchors(prompts: Sequence[str], words: Sequence[str]) -> tuple[str, ...]:
    """One derived anchor per prompt (see ``derive_anchor``)."""
    return tuple(derive_anchor(p, words) for p in prompts)


def check_anchors(anchors: object, prompts: Sequence[str], words: Sequence[str], *, concept: str) -> tuple[str, ...]:
    """Anchors given by a user, checked: one string for all prompts or one per prompt, none naming the concept.

    Raises TypeError for a non-string anchor and ValueError for a wrong count or an
    anchor that still names the concept (both naming the bad value and what was expected).
    """
    if isinstance(anchors, str):
        values = [anchors] * len(prompts)
    elif isinstance(anchors, list | tuple):
        values = list(anchors)
        bad = [a for a in values if not isinstance(a, str)]
        if bad:
            raise TypeError(f"every anchor must be a prompt string, got {bad[0]!r}")
        if len(values) == 1:
            values = values * len(prompts)
        if len(values) != len(prompts):
            raise ValueError(
                f"anchor= needs one anchor for all prompts or one per concept prompt ({len(prompts)}: "
                f"{list(prompts)}), got {len(values)}: {values}"
            )
    else:
        raise TypeError(f"anchor must be a prompt string or a list of them, got {anchors!r}")
    for anchor, prompt in zip(values, prompts, strict=True):
        hit = names_concept(anchor, words)
        if hit is not None:
            raise ValueError(
                f"anchor {anchor!r} (for prompt {prompt!r}) still names the concept {concept!r} "
                f"(it contains {hit!r}): an anchor is the prompt with the concept's words removed, "
                f"e.g. {derive_anchor(prompt, words)!r}"
            )
    return tuple(v.strip() for v in values)


#: What a removal leaves at the start of an anchor when the concept was a possessive ("Van Gogh's ...").
_POSSESSIVE = re.compile(r"^\s*['’]s?\b")


def anchor_problem(prompt: str, anchor: str, words: Sequence[str]) -> str | None:
    """Why ``anchor`` cannot stand in for ``prompt`` in the calibration nulls, or None when it can.

    - equal to its prompt (case and spacing aside): the prompt names no concept word, so
      the upper and lower nulls use one prompt as positive and negative, guidance cancels,
      and both nulls show the concept ("Starry Night" for Van Gogh);
    - still names the concept;
    - a fragment: a dangling possessive ("'s self-portrait") or what remains of a name —
      a capitalised word right before or after the removed words ("a painting by Vincent").
    """
    if " ".join(anchor.lower().split()) == " ".join(prompt.lower().split()):
        return "is the prompt itself: the prompt holds no concept word, so both nulls would be asked for it"
    hit = names_concept(anchor, words)
    if hit is not None:
        return f"still names the concept (it contains {hit!r})"
    if _POSSESSIVE.search(anchor):
        return "starts with a dangling possessive left by the removed words"
    text = prompt
    for word in words:  # longest first, as derive_anchor removes them
        for match in _pattern(word).finditer(text):
            before = text[:match.start()].split()
            after = text[match.end():].split()
            left = before[-1] if before else ""
            right = after[0] if after else ""
            if left[:1].isupper() and len(before) > 1 and left.isalpha():
                return f"keeps {left!r}, what remains of a name around the removed {word!r}"
            if right[:1].isupper() and right.rstrip(",.;:").isalpha():
                return f"keeps {right!r}, what remains of a name around the removed {word!r}"
        text = _pattern(word).sub(" \x00 ", text)  # removed: no longer a neighbour of a shorter word
    return None
