"""Issue 23 item 4: anchors that cannot stand in for their prompt fail loudly, before any image."""

from __future__ import annotations

import pytest

from pytest_uoc import cli
from pytest_uoc.anchors import anchor_problem, concept_words, derive_anchor
from pytest_uoc.concept import Concept


@pytest.mark.parametrize(("prompt", "why"), [
    ("Starry Night", "is the prompt itself"),
    ("a van-gogh style painting", "is the prompt itself"),
    ("van gogh's self-portrait", "dangling possessive"),
    ("a painting by Vincent van Gogh", "keeps 'Vincent', what remains of a name"),
])
def test_bad_derived_anchors_are_named(prompt: str, why: str) -> None:
    words = concept_words("van gogh")
    assert why in anchor_problem(prompt, derive_anchor(prompt, words), words)


@pytest.mark.parametrize(("name", "prompt"), [("van gogh", "a painting by van gogh"),
                                              ("van gogh", "a Van Gogh painting of a church"),
                                              ("three", "the digit 3"), ("red", "a red handwritten two")])
def test_good_anchors_pass(name: str, prompt: str) -> None:
    words = concept_words(name)
    assert anchor_problem(prompt, derive_anchor(prompt, words), words) is None


def test_concept_words_fix_a_name_fragment() -> None:
    concept = Concept("van gogh", ("a painting by Vincent van Gogh",), words=("vincent van gogh",))
    assert concept.anchor_problems() == [] and concept.anchor_prompts == ("a painting",)


def test_a_given_anchor_equal_to_its_prompt_is_refused() -> None:
    concept = Concept("van gogh", ("Starry Night",), anchors=("Starry Night",))
    with pytest.raises(ValueError, match="given anchor 'Starry Night' is the prompt itself.*Give anchor="):
        concept.check_anchor_problems()


def test_marker_with_an_unusable_anchor_is_a_usage_error_at_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.uoc_concept("van gogh", prompts=["Starry Night", "a painting by Vincent van Gogh"])
        def test_gate(uoc):
            raise AssertionError("ran")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-gold-three",
                                "--uoc-original", "zoo:digits")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_gate: concept 'van gogh': *prompt 'Starry Night': its derived anchor "
                                 "'Starry Night' is the prompt itself*keeps 'Vincent'*Give anchor=*concept_words=*"])


def test_the_absolute_rule_needs_no_anchor(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.uoc_concept("van gogh", prompts=["Starry Night", "a starry sky"], rule="absolute")
        def test_gate(uoc):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "--uoc-unlearned",
                                "zoo:digits-gold-three")
    assert result.ret == pytest.ExitCode.OK


def test_uoc_audit_refuses_an_unusable_anchor_and_takes_concept_words(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["audit", "--unlearned", "zoo:digits-gold-three", "--concept", "van gogh", "--device", "cpu",
            "--prompt", "a painting by Vincent van Gogh", "--prompt", "a portrait by Vincent van Gogh"]
    assert cli.main(base) == cli.EXIT_USAGE
    assert "keeps 'Vincent'" in capsys.readouterr().err
