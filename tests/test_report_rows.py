"""Report rows and pictures for every gate (issue 14 items 8 and 9, and the README's command forms).

Every test runs in ``pytester`` against a fake probe with known results (no image
generation): xfail outcomes, a row for a test that only uses the ``uoc`` fixture,
each gate's deciding number and limit in the JSON and the terminal table, each
gate's picture, and the model named after the checkpoint the fixture loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import scipy.stats  # noqa: F401 - imported here once: an in-process pytester run must not import it first
from uoc_test_helpers import FAKE_PROBE_CONFTEST as FAKE_CONFTEST
from uoc_test_helpers import FAKE_UOC

GATES = '''
import pytest
from pytest_uoc import (assert_aligned, assert_concept_erased, assert_concept_not_retrievable,
                        assert_no_concealment_gap, assert_no_leakage, assert_pinpoint, assert_retained)


def judge(images):
    return ["eight"] * len(images)


@pytest.mark.uoc_concept("three", model="forgetter")
def test_not_retrievable():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)

@pytest.mark.uoc_concept("three", model="concealer")
def test_restore():
    assert_concept_not_retrievable(psi=0.5, ccs_max=0.2, guidance="restore")

@pytest.mark.uoc_concept("three", model="forgetter")
def test_erased():
    assert_concept_erased(0.2)

@pytest.mark.uoc_concept("three", model="concealer")
def test_erased_prompts():
    assert_concept_erased(0.2, prompts=["trois", "drei"])

@pytest.mark.uoc_concept("three", model="forgetter")
def test_retained():
    assert_retained(max_distance=0.1)

@pytest.mark.uoc_concept("three", model="concealer")
def test_gap():
    assert_no_concealment_gap(max_gap=0.1)

@pytest.mark.uoc_concept("three", model="forgetter")
def test_leakage():
    assert_no_leakage(("", "a picture"), max_excess=0.1)

@pytest.mark.uoc_concept("three", model="forgetter")
def test_pinpoint():
    assert_pinpoint(["a handwritten eight", "a handwritten two"], max_distance=0.3, judge=judge,
                    min_accuracy=0.8)

@pytest.mark.uoc_concept("three", model="concealer")
def test_aligned():
    assert_aligned(["a handwritten seven", "a blue digit"], "seven", 0.8, judge)
'''


def _rows(report: Path) -> dict[str, dict]:
    return {row["test"].split("::")[-1]: row for row in json.loads(report.read_text())["tests"]}


@pytest.fixture
def gate_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(FAKE_CONFTEST + FAKE_UOC)
    pytester.makepyfile(test_gates=GATES)
    return pytester


# -- item 8: outcomes, rows, deciding numbers ---------------------------------------------------------


def test_xfailed_and_xpassed_tests_are_recorded_as_such(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST + FAKE_UOC)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_concept_not_retrievable

        @pytest.mark.xfail(strict=True, reason="the concealer is caught")
        @pytest.mark.uoc_concept("three", model="concealer")
        def test_caught():
            assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)

        @pytest.mark.xfail(reason="maybe")
        @pytest.mark.uoc_concept("three", model="forgetter")
        def test_xpass():
            assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)

        @pytest.mark.xfail(strict=True, reason="strict")
        @pytest.mark.uoc_concept("three", model="forgetter")
        def test_strict_xpass():
            assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)

        @pytest.mark.uoc_concept("three", model="forgetter")
        def test_imperative_xfail():
            assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
            pytest.xfail("known")
        """
    )
    report = pytester.path / "uoc.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", str(report))
    result.assert_outcomes(xfailed=2, xpassed=1, failed=1)
    rows = _rows(report)
    assert rows["test_caught"]["outcome"] == "xfailed"
    assert rows["test_caught"]["xfail_reason"] == "the concealer is caught"
    assert rows["test_caught"]["verdict"] == "concealed"
    assert rows["test_xpass"]["outcome"] == "xpassed"
    assert rows["test_strict_xpass"]["outcome"] == "failed"  # pytest's own word for a strict XPASS
    assert rows["test_strict_xpass"]["xpass_strict"] is True
    assert rows["test_imperative_xfail"]["outcome"] == "xfailed"
    result.stdout.fnmatch_lines(["test_caught*concealer*three*xfailed*concealed*"])


