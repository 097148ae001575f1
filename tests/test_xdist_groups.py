"""Under ``-n N`` the tests of one concept marker run on one worker, so their probe is built once."""

from __future__ import annotations

import json

import pytest

GROUPED = """
import pytest

THREE = pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
RED = pytest.mark.uoc_concept("red", prompts=["a red digit", "a digit in red"])


def _log(name, worker_id):
    import pathlib
    pathlib.Path("workers", name).write_text(worker_id)


@pytest.mark.parametrize("i", range(6))
@THREE
def test_three(i, worker_id):
    _log(f"three-{i}", worker_id)


@pytest.mark.parametrize("i", range(6))
@RED
def test_red(i, worker_id):
    _log(f"red-{i}", worker_id)
    if i == 0:
        raise AssertionError("a row for the report")


@pytest.mark.parametrize("i", range(6))
def test_plain(i, worker_id):
    _log(f"plain-{i}", worker_id)
"""


def test_one_worker_per_concept_marker(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(pytester.path / "tmp"))
    pytester.mkdir("tmp")
    pytester.mkdir("workers")
    pytester.makepyfile(test_grouped=GROUPED)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--uoc-unlearned",
                                           "zoo:digits-gold-three", f"--uoc-report={report}")
    result.assert_outcomes(passed=17, failed=1)
    ran = {path.name: path.read_text() for path in (pytester.path / "workers").iterdir()}
    assert len(ran) == 18
    assert len({ran[f"three-{i}"] for i in range(6)}) == 1
    assert len({ran[f"red-{i}"] for i in range(6)}) == 1
    assert {w for name, w in ran.items()} == {"gw0", "gw1"}  # the plain tests still spread over both
    row = json.loads(report.read_text())["tests"][0]
    assert row["test"] == "test_grouped.py::test_red[0]"
    assert not list((pytester.path / "tmp").glob("pytest-uoc-groups-*"))  # the controller removed its folder


def test_no_group_without_xdist(pytester: pytest.Pytester) -> None:
    pytester.mkdir("workers")
    pytester.makepyfile(test_grouped=GROUPED.replace(", worker_id", "").replace("worker_id)", "'none')"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-gold-three")
    result.assert_outcomes(passed=17, failed=1)
    result.stdout.fnmatch_lines(["*test_grouped.py::test_red[[]0[]] - AssertionError*"])


def test_cuda_under_xdist_spreads_over_the_gpus(monkeypatch) -> None:
    import torch

    from pytest_uoc.factory import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [resolve_device("cuda", f"gw{i}") for i in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert resolve_device("cuda", None) == "cuda" and resolve_device("cuda:1", "gw0") == "cuda:1"


RELEASED = """
import gc
import weakref

import pytest

THREE = pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
RED = pytest.mark.uoc_concept("red", prompts=["a red digit", "a digit in red"])
SEEN = {}


def _alive(name):
    gc.collect()
    return SEEN[name]() is not None


@THREE
def test_three_first(uoc):
    SEEN["three"] = weakref.ref(uoc)


@RED
def test_red_between(uoc):
    SEEN["red"] = weakref.ref(uoc)
    assert _alive("three")  # a test of three is still to come: its probe is kept


@THREE
def test_three_last(uoc):
    assert SEEN["three"]() is uoc  # built once for both tests of the marker
    assert _alive("red")  # red has a test left


@RED
def test_red_last(uoc):
    assert SEEN["red"]() is uoc
    assert not _alive("three")  # the last test of three has run: its probe (images, sweeps) is gone


def test_plain_after():
    assert not _alive("red")
"""


def test_a_probe_is_freed_after_the_last_test_of_its_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_released=RELEASED)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", "--uoc-unlearned",
                                "zoo:digits-gold-three")
    result.assert_outcomes(passed=5)


def test_a_probe_used_again_after_its_release_is_rebuilt(monkeypatch, tmp_path) -> None:
    """Should a test of a finished group still come (a re-run), the session builds its probe again."""
    from types import SimpleNamespace

    import pytest_uoc.session as session_module
    from pytest_uoc.concept import Concept
    from pytest_uoc.config import Settings
    from pytest_uoc.xdist_groups import group_of

    built: list[object] = []
    monkeypatch.setattr(session_module, "build_probe", lambda *args: built.append(object()) or built[-1])
    session = session_module.UocSession(settings=Settings(cache_dir=str(tmp_path)), rootdir=tmp_path)
    mark = pytest.mark.uoc_concept("three", prompts=["a", "b"]).mark
    item = SimpleNamespace(get_closest_marker=lambda name: mark if name == "uoc_concept" else None)
    item.session = SimpleNamespace(items=[item])
    concept, settings = Concept("three", ("a", "b")), Settings(seeds=tuple(range(16)))
    first = session.probe(concept, 1, 2, None, settings, {})
    session.used_by(first, group_of(item))
    assert session.probe(concept, 1, 2, None, settings, {}) is first
    assert session.test_finished(item) == 1  # the only test of its group has run
    again = session.probe(concept, 1, 2, None, settings, {})
    session.used_by(again, group_of(item))
    assert again is not first and len(built) == 2
    kept = session.probe(concept, 1, 3, None, settings, {})  # no group (uoc audit): never released
    assert session.test_finished(item) == 1  # the rebuilt one goes again; the one without a group stays
    assert session.probe(concept, 1, 3, None, settings, {}) is kept and len(built) == 3
