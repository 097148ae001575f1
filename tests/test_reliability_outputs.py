"""Issue 14: outputs never cost a verdict; interrupted runs say so; files respect the umask; the cache is bounded.

Items 5 (output errors after configuration), 7 (interrupted runs), 11 (umask)
and 12 (compact, size-limited cache with least-recently-used eviction).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from uoc_test_helpers import FAKE_PROBE_CONFTEST, FAKE_UOC

from pytest_uoc.cache import evict_lru, touch
from pytest_uoc.report import atomic_write_bytes

FAKE_CONFTEST = FAKE_PROBE_CONFTEST + FAKE_UOC

GATE = '''
import pathlib
import shutil

import pytest
from pytest_uoc import assert_concept_not_retrievable

@pytest.mark.uoc_concept("three", model="forgetter")
def test_forgetter():
    {sabotage}
    assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
'''


# -- item 5: an output error after configuration never costs a verdict ------------------------------


def test_artifact_write_failure_does_not_fail_a_passing_gate(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(GATE.format(sabotage="pathlib.Path('art').write_text('now a file')"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-artifacts", "art")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*OutputWarning: pytest-uoc: could not write art*the verdict stands*"])


def test_report_write_failure_keeps_the_summary(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(GATE.format(sabotage="pathlib.Path('out').write_text('now a file')"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", "out/uoc.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "*pytest-uoc: could not write the report out/uoc.json:*",
        "*pytest-uoc: unlearning or concealment*",
        "test_forgetter*forgetter*three*forgotten*",
    ])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


# -- item 7: an interrupted run marks its report ------------------------------------------------------

INTERRUPTED = '''
def test_a_finishes(uoc_session, request):
    uoc_session.record({"test": request.node.nodeid, "concept": "three", "verdict": "forgotten",
                        "outcome": "passed"})

def test_b_is_interrupted(uoc_session, request):
    uoc_session.record({"test": request.node.nodeid, "concept": "three"})
    raise KeyboardInterrupt

def test_c_never_starts():
    pass
'''


def test_interrupted_run_marks_the_report_and_lists_unfinished_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_run=INTERRUPTED)
    report = pytester.path / "uoc.json"
    report.write_text('{"previous": "report"}')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--uoc-report", str(report))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    document = json.loads(report.read_text())
    assert document["interrupted"] is True
    assert document["unfinished"] == ["test_run.py::test_b_is_interrupted", "test_run.py::test_c_never_starts"]
    rows = {row["test"].split("::")[-1]: row for row in document["tests"]}
    assert rows["test_b_is_interrupted"]["outcome"] == "interrupted"
    assert rows["test_a_finishes"]["verdict"] == "forgotten"
    result.stdout.fnmatch_lines(["*interrupted: 2 test(s) did not finish: test_run.py::test_b_is_interrupted*",
                                 "*report: *uoc.json (marked interrupted)*"])


def test_finished_run_says_it_was_not_interrupted(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(GATE.format(sabotage="pass"))
    pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", "uoc.json").assert_outcomes(passed=1)
    document = json.loads((pytester.path / "uoc.json").read_text())
    assert document["interrupted"] is False and document["unfinished"] == []


# -- item 11: the umask decides the mode of reports and pictures ---------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "report.json", b"{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_report_and_pictures_of_a_run_are_readable_by_others(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(GATE.format(sabotage="pass"))
    old = os.umask(0o022)
    try:
        pytester.runpytest("-p", "no:cacheprovider", "--uoc-report", "uoc.json", "--uoc-artifacts", "art")
    finally:
        os.umask(old)
    files = [pytester.path / "uoc.json", *(pytester.path / "art").rglob("*.png")]
    assert len(files) >= 3
    assert {f.stat().st_mode & 0o777 for f in files} == {0o644}


# -- item 12: a compact cache with a size limit ---------------------------------------------------------


def _entry(folder: Path, name: str, size: int, age: float) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_evict_lru_removes_the_least_recently_used_first(tmp_path: Path) -> None:
    old = _entry(tmp_path, "trajectories/aa/old.pt", 400, 300)
    used = _entry(tmp_path, "classifiers/used.pt", 400, 200)
    new = _entry(tmp_path, "trajectories/bb/new.pt", 400, 100)
    touch(used)  # used now: the most recent
    assert evict_lru(tmp_path, 900) == (1, 400)
    assert not old.exists() and used.exists() and new.exists()
    assert not (tmp_path / "trajectories" / "aa").exists()  # emptied folders go too
    assert evict_lru(tmp_path, 500) == (1, 400)
    assert used.exists() and not new.exists()
    assert evict_lru(tmp_path, 0) == (0, 0)  # 0: no limit


def test_cache_limit_option_ini_and_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_limit(uoc_session):\n    assert uoc_session.settings.cache_max_mb == 5\n")
    pytester.runpytest("-p", "no:cacheprovider", "--uoc-cache-max-mb", "5").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nuoc_cache_max_mb = 5\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    monkeypatch.setenv("UOC_CACHE_MAX_MB", "-1")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*UOC_CACHE_MAX_MB (environment) = '-1': expected an integer >= 0*"])


def test_run_trims_the_cache_and_says_so(pytester: pytest.Pytester) -> None:
    cache = pytester.path / "cache"
    for i in range(4):
        _entry(cache, f"trajectories/{i:02d}/entry.pt", 600_000, 1000 - i)
    keep = _entry(cache, "classifiers/recent.pt", 600_000, 1)
    pytester.makepyfile("def test_row(uoc_session, request):\n"
                        "    uoc_session.record({'test': request.node.nodeid, 'concept': 'three'})\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-cache-dir", str(cache), "--uoc-cache-max-mb", "1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*cache: *cache (0.6 MB of 1 MB); evicted 4 least recently used file(s), 2.4 MB*"])
    assert keep.exists() and sum(1 for f in cache.rglob("*") if f.is_file()) == 1


def test_classifier_cache_is_stored_in_half_precision_and_agrees_with_a_fresh_run(tmp_path: Path) -> None:
    from pytest_uoc.scoring import train_domain_classifier

    gen = torch.Generator().manual_seed(0)
    original = torch.rand(16, 3, 16, 16, generator=gen) * 0.5 + 0.5
    unlearned = torch.rand(16, 3, 16, 16, generator=gen) * 0.5
    settings = {"epochs": 1, "image_size": 16, "batch_size": 8}
    fresh = train_domain_classifier(original, unlearned, cache_dir=tmp_path, **settings)
    payload = torch.load(fresh.cache_path, map_location="cpu", weights_only=True)
    floats = [v for v in payload["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    n_params = sum(v.numel() for v in floats)
    assert fresh.cache_path.stat().st_size < 2.2 * n_params  # not 4 bytes a number any more
    cached = train_domain_classifier(original, unlearned, cache_dir=tmp_path, **settings)
    assert cached.from_cache
    assert torch.equal(cached.probabilities(original), fresh.probabilities(original))