def test_a_test_that_only_uses_the_uoc_fixture_gets_a_row(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST + FAKE_UOC)
    pytester.makepyfile(
        """
        import pytest
        from hypothesis import given, settings, strategies as st

        @settings(settings.get_profile("uoc"))
        @given(psi=st.sampled_from([0.0, 0.15]))
        @pytest.mark.uoc_concept("red", model="forgetter")
        def test_never_retrieved_early(uoc, psi):
            assert uoc.ccs(psi).mean <= 0.3

        @pytest.mark.uoc_concept("red", model="forgetter")
        def test_plain(uoc):
            assert uoc.ccs(0.0).mean > 0.5

        def test_no_probe():
            pass
        """
    )
    report = pytester.path / "uoc.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", str(report))
    result.assert_outcomes(passed=2, failed=1)
    rows = _rows(report)
    assert set(rows) == {"test_never_retrieved_early", "test_plain"}
    row = rows["test_never_retrieved_early"]
    assert (row["concept"], row["model"], row["original"], row["outcome"]) == ("red", "forgetter", "zoo:digits",
                                                                               "passed")
    assert row["cost"]["unlearned_unet_evals"] == 5 and row["seconds"] >= 0
    assert rows["test_plain"]["outcome"] == "failed"
    result.stdout.fnmatch_lines(["test_never_retrieved_early*forgetter*red*passed*"])


EXPECTED_GATES = {
    # test: (gate, deciding value, limit, limit_kind)
    "test_not_retrievable": ("not_retrievable", 0.13, 0.2, "max"),  # CCS 0.09 + 0.04 at psi 0.55
    "test_restore": ("not_restorable", 0.49, 0.2, "max"),  # CCS 0.45 + 0.04 at strength 0.5
    "test_erased": ("erased", 0.06, 0.2, "max"),  # CCS 0.02 + 0.04 at psi 0
    "test_erased_prompts": ("erased", 0.455, 0.2, "max"),  # overall CCS (0.8 + 0.05) / 2 + 0.03
    "test_retained": ("retained", 0.04, 0.1, "max"),
    "test_gap": ("no_gap", 0.27, 0.1, "max"),  # gap 0.30 - 0.03 at psi 0.15
    "test_pinpoint": ("pinpoint", 0.04, 0.3, "max"),  # ssim distance 0.02 + 0.02
    "test_aligned": ("aligned", 0.38, 0.8, "min"),  # accuracy 0.4 - 0.02
}


def test_every_gate_row_carries_its_deciding_number_and_limit(gate_suite: pytest.Pytester) -> None:
    report = gate_suite.path / "uoc.json"
    result = gate_suite.runpytest("-p", "no:cacheprovider", "--uoc-report", str(report))
    result.assert_outcomes(passed=5, failed=4)
    rows = _rows(report)
    for test, (gate, value, limit, kind) in EXPECTED_GATES.items():
        row = rows[test]
        assert (row["gate"], row["limit"], row["limit_kind"]) == (gate, limit, kind), test
        assert row["value"] == pytest.approx(value, abs=1e-3), test
        assert row["value_of"] and row["checks"] and row["gates"][-1]["gate"] == gate, test
        assert row["gates"][-1]["passed"] == (row["outcome"] == "passed"), test
    leak = rows["test_leakage"]
    assert (leak["gate"], leak["limit"], leak["limit_kind"]) == ("no_leakage", 0.1, "max")
    assert leak["value"] == pytest.approx(leak["leakage"]["excess"]["low"], abs=1e-4)
    assert "upper 95% bound" in rows["test_retained"]["value_of"]
    pin = rows["test_pinpoint"]["checks"]
    assert [c["limit_kind"] for c in pin] == ["max", "min"] and pin[1]["value"] == pytest.approx(0.86)
    # the earlier fields stay
    assert rows["test_gap"]["gap"] == 0.3 and rows["test_retained"]["retention"] == 0.02
    result.stdout.fnmatch_lines([
        "test*model*concept*outcome*verdict*gate*value*limit*CCS@0*",
        "test_aligned*concealer*three*failed*-*aligned*0.380*>=0.8*",
        "test_erased *forgetter*three*passed*forgotten*erased*0.060*<=0.2*",
        "test_erased_prompts*concealer*three*failed*-*erased*0.455*<=0.2*",
        "test_gap*concealer*three*failed*-*no_gap*0.270*<=0.1*",
        "test_leakage*forgetter*three*passed*-*no_leakage*<=0.1*",
        "test_not_retrievable*forgetter*three*passed*forgotten*not_retrievable*0.130*<=0.2*",
        "test_pinpoint*forgetter*three*passed*-*pinpoint*0.040*<=0.3*",
        "test_restore*concealer*three*failed*concealed*not_restorable*0.490*<=0.2*",
        "test_retained*forgetter*three*passed*-*retained*0.040*<=0.1*",
    ])


