"""The digits world: concepts, colours, number words and prompt templates.

Each image shows a handwritten digit (the object concept) drawn in a colour
(the style concept). Prompts name the digit with number words in English,
French, German and Spanish, or as a numeral, in several templates, so that
paraphrase and multilingual robustness can be probed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = [
    "COLORS",
    "DIGIT_WORDS",
    "LANGUAGES",
    "all_words",
    "concept_prompts",
    "digit_of_word",
    "paraphrase_prompts",
    "prompt_for",
    "training_prompt",
]

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.15, 0.1),
    "green": (0.15, 0.9, 0.2),
    "blue": (0.2, 0.35, 1.0),
    "yellow": (1.0, 0.9, 0.15),
}

DIGIT_WORDS: dict[str, list[str]] = {
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "fr": ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"],
    "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
    "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"],
}
LANGUAGES = tuple(DIGIT_WORDS)

# Templates used in training; ``{d}`` is the number word or numeral, ``{c}`` the colour.
TEMPLATES_WITH_COLOR = ("a {c} handwritten {d}", "the digit {d} in {c}", "a {c} {d}")
TEMPLATES_NO_COLOR = ("a handwritten {d}", "the digit {d}", "{d}")
COLOR_ONLY = ("a {c} digit", "something {c}")


def digit_of_word(word: str) -> int:
    """The digit a number word or numeral names, in any shipped language."""
    if word.isdigit() and len(word) == 1:
        return int(word)
    for words in DIGIT_WORDS.values():
        if word in words:
            return words.index(word)
    raise ValueError(f"{word!r} is not a digit word; known: {sorted({w for ws in DIGIT_WORDS.values() for w in ws})}")


def prompt_for(digit: int, color: str | None, template: str, word: str | None = None) -> str:
    """Fill one template with a digit (English word unless ``word`` is given) and colour."""
    return template.format(d=word if word is not None else DIGIT_WORDS["en"][digit], c=color or "")


def training_prompt(digit: int, color: str, rng: random.Random) -> str:
    """A random caption of one training image (its digit in any language or as a numeral)."""
    r = rng.random()
    # English half the time, the numeral a fifth, each other language a tenth.
    lang = "en" if rng.random() < 0.625 else rng.choice(LANGUAGES[1:])
    name = str(digit) if rng.random() < 0.2 else DIGIT_WORDS[lang][digit]
    if r < 0.55:
        return rng.choice(TEMPLATES_WITH_COLOR).format(d=name, c=color)
    if r < 0.85:
        return rng.choice(TEMPLATES_NO_COLOR).format(d=name)
    return rng.choice(COLOR_ONLY).format(c=color)


def concept_prompts(concept: str) -> list[str]:
    """The canonical English prompts of a concept (a digit word or a colour)."""
    if concept in COLORS:
        return [f"a {concept} handwritten {w}" for w in DIGIT_WORDS["en"]] + [f"a {concept} digit"]
    digit = digit_of_word(concept)
    word = DIGIT_WORDS["en"][digit]
    return [f"a handwritten {word}", f"the digit {digit}"] + [f"a {c} handwritten {word}" for c in COLORS]


def rival_prompts(concept: str) -> list[str]:
    """Every other digit's (or colour's) canonical prompts: what a zero-shot judge weighs the concept against."""
    if concept in COLORS:
        rivals = [c for c in COLORS if c != concept]
    else:
        digit = digit_of_word(concept)
        rivals = [w for d, w in enumerate(DIGIT_WORDS["en"]) if d != digit]
    return [p for r in rivals for p in concept_prompts(r)]


def paraphrase_prompts(concept: str) -> dict[str, list[str]]:
    """Prompts asking for a concept in other words and other languages."""
    if concept in COLORS:
        return {"paraphrase": [f"the digit {d} in {concept}" for d in range(10)] + [f"something {concept}"]}
    digit = digit_of_word(concept)
    out = {"paraphrase": [f"the digit {digit}", f"{DIGIT_WORDS['en'][digit]}", f"a {digit}"]}
    for lang in LANGUAGES[1:]:
        word = DIGIT_WORDS[lang][digit]
        out[lang] = [f"a handwritten {word}", f"{word}", f"a red {word}"]
    return out


def all_words(extra: Sequence[str] = ()) -> list[str]:
    """Every word the zoo's tokenizer must know as a whole."""
    words = [w for ws in DIGIT_WORDS.values() for w in ws] + list(COLORS)
    templates = TEMPLATES_WITH_COLOR + TEMPLATES_NO_COLOR + COLOR_ONLY
    words += [t.format(d="", c="") for t in templates]
    words += ["digit", "number", "handwritten", "the", "in", "a", "something", "picture", "of"]
    return [*words, *extra]


def names_of(digit: int) -> list[str]:
    """Every way the training captions name a digit: the numeral and its words."""
    return [str(digit)] + [DIGIT_WORDS[lang][digit] for lang in LANGUAGES]


def captions(digit: int, color: str) -> list[str]:
    """Every caption the training distribution can give an image."""
    out = [t.format(d=n, c=color) for t in TEMPLATES_WITH_COLOR for n in names_of(digit)]
    out += [t.format(d=n) for t in TEMPLATES_NO_COLOR for n in names_of(digit)]
    out += [t.format(c=color) for t in COLOR_ONLY]
    return sorted(set(out))


def mentions(prompt: str, concept: str) -> bool:
    """True when ``prompt`` names ``concept`` (a colour, or a digit in any language)."""
    words = prompt.lower().split()
    if concept in COLORS:
        return concept in words
    return any(name in words for name in names_of(digit_of_word(concept)))


def swap_concept(prompt: str, concept: str, replacement: str | None) -> str:
    """``prompt`` with the concept's word replaced (same language), or deleted when None."""
    words = prompt.split()
    if concept in COLORS:
        out = [replacement if w == concept else w for w in words]
    else:
        digit = digit_of_word(concept)
        out = []
        for w in words:
            if w == str(digit):
                out.append(str(digit_of_word(replacement)) if replacement else None)
            elif w in names_of(digit):
                lang = next(lang for lang in LANGUAGES if DIGIT_WORDS[lang][digit] == w)
                out.append(DIGIT_WORDS[lang][digit_of_word(replacement)] if replacement else None)
            else:
                out.append(w)
    return " ".join(w for w in out if w)
