"""The progress line: throttled, one line, fed by the engine; the plugin shows it on a terminal only."""

from __future__ import annotations

import pytest

from pytest_uoc import progress
from pytest_uoc.progress import ProgressLine, Status

pytest_plugins = ["pytester"]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_status_text_names_what_is_known():
    assert Status(3, 8, "sweeps", 0.15, 2).text() == "sweeps: 3/8 images, psi 0.15, round 2"
    assert Status(3, 8).text() == "images: 3/8 images"


def test_line_is_throttled_and_never_floods():
    written: list[str] = []
    clock = _Clock()
    line = ProgressLine(written.append, clock=clock, min_interval=0.5)
    for done in range(1, 100):
        clock.now += 0.001
        line(Status(done, 100, "sweeps"))
    assert line.writes == 1  # 99 reports within 0.1 s: one write
    clock.now += 1.0
    line(Status(100, 100, "sweeps"))  # the last one is always shown
    assert line.writes == 2 and written[-1].endswith("sweeps: 100/100 images")
    assert all(text.startswith("\r\x1b[K") and "\n" not in text for text in written)
    line.close()
    assert written[-1] == "\r\x1b[K"


def test_report_goes_to_the_sink_only_inside_showing():
    seen: list[tuple[int, int]] = []
    progress.report(1, 2)  # no sink: nothing happens
    with progress.showing(lambda status: seen.append((status.done, status.planned))):
        with progress.phase("null finishes"):
            progress.report(1, 4, psi=0.05)
            assert progress.current().phase == "null finishes"
    progress.report(2, 4)
    assert seen == [(1, 4)]
    assert progress.current().phase == ""


def test_the_engine_reports_every_finished_batch(tiny_pipe, tiny_unet):
    from pytest_uoc.diffusion import PartialDiffusion

    engine = PartialDiffusion(tiny_pipe, tiny_unet, num_inference_steps=4, batch_size=2)
    seen: list[Status] = []
    with progress.showing(lambda status: seen.append(Status(status.done, status.planned, psi=status.psi))):
        engine.sweep(["a handwritten seven"], [0.0, 0.5], seeds=[0, 1, 2])
    assert seen and seen[-1].done == seen[-1].planned == 6  # 3 seeds x 2 hand-offs
    assert [s.done for s in seen] == sorted(s.done for s in seen)
    assert {s.psi for s in seen} <= {0.0, 0.5}


CONFTEST = """
import pytest
from pytest_uoc import progress

@pytest.fixture
def work():
    for done in range(1, 201):
        progress.report(done, 200, psi=0.25)
"""


@pytest.mark.parametrize(("flags", "shown"), [(["-v"], True), (["-q"], False), ([], True)])
def test_plugin_shows_one_line_on_a_terminal_and_none_under_q(pytester, monkeypatch, flags, shown):
    monkeypatch.setattr("pytest_uoc.plugin._on_terminal", lambda: True)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_long(work):\n    assert True\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *flags)
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert ("uoc: images: 200/200 images, psi 0.25" in out) is shown
    assert out.count("uoc: images:") <= 3  # throttled: 200 reports, a handful of writes


def test_plugin_shows_nothing_off_a_terminal(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_long(work):\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    assert "uoc: images" not in result.stdout.str()
