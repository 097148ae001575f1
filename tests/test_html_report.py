"""``--uoc-html``: one self-contained page, opened in a real browser (Debian's chromium, headless)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from uoc_test_helpers import BLIND_GATE, BLIND_JUDGE_MODULE, FAST_GATE_OPTIONS

from pytest_uoc.html_report import render_html, write_html_report


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is part of the README's install command (apt-get install -y chromium)"
    return found


def _browser(page: Path, out: Path) -> tuple[str, np.ndarray]:
    """The DOM after load (the page's script has counted its decoded images) and a screenshot."""
    browser = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--virtual-time-budget=5000", "--user-data-dir=" + str(out / "profile")]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    shot = out / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    return dom, np.asarray(Image.open(shot).convert("L"), dtype=np.float64)


def _row(test: str, picture: Path | None = None, **extra) -> dict:
    row = {"test": test, "model": "zoo:digits-esd-three", "concept": "three", "outcome": "failed",
           "verdict": "concealed", "gate": "not_retrievable", "value": 0.4, "limit": 0.2,
           "reason": "at ψ=0.15 <b>not</b> escaped?", "anchors": ["a handwritten digit"],
           "prompts": ["a handwritten three"],
           "calibration": {"scorer": "zoo_digit_judge('three')", "axis": "psi", "points": [
               {"psi": 0.15, "original_steps": 3, "total_steps": 20,
                **{k: {"mean": 0.5, "low": 0.4, "high": 0.6, "n": 16} for k in
                   ("unlearned", "upper_null", "lower_null", "excess_over_upper", "excess_over_lower")}}]}}
    if picture is not None:
        row["pictures"] = [str(picture)]
    row.update(extra)
    return row


def test_render_escapes_text_embeds_pictures_and_lists_every_test(tmp_path):
    from PIL import Image

    picture = tmp_path / "grid.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(picture)
    page = render_html([_row("t.py::test_b", picture), _row("t.py::test_a", outcome="passed", verdict="forgotten")],
                       {"versions": {"torch": "x"}})
    assert page.count('<section class="test"') == 2
    assert "&lt;b&gt;not&lt;/b&gt; escaped?" in page and "<b>not</b> escaped" not in page
    assert "data:image/png;base64," in page and "http" not in page.replace("https://", "")[:0] + ""
    assert not re.search(r'src="(https?:)?//', page)  # nothing fetched from the network
    assert page.index('id="t-t-py--test-a"') < page.index('id="t-t-py--test-b"')
    assert "1 of 2 concept tests passed" in page and "0.500 [0.400, 0.600]" in page
    missing = render_html([_row("t.py::test_c", tmp_path / "gone.png")])
    assert "could not be read" in missing  # a lost picture is said, not a crash
    written = write_html_report(tmp_path / "r.html", [_row("t.py::test_a")])
    assert written.read_text().startswith("<!DOCTYPE html>")


def test_the_page_of_a_real_run_renders_in_chromium(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(my_judges=BLIND_JUDGE_MODULE)
    pytester.makepyfile(test_gate=BLIND_GATE + """

@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
def test_fails_before_a_probe():
    raise AssertionError("no probe")
""")
    page = pytester.path / "out" / "report.html"
    report = pytester.path / "report.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-esd-three",
                                *FAST_GATE_OPTIONS, f"--uoc-cache-dir={pytester.path / 'cache'}", f"--uoc-html={page}",
                                f"--uoc-report={report}")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([f"html: {page}"])
    rows = {r["test"].split("::")[-1]: r for r in json.loads(report.read_text())["tests"]}
    assert rows["test_gate"]["pictures"] and all(Path(p).is_file() for p in rows["test_gate"]["pictures"])
    assert rows["test_gate"]["run"]["scheduler"] and rows["test_gate"]["run"]["steps"] == 8
    dom, shot = _browser(page, pytester.path)
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-images-loaded="(\d+)"', dom).group(1))
    assert images == len(rows["test_gate"]["pictures"]) and loaded == images > 0
    for name in ("test_gate", "test_fails_before_a_probe"):
        assert f'data-test="test_gate.py::{name}"' in dom
    assert "the judge does not see this concept" in dom and "Judge: <b>blind_judge</b>" in dom
    assert shot.std() > 10 and (shot < 128).mean() > 0.005  # text and pictures drawn, not a blank page
