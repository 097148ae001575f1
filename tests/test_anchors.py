"""Anchor prompts: derived by removing the concept's words, checked when given (pytest_uoc.anchors)."""

from __future__ import annotations

import pytest

from pytest_uoc.anchors import (
    check_anchors,
    concept_words,
    derive_anchor,
    derive_anchors,
    names_concept,
)
from pytest_uoc.concept import Concept


@pytest.mark.parametrize(("name", "prompt", "anchor"), [
    ("Van Gogh", "a painting by Van Gogh", "a painting"),
    ("Van Gogh", "a starry night in the style of van gogh", "a starry night"),
    ("Van Gogh", "Van Gogh", ""),
    ("nudity", "a photo of nudity, detailed", "a photo, detailed"),
    ("red", "a red handwritten two", "a handwritten two"),
    ("red", "a red digit", "a digit"),
    ("three", "the digit 3", "the digit"),
    ("three", "a handwritten trois", "a handwritten"),
])
def test_derived_anchor_drops_the_concept_words_and_dangling_connectors(name, prompt, anchor):
    assert derive_anchor(prompt, concept_words(name)) == anchor


def test_zoo_digits_count_every_numeral_and_number_word_as_the_concept():
    words = concept_words("three")
    assert {"three", "3", "trois", "drei", "tres"} <= set(words)
    assert concept_words("Van Gogh") == ("van gogh",)
    assert concept_words("Van Gogh", ["starry night"]) == ("starry night", "van gogh")


def test_whole_words_only():
    assert names_concept("a redwood forest", concept_words("red")) is None
    assert names_concept("a Red car", concept_words("red")) == "red"
    assert derive_anchors(["a redwood tree", "red"], concept_words("red")) == ("a redwood tree", "")


def test_given_anchors_one_for_all_or_one_per_prompt():
    prompts = ("a red handwritten two", "a red digit")
    words = concept_words("red")
    assert check_anchors("a digit", prompts, words, concept="red") == ("a digit", "a digit")
    assert check_anchors(["a two", "a digit"], prompts, words, concept="red") == ("a two", "a digit")


def test_an_anchor_naming_the_concept_is_a_clear_error():
    with pytest.raises(ValueError, match=r"anchor 'a red digit' .* still names the concept 'red'.*e\.g\. 'a digit'"):
        check_anchors(["a two", "a red digit"], ("a red two", "a red digit"), concept_words("red"), concept="red")
    with pytest.raises(ValueError, match="contains '3'"):
        Concept("three", ("the digit 3",), anchors="the digit 3")


def test_a_wrong_anchor_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"one per concept prompt \(3: .*got 2"):
        check_anchors(["a", "b"], ("x one", "x two", "x three"), concept_words("x"), concept="x")
    with pytest.raises(TypeError, match="every anchor must be a prompt string"):
        check_anchors(["a", 3], ("p one", "p two"), concept_words("x"), concept="x")
    with pytest.raises(TypeError, match="anchor must be a prompt string or a list"):
        check_anchors(3, ("p one",), concept_words("x"), concept="x")


def test_concept_carries_derived_or_given_anchors_into_its_dict():
    derived = Concept("red", ("a red handwritten two", "a red digit"))
    assert derived.anchor_prompts == ("a handwritten two", "a digit") and derived.anchors_derived
    assert derived.to_dict()["anchors"] == ["a handwritten two", "a digit"]
    given = Concept.from_marker(["red"], {"prompts": ["a red two"], "anchor": "a two"})
    assert given.anchor_prompts == ("a two",) and not given.anchors_derived
    synonym = Concept.from_marker(["Van Gogh"], {"prompts": ["a painting by Vincent"], "concept_words": ["vincent"]})
    assert synonym.anchor_prompts == ("a painting",)