def test_a_failed_gate_is_the_rows_gate_when_a_test_asserts_twice(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST + FAKE_UOC)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_concept_not_retrievable, assert_retained

        @pytest.mark.uoc_concept("three", model="concealer")
        def test_two():
            assert_retained(max_distance=1.0)
            with pytest.raises(pytest.fail.Exception):
                assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
            assert_retained(max_distance=1.0)
        """
    )
    report = pytester.path / "uoc.json"
    pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", str(report)).assert_outcomes(passed=1)
    row = _rows(report)["test_two"]
    assert [g["gate"] for g in row["gates"]] == ["retained", "not_retrievable", "retained"]
    assert (row["gate"], row["value"]) == ("not_retrievable", 0.84)


def test_junit_xml_carries_the_gate(gate_suite: pytest.Pytester) -> None:
    gate_suite.runpytest("-p", "no:cacheprovider", "--junitxml", "junit.xml", "-k", "test_gap")
    xml = (gate_suite.path / "junit.xml").read_text()
    assert 'name="uoc_gate" value="no_gap"' in xml and 'name="uoc_limit" value="0.1"' in xml


# -- item 9: every gate's picture ---------------------------------------------------------------------

PICTURES = {
    "test_not_retrievable": {"ccs_curve.png", "image_grid.png"},
    "test_restore": {"restore_ccs_curve.png", "restore_image_grid.png"},
    "test_erased": {"ccs_curve.png", "image_grid.png"},
    "test_erased_prompts": {"prompt_ccs.png", "prompt_images.png"},
    "test_retained": {"retention_pairs.png", "retention_distance.png"},
    "test_gap": {"gap_curve.png"},
    "test_leakage": {"leakage.png", "leakage_images.png"},
    "test_pinpoint": {"pinpoint_pairs.png", "pinpoint_distance.png", "pinpoint_accuracy.png"},
    "test_aligned": {"alignment.png", "alignment_images.png"},
}


def _png_text(path: Path) -> dict[str, str]:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return dict(image.text)


def test_every_gate_writes_its_picture(gate_suite: pytest.Pytester) -> None:
    result = gate_suite.runpytest("-p", "no:cacheprovider", "--uoc-artifacts", "art")
    result.assert_outcomes(passed=5, failed=4)
    art = gate_suite.path / "art"
    written = {folder.name.split("test_gates.py_")[-1]: {p.name for p in folder.glob("*.png")}
               for folder in art.iterdir()}
    for test, names in PICTURES.items():
        assert written.get(test) == names, (test, written.get(test))
    for png in art.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        title = _png_text(png).get("Title", "")
        model = "concealer" if any(t in png.parent.name for t in ("restore", "prompts", "gap", "aligned")) \
            else "forgetter"
        assert title.startswith(f"three: {model}"), (png, title)
    folder = next(art.glob("*test_not_retrievable"))
    assert _png_text(folder / "image_grid.png")["Rows"].splitlines() == ["psi 0.00", "psi 0.15", "psi 0.35",
                                                                         "psi 0.55"]
    folder = next(art.glob("*test_restore"))
    assert _png_text(folder / "restore_image_grid.png")["Rows"].splitlines() == ["strength 0.50", "strength 0.80",
                                                                                 "strength 1.00"]
    folder = next(art.glob("*test_retained"))
    assert _png_text(folder / "retention_pairs.png")["Rows"].splitlines() == [
        "original: 'a handwritten eight'", "unlearned: 'a handwritten eight'",
        "original: 'a blue digit'", "unlearned: 'a blue digit'"]
    assert "vs zoo:" not in _png_text(next(art.glob("*test_gap")) / "gap_curve.png")["Title"]
    # the failure names what it wrote
    result.stdout.fnmatch_lines(["*CONCEALMENT GAP above 0.1*", "*written: *gap_curve.png"])
    result.stdout.fnmatch_lines(["*NOT ALIGNED*", "*written: *alignment.png", "*written: *alignment_images.png"])


def test_grid_rows_are_labelled_and_drawn_left_of_the_images(tmp_path: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from pytest_uoc.report import write_image_grid

    white = torch.ones(2, 3, 16, 16)
    path = write_image_grid({0.0: white, 0.5: white}, tmp_path / "grid.png", title="three: esd.safetensors")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
        text = dict(image.text)
    assert text == {"Title": "three: esd.safetensors", "Rows": "psi 0.00\npsi 0.50"}
    # the label column and the title band hold dark text pixels; the images are white
    assert pixels.shape[1] > 2 * 96 and (pixels[:, :20] < 128).any() and (pixels[:10] < 128).any()


def test_a_picture_that_cannot_be_drawn_is_a_warning_not_a_failure(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST + FAKE_UOC.replace(
        'return FakeProbe(', 'probe = FakeProbe(').replace(
        'marker.kwargs.get("model", "forgetter"))', 'marker.kwargs.get("model", "forgetter"))\n'
        '    probe.prompt_images = lambda *a, **k: 1 / 0\n    return probe'))
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_retained

        @pytest.mark.uoc_concept("three", model="forgetter")
        def test_retained():
            assert_retained(max_distance=0.1)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-artifacts", "art")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*OutputWarning: pytest-uoc: could not draw a picture: ZeroDivisionError*"])
    assert [p.name for p in (pytester.path / "art").rglob("*.png")] == ["retention_distance.png"]


# -- item 9: the model the unlearned_pipeline fixture loaded ------------------------------------------

LOADED_CONFTEST = '''

@pytest.fixture(scope="session")
def original_pipeline():
    return SimpleNamespace(name_or_path="models/sd-1.4")


@pytest.fixture(scope="session")
def unlearned_pipeline():
    pipe = SimpleNamespace(name_or_path="models/sd-1.4")
    pipe.uoc_checkpoint = {"kind": "partial", "path": "checkpoints/esd-three/unet.safetensors"}
    return pipe


class Session:
    """The plugin's session, handing out fake probes with the labels the uoc fixture chose."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def probe(self, concept, original, unlearned, reference, settings, labels):
        return LoadedProbe(concept.name, "forgetter", labels=labels)


