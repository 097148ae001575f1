"""Assertions as users see them: failure text, summary table, JSON report, JUnit, xdist (pytester).

A fake probe with known CCS curves (real ``CCSCurve`` and real ``decide``:
``uoc_test_helpers.FAKE_PROBE_CONFTEST``) makes the verdicts deterministic; the
end-to-end test at the bottom runs the verbatim README example on tiny real
models on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from uoc_test_helpers import FAKE_PROBE_CONFTEST, FAKE_UOC

FAKE_CONFTEST = FAKE_PROBE_CONFTEST + FAKE_UOC

TESTS = '''
import pytest
from pytest_uoc import assert_concept_not_retrievable

@pytest.mark.uoc_concept("three", model="concealer")
def test_concealer():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)

@pytest.mark.uoc_concept("three", model="forgetter")
def test_forgetter():
    verdict = assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
    assert verdict.kind == "forgotten"
'''


@pytest.fixture
def fake_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(test_gate=TESTS)
    return pytester


def test_failure_reads_like_pytest(fake_suite: pytest.Pytester) -> None:
    result = fake_suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*concept 'three' is CONCEALED: partial diffusion retrieves the concept*ψ=0.35*",
        "*psi | *CCS | *95% CI*| limit",
        "*0.000 | *0.050 | *[[]0.010, 0.090]* | *0.20",
        "*0.350 | *0.450 | *[[]0.410, 0.490]* | *0.20  <- retrieved",
        "*classifier held-out accuracy: 0.950 (floor 0.75, resnet18)",
        "*smallest psi that retrieves the concept: 0.350",
        "*written: *ccs_curve.png",
        "*written: *image_grid.png",
    ])
    # __tracebackhide__ and pytrace=False: the user sees their own test, not our internals.
    result.stdout.no_fnmatch_line("*assertions.py*")


def test_terminal_summary_has_one_row_per_concept_test(fake_suite: pytest.Pytester) -> None:
    result = fake_suite.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([
        "*pytest-uoc: unlearning or concealment*",
        "test*model*concept*verdict*CCS@0*CCS@psi*psi*retrieved@*CRS*retention*clf acc*",
        "test_concealer*concealer*three*concealed*0.050*0.800*0.55*0.35*",
        "test_forgetter*forgetter*three*forgotten*0.020*0.090*0.55*-*",
    ])


def test_json_report_schema(fake_suite: pytest.Pytester) -> None:
    report = fake_suite.path / "out" / "uoc.json"
    fake_suite.runpytest("-p", "no:cacheprovider", "--uoc-report", str(report))
    document = json.loads(report.read_text())
    assert document["schema"] == "pytest-uoc/report"
    assert document["schema_version"] == 3
    assert document["settings"]["steps"] == 50
    rows = {row["test"].split("::")[-1]: row for row in document["tests"]}
    assert set(rows) == {"test_concealer", "test_forgetter"}
    assert rows["test_concealer"]["verdict"] == "concealed"
    assert rows["test_concealer"]["outcome"] == "failed"
    assert rows["test_forgetter"]["outcome"] == "passed"
    curve = rows["test_concealer"]["curve"]["curve"]
    assert [point["psi"] for point in curve] == [0.0, 0.15, 0.35, 0.55]
    assert {"mean", "low", "high", "n"} <= set(curve[0])


def test_artifacts_for_every_test_with_the_option(fake_suite: pytest.Pytester) -> None:
    fake_suite.runpytest("-p", "no:cacheprovider", "--uoc-artifacts", "art")
    pngs = sorted(p.relative_to(fake_suite.path / "art").as_posix() for p in (fake_suite.path / "art").rglob("*.png"))
    assert len(pngs) == 4, pngs
    assert any("test_forgetter" in p and p.endswith("ccs_curve.png") for p in pngs)
    assert all(Path(fake_suite.path / "art" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_junit_xml_carries_the_key_numbers(fake_suite: pytest.Pytester) -> None:
    fake_suite.runpytest("-p", "no:cacheprovider", "--junitxml", "junit.xml")
    xml = (fake_suite.path / "junit.xml").read_text()
    assert 'name="uoc_verdict" value="concealed"' in xml
    assert 'name="uoc_ccs_at_psi" value="0.8"' in xml


def test_xdist_workers_report_to_the_controller(fake_suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    report = fake_suite.path / "uoc.json"
    result = fake_suite.runpytest("-p", "no:cacheprovider", "-n", "2", "--uoc-report", str(report))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*pytest-uoc: unlearning or concealment*", "test_concealer*", "test_forgetter*"])
    assert len(json.loads(report.read_text())["tests"]) == 2


def test_bad_assertion_arguments_are_clear(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_concept_not_retrievable

        @pytest.mark.uoc_concept("three")
        def test_psi_out_of_range():
            with pytest.raises(ValueError, match=r"psi must be in \\[0.0, 1.0\\], got 1.5"):
                assert_concept_not_retrievable(psi=1.5, ccs_max=0.2)
            with pytest.raises(TypeError, match=r"ccs_max must be a number"):
                assert_concept_not_retrievable(psi=0.5, ccs_max="low")
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


VERBATIM = '''
import pytest
from pytest_uoc import assert_concept_not_retrievable

@pytest.mark.gpu
@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
def test_three_is_truly_forgotten():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
'''


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tiny_pipe) -> dict[str, Path]:
    """The tiny pipeline on disk, and its own UNet as an 'unlearned' file: nothing was erased."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("models")
    tiny_pipe.save_pretrained(str(root / "original"))
    save_file({k: v.contiguous() for k, v in tiny_pipe.unet.state_dict().items()}, str(root / "same.safetensors"))
    return {"original": root / "original", "same": root / "same.safetensors"}


def test_verbatim_example_on_the_cpu_catches_a_model_that_erased_nothing(pytester: pytest.Pytester, tiny_models) -> None:
    pytester.makepyfile(test_readme=VERBATIM)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--uoc-device", "cpu", "--uoc-original", str(tiny_models["original"]),
        "--uoc-unlearned", str(tiny_models["same"]), "--uoc-steps", "4", "--uoc-seeds", "16",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*concept 'three' is NOT ERASED*",
        "*classifier held-out accuracy*",
        "test_three_is_truly_forgotten*three*not_erased*",
    ])
