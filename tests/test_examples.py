"""The README's main job: the example model repository's gate, run on the embedded zoo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_example_suite_runs_as_the_readme_says(tmp_path: Path) -> None:
    report = tmp_path / "uoc-report.json"
    artifacts = tmp_path / "uoc-artifacts"
    command = [
        sys.executable, "-m", "pytest", "examples", "--uoc-device", "cpu", "--uoc-report", str(report),
        "--uoc-artifacts", str(artifacts), "--uoc-html", str(tmp_path / "uoc-report.html"),
        "--uoc-cache-dir", str(tmp_path / "cache"), "-p", "no:cacheprovider",
        "-q", "-rxX",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "pytest-uoc: unlearning or concealment" in output
    rows = {row["test"].split("::")[-1].split("[")[0]: row for row in json.loads(report.read_text())["tests"]}
    # The README's verbatim gate passes the gold standard (calibrated against the null finishes)...
    assert rows["test_three_is_truly_forgotten"]["outcome"] == "passed"
    assert rows["test_three_is_truly_forgotten"]["verdict"] == "forgotten"
    assert rows["test_three_is_truly_forgotten"]["rule"] == "calibrated:nulls"
    # ...the red gold standard, which shares the original's text encoder, still draws red-orange for "red"...
    assert rows["test_red_gold_standard_passes_the_readme_gate"]["outcome"] == "xfailed"
    assert rows["test_red_gold_standard_passes_the_readme_gate"]["verdict"] == "not_erased"
    # ...and ESD-x, which looks erased at psi = 0, is named concealed by the gap to the gold standard.
    assert rows["test_esd_conceals_the_three"]["outcome"] == "xfailed"
    assert rows["test_esd_conceals_the_three"]["verdict"] == "concealed"
    assert rows["test_esd_conceals_the_three"]["rule"] == "calibrated:reference"
    # At a small psi the same probes pass.
    assert rows["test_three_gold_standard_passes_at_small_psi"]["outcome"] == "passed"
    assert rows["test_three_gold_standard_passes_at_small_psi"]["verdict"] == "forgotten"
    # xfail-marked gates that fail as expected are recorded as pytest says: xfailed
    assert rows["test_concealer_is_caught"]["outcome"] == "xfailed"
    assert rows["test_concealer_is_caught"]["gate"] == "no_gap"
    assert rows["test_concealer_is_caught"]["value"] > rows["test_concealer_is_caught"]["limit"] == 0.1
    assert rows["test_restoration_attack_catches_the_concealer"]["outcome"] == "xfailed"
    # the red concealer draws red from pure noise too (0.50 at strength 1): not_erased before any restoration
    assert rows["test_restoration_attack_catches_the_concealer"]["verdict"] == "not_erased"
    assert rows["test_red_stays_erased_in_other_words"]["outcome"] == "xfailed"
    assert rows["test_other_colours_are_retained"]["outcome"] == "xfailed"
    assert rows["test_neighbouring_colours_survive"]["outcome"] == "xfailed"
    # the hypothesis test uses the uoc fixture directly: it has a row too
    assert rows["test_gold_standard_is_never_retrieved_early"]["outcome"] == "passed"
    assert rows["test_gold_standard_is_never_retrieved_early"]["model"] == "zoo:digits-gold-red"
    # every gate's row carries its deciding number and limit
    for name, row in rows.items():
        if name != "test_gold_standard_is_never_retrieved_early":
            assert {"gate", "value", "limit", "limit_kind"} <= set(row), name
    assert rows["test_other_colours_are_retained"]["retention_distance"] == "ssim"
    assert rows["test_other_colours_still_follow_the_prompt"]["outcome"] == "xfailed"
    assert rows["test_three_does_not_leak_unasked"]["outcome"] == "passed"

    assert list(artifacts.rglob("ccs_curve.png")), "no curve plots were written"
    page = (tmp_path / "uoc-report.html").read_text()
    assert page.count('<section class="test"') == len(rows) and page.count("data:image/png;base64,") >= len(rows)
    for picture in ("gap_curve.png", "retention_pairs.png", "prompt_ccs.png", "leakage.png", "pinpoint_pairs.png",
                    "alignment.png", "restore_image_grid.png"):
        assert list(artifacts.rglob(picture)), f"no {picture} was written"


def test_attack_examples_run_as_their_docstring_says(tmp_path: Path) -> None:
    """``pytest examples -m attack``: the learned attacks' examples (left out of the main job by pytest.ini)."""
    report = tmp_path / "uoc-attacks.json"
    command = [sys.executable, "-m", "pytest", "examples", "-m", "attack", "--uoc-device", "cpu", "--uoc-report",
               str(report), "--uoc-cache-dir", str(tmp_path / "cache"), "-p", "no:cacheprovider", "-q", "-rxX"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    rows = {row["test"].split("::")[-1]: row for row in json.loads(report.read_text())["tests"]}
    assert set(rows) == {"test_concept_inversion_finds_the_concealed_three",
                         "test_the_gold_standard_survives_concept_inversion",
                         "test_prompt_search_finds_the_concealed_three"}
    # The learned attacks: each brings the concealer's three back (the paired gap to the gold standard), and the
    # gold standard survives inversion (the share rule); every found prompt is in the report.
    for name, attack in (("test_concept_inversion_finds_the_concealed_three", "inversion"),
                         ("test_prompt_search_finds_the_concealed_three", "prompt_attack")):
        assert rows[name]["outcome"] == "xfailed" and rows[name]["verdict"] == "concealed", name
        assert rows[name][attack]["rule"] == "gold standard" and rows[name][attack]["gap"]["low"] > 0
        assert rows[name][attack]["original"]["low"] > rows[name][attack]["ccs_max"]
    found = rows["test_prompt_search_finds_the_concealed_three"]["prompt_attack"]["models"]["unlearned"]["found"]
    assert [item["prompt"] for item in found] == ["a handwritten three", "the digit 3"]
    survives = rows["test_the_gold_standard_survives_concept_inversion"]
    assert survives["outcome"] == "passed" and survives["verdict"] == "forgotten"
    assert survives["inversion"]["rule"] == "share" and survives["inversion"]["unlearned"]["high"] <= 0.3