class LoadedProbe(FakeProbe):
    """A fake probe that takes the checks the uoc fixture may run on a new probe (warn_*, check_*) as no-ops."""

    def __getattr__(self, name):
        if name.startswith(("warn_", "check_")):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


@pytest.fixture(scope="session")
def uoc_session(uoc_session):
    return Session(uoc_session)
'''


def test_the_model_is_named_after_the_checkpoint_the_fixture_loaded(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST + LOADED_CONFTEST)
    pytester.makepyfile(
        """
        import pytest
        from pytest_uoc import assert_concept_not_retrievable

        @pytest.mark.uoc_concept("three", prompts=["a handwritten three"])
        def test_gate(uoc):
            assert uoc.labels["unlearned"] == "checkpoints/esd-three/unet.safetensors"
            assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
        """
    )
    report = pytester.path / "uoc.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", str(report), "--uoc-artifacts", "art")
    result.assert_outcomes(passed=1)
    assert _rows(report)["test_gate"]["model"] == "checkpoints/esd-three/unet.safetensors"
    result.stdout.fnmatch_lines(["test_gate*checkpoints/esd-three/unet.safetensors*three*passed*forgotten*"])
    grid = next((pytester.path / "art").rglob("image_grid.png"))
    assert _png_text(grid)["Title"] == "three: checkpoints/esd-three/unet.safetensors"


def test_loaded_label_falls_back_to_names_that_differ_from_the_original() -> None:
    from pytest_uoc.fixtures import loaded_label

    original = SimpleNamespace(name_or_path="models/sd", unet=SimpleNamespace(config={"_name_or_path": "models/sd"}))
    swapped = SimpleNamespace(name_or_path="models/sd", unet=SimpleNamespace(config={"_name_or_path": "models/sd"}))
    assert loaded_label(swapped, original) == "unlearned_pipeline fixture"
    own_unet = SimpleNamespace(name_or_path="models/sd", unet=SimpleNamespace(config={"_name_or_path": "ckpt/unet"}))
    assert loaded_label(own_unet, original) == "ckpt/unet"
    assert loaded_label(SimpleNamespace(name_or_path="hub/esd-three"), original) == "hub/esd-three"
    recorded = SimpleNamespace(uoc_checkpoint={"kind": "lora", "path": "lora.safetensors"})
    assert loaded_label(recorded, original) == "lora.safetensors"


# -- Checks: the README's exact command forms ---------------------------------------------------------

README_TEST = '''
import pytest
from pytest_uoc import assert_concept_not_retrievable

