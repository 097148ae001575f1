"""GitHub Actions' step summary and the JUnit properties: what a reviewer of a pull request sees."""

from __future__ import annotations

import pytest
from uoc_test_helpers import BLIND_GATE, BLIND_JUDGE_MODULE, FAST_GATE_OPTIONS, run_blind_gate

from pytest_uoc.summary import append_step_summary, markdown_summary

ROWS = [
    {"test": "t.py::test_gold", "model": "gold", "concept": "three", "outcome": "passed", "verdict": "forgotten",
     "gate": "not_retrievable", "value": 0.012, "limit": 0.2, "limit_kind": "max", "reason": "all within"},
    {"test": "t.py::test_esd", "model": "esd|x", "concept": "three", "outcome": "failed", "verdict": "concealed",
     "gate": "not_retrievable", "value": 0.41, "limit": 0.2, "limit_kind": "max",
     "reason": "at ψ=0.15 the excess over the upper null is 0.41"},
]


def test_markdown_summary_has_the_table_and_the_failing_reasons():
    text = markdown_summary(ROWS)
    lines = text.splitlines()
    assert lines[0] == "### pytest-uoc: 1 of 2 concept tests passed"
    assert "| test_esd | esd\\|x | three | **failed** | concealed | not_retrievable | 0.410 | ≤ 0.2 |" in lines
    assert "| test_gold | gold | three | passed | forgotten | not_retrievable | 0.012 | ≤ 0.2 |" in lines
    assert lines[-1] == "- `t.py::test_esd`: concealed: at ψ=0.15 the excess over the upper null is 0.41"


def test_append_only_when_the_variable_is_set(tmp_path):
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    assert append_step_summary(ROWS, {}) is None
    assert append_step_summary(ROWS, {"GITHUB_STEP_SUMMARY": str(target)}) == target
    text = target.read_text()
    assert text.startswith("earlier step\n### pytest-uoc: 1 of 2")  # appended, the earlier step's kept
    with pytest.raises(OSError):
        append_step_summary(ROWS, {"GITHUB_STEP_SUMMARY": str(tmp_path / "missing" / "x.md")})


def test_the_plugin_appends_the_summary_and_records_junit_properties(pytester: pytest.Pytester, monkeypatch):
    pytester.makepyfile(my_judges=BLIND_JUDGE_MODULE)
    pytester.makepyfile(test_gate=BLIND_GATE)
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-esd-three",
                                *FAST_GATE_OPTIONS, f"--uoc-cache-dir={pytester.path / 'cache'}", f"--junitxml={junit}")
    result.assert_outcomes(failed=1)
    text = summary.read_text()
    assert "### pytest-uoc: 0 of 1 concept tests passed" in text
    assert "| test_gate | zoo:digits-esd-three | three | **failed** | inconclusive |" in text
    assert ("- `test_gate.py::test_gate`: inconclusive: "
            "the judge does not see this concept") in text
    xml = junit.read_text()
    assert '<property name="uoc_verdict" value="inconclusive"' in xml and 'name="uoc_value"' in xml


def test_an_unwritable_summary_does_not_change_the_outcome(pytester: pytest.Pytester, monkeypatch):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.uoc_concept("three", prompts=["a handwritten three"])
        def test_fails_before_a_probe():
            raise AssertionError("no probe")
    """)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "no" / "such" / "folder.md"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-esd-three")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*could not append the CI step summary ($GITHUB_STEP_SUMMARY)*"])


def test_pytest_html_rows_carry_the_gates_pictures(pytester: pytest.Pytester) -> None:
    page = pytester.path / "pytest-html.html"
    result = run_blind_gate(pytester, f"--html={page}", "--self-contained-html")
    result.assert_outcomes(failed=1)
    text = page.read_text()
    assert "data:image/png;base64," in text and "image_grid.png" in text and "calibration.png" in text
