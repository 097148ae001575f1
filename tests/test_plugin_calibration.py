"""The calibrated verdict as users meet it: anchors from the marker and the options, failure text, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from uoc_test_helpers import ALWAYS_JUDGE_CONFTEST

GATE = '''
import pytest
from pytest_uoc import assert_concept_not_retrievable


@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"], anchor="a digit")
def test_gate():
    assert_concept_not_retrievable(psi=0.3, ccs_max=0.5)
'''


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tiny_pipe, tiny_unet) -> dict[str, Path]:
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("models")
    tiny_pipe.save_pretrained(str(root / "original"))
    save_file({k: v.contiguous() for k, v in tiny_unet.state_dict().items()}, str(root / "other.safetensors"))
    return {"original": root / "original", "other": root / "other.safetensors"}


def _options(models: dict[str, Path], tmp: Path) -> list[str]:
    return ["-p", "no:cacheprovider", "--uoc-device", "cpu", f"--uoc-original={models['original']}",
            f"--uoc-unlearned={models['other']}", "--uoc-steps", "4", "--uoc-seeds", "16",
            "--uoc-psis", "0,0.3", "--uoc-accuracy-floor", "0.5", f"--uoc-report={tmp / 'report.json'}"]


def test_the_failure_shows_both_nulls_and_the_anchors(pytester: pytest.Pytester, tiny_models) -> None:
    """A judge that flags every image fails its check (it sees the concept in the anchor's images too): the
    verdict is inconclusive, decided at ψ = 0 alone, and the failure still shows both nulls and the anchors."""
    pytester.makeconftest(ALWAYS_JUDGE_CONFTEST)
    pytester.makepyfile(test_gate=GATE)
    result = pytester.runpytest(*_options(tiny_models, pytester.path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*concept 'three' is INCONCLUSIVE: the judge sees this concept in the original's images of the anchor too*",
        "*judge: always; on the training seeds it finds the concept in 1.000 of the original's images*",
        "*shows the concept (always), anchors ?'a digit', 'a digit'?:",
        "*psi | steps | unlearned | upper null | lower null*",
        "*anchors given: 'a handwritten three' -> 'a digit', 'the digit 3' -> 'a digit'*",
        "*CCS (domain classifier*",
    ])
    row = json.loads((pytester.path / "report.json").read_text())["tests"][0]
    assert row["rule"] == "calibrated:nulls" and row["verdict"] == "inconclusive"
    assert row["anchors"] == ["a digit", "a digit"] and row["anchors_derived"] is False
    assert row["scorer"] == "always" and row["judge"]["check"]["believed"] is False
    points = row["calibration"]["points"]
    assert [p["psi"] for p in points] == [0.0]  # no ψ > 0 swept for a judge that is not believed
    assert points[0]["unlearned"]["mean"] == 1.0
    assert {"upper_null", "lower_null", "excess_over_upper", "excess_over_lower"} <= set(points[0])
    assert row["cost"]["null_unet_evals"] > 0


def test_an_anchor_option_that_names_the_concept_stops_before_any_test(pytester: pytest.Pytester,
                                                                      tiny_models) -> None:
    pytester.makepyfile(test_gate=GATE)
    result = pytester.runpytest(*_options(tiny_models, pytester.path), "--uoc-anchor", "a three")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--uoc-anchor: anchor 'a three'*still names the concept 'three'*"])


def test_a_marker_anchor_of_the_wrong_count_stops_before_any_test(pytester: pytest.Pytester, tiny_models) -> None:
    pytester.makepyfile(test_gate=GATE.replace('anchor="a digit"', 'anchor=["a", "b", "c"]'))
    result = pytester.runpytest(*_options(tiny_models, pytester.path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*one per concept prompt (2:*got 3*"])


def test_the_anchor_option_splits_on_semicolons(pytester: pytest.Pytester) -> None:
    from pytest_uoc.config import resolve_settings

    settings = resolve_settings({"anchor": "a painting; a photo"}, {})
    assert settings.anchor == ("a painting", "a photo")
    assert resolve_settings({}, {}, {"UOC_ANCHOR": "a digit"}).anchor == ("a digit",)
    assert resolve_settings({}, {}, {}).rule == "calibrated"