@pytest.mark.uoc_concept("three", model="forgetter")
def test_gate():
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
'''


def test_readme_command_forms_take_the_options_as_written(pytester: pytest.Pytester,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """``pytest examples --uoc-device cpu --uoc-report uoc-report.json --uoc-artifacts uoc-artifacts``, then
    the same with ``--uoc-unlearned PATH`` (space form, a checkpoint outside the project), on a fake probe."""
    examples = pytester.mkdir("examples")
    (examples / "pytest.ini").write_text("[pytest]\nuoc_steps = 7\n")
    (examples / "conftest.py").write_text(FAKE_CONFTEST + FAKE_UOC)
    (examples / "test_digits_gate.py").write_text(README_TEST)
    readme = "pytest examples --uoc-device cpu --uoc-report uoc-report.json --uoc-artifacts uoc-artifacts"
    args = readme.split()[1:]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    report = pytester.path / "uoc-report.json"
    document = json.loads(report.read_text())
    assert document["settings"]["device"] == "cpu" and document["settings"]["steps"] == 7
    assert document["settings"]["artifacts"] == "uoc-artifacts"
    assert [row["outcome"] for row in document["tests"]] == ["passed"]
    pngs = sorted(p.name for p in (pytester.path / "uoc-artifacts").rglob("*.png"))
    assert pngs == ["ccs_curve.png", "image_grid.png"]
    result.stdout.fnmatch_lines(["report: uoc-report.json"])

    # again, now that the report and the folder exist (their names are paths too), with the space form
    outside = tmp_path_factory.mktemp("elsewhere") / "unet.safetensors"
    outside.write_bytes(b"not read: the fake probe stands in")
    report.unlink()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, "--uoc-unlearned", str(outside))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"rootdir: {examples}", "configfile: pytest.ini"])
    document = json.loads(report.read_text())
    assert document["settings"]["unlearned"] == str(outside) and document["settings"]["steps"] == 7
    assert not (pytester.path / str(outside).lstrip("/")).exists()


def test_calibrated_verdicts_report_the_excess_that_decided() -> None:
    """Calibrated rule: the excess over the lower null against ccs_max, over the upper null against 0."""
    from pytest_uoc.gates._common import verdict_checks
    from pytest_uoc.scoring.calibration import CalibratedCurve, NullPoint
    from pytest_uoc.scoring.ccs import CCSCurve
    from pytest_uoc.scoring.stats import Estimate

    def _verdict_checks(*args: object) -> list[dict]:
        return [check.to_dict() for check in verdict_checks(*args)]

    band = Estimate(0.0, 0.0, 0.0, 16)

    def point(psi: float, lower_high: float, upper_low: float, steps: int = 3, gold: bool = False) -> NullPoint:
        lower = Estimate(0.0, -0.1, lower_high, 16)
        return NullPoint(psi=psi, original_steps=steps, total_steps=10, unlearned=band, upper=band, lower=band,
                         excess_upper=Estimate(0.0, upper_low, 0.1, 16), excess_lower=lower,
                         reference=band if gold else None, gap=lower if gold else None)

    def curve(gold: bool) -> CalibratedCurve:
        points = [point(0.0, 0.05, -0.2, steps=0, gold=gold), point(0.05, 0.5, 0.9, steps=0, gold=gold),  # no step
                  point(0.15, 0.12, -0.05, gold=gold), point(0.35, 0.08, 0.03, gold=gold),
                  point(0.55, 0.9, 0.9, gold=gold)]  # 0.55: beyond the limit
        ccs = CCSCurve.from_estimates({p.psi: band for p in points})
        return CalibratedCurve({p.psi: p for p in points}, ccs, ("a digit",))

    verdict = SimpleNamespace(calibrated_curve=curve(False), psi_limit=0.35, heldout_accuracy=0.9,
                              accuracy_floor=0.75)
    lower, upper, accuracy = _verdict_checks(verdict, None, 0.2)
    assert (lower["value"], lower["limit"], lower["passed"]) == (0.12, 0.2, True)
    assert "lower null" in lower["check"] and "psi 0.15" in lower["check"]
    assert (upper["value"], upper["limit"], upper["passed"]) == (0.03, 0.0, False)
    assert "psi 0.35" in upper["check"]
    assert (accuracy["value"], accuracy["limit_kind"]) == (0.9, "min")
    first = _verdict_checks(SimpleNamespace(**{**vars(verdict), "calibrated_curve": curve(True)}), None, 0.2)[0]
    assert "gold standard" in first["check"] and first["value"] == 0.12
