"""Issue 14: settings that silently did something else are usage errors naming the fix (pytester).

Items 2 (``--uoc-NAME PATH`` read as a test path), 3 (marker mistakes), 4 (the
real minimum number of seeds) and 5 (output paths checked at configuration time).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from pytest_uoc.config import (
    CLASSIFIER_MIN_PER_CLASS,
    CLASSIFIER_MIN_TRAIN_SEEDS,
    MIN_SEEDS,
    VERDICT_MIN_IMAGES,
    SettingError,
    check_output_dir,
    check_output_file,
    min_seeds,
    resolve_settings,
)

NEVER_RUNS = "def test_never_runs():\n    raise AssertionError('ran')\n"
STEPS_FROM_INI = "def test_steps(uoc_session):\n    assert uoc_session.settings.steps == 7\n"


# -- item 2: the README's space form with a path outside the repository ---------------------------


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint outside the pytester repository."""
    weights = tmp_path_factory.mktemp("elsewhere") / "unet.safetensors"
    weights.write_bytes(b"not read by these tests")
    return weights


def test_space_form_with_a_path_outside_the_repository_keeps_the_ini(pytester: pytest.Pytester,
                                                                    outside: Path) -> None:
    pytester.makeini("[pytest]\nuoc_steps = 7\n")
    pytester.makepyfile(STEPS_FROM_INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--uoc-unlearned", str(outside))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"rootdir: {pytester.path}", "configfile: tox.ini"])


def test_readme_main_job_run_twice_keeps_the_examples_ini(pytester: pytest.Pytester) -> None:
    """``pytest examples --uoc-report uoc-report.json`` once the report exists: the values are paths too."""
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\naddopts = '-p no:doctest'\n")
    examples = pytester.mkdir("examples")
    (examples / "pytest.ini").write_text("[pytest]\nuoc_steps = 7\n")
    (examples / "test_gate.py").write_text(STEPS_FROM_INI)
    (pytester.path / "uoc-report.json").write_text("{}")
    pytester.mkdir("uoc-artifacts")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "examples", "--uoc-report", "uoc-report.json",
                                           "--uoc-artifacts", "uoc-artifacts")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"rootdir: {examples}", "configfile: pytest.ini"])


def test_space_form_that_cannot_be_repaired_stops_with_the_fix(pytester: pytest.Pytester, outside: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\nuoc_steps = 7\n")
    pytester.makepyfile(STEPS_FROM_INI)
    import pytest_uoc.plugin

    def cannot(*args: object) -> None:
        raise AttributeError("another pytest")

    monkeypatch.setattr(pytest_uoc.plugin, "_adopt_setup", cannot)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", str(outside))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"*pytest-uoc: pytest read the value of --uoc-unlearned {outside} as a test path*instead of rootdir "
        f"{pytester.path} and ini file {pytester.path / 'tox.ini'}*Write the option with '=': --uoc-unlearned={outside}",
    ])


def test_equals_form_and_space_form_inside_the_repository_keep_the_ini(pytester: pytest.Pytester,
                                                                      outside: Path) -> None:
    pytester.makeini("[pytest]\nuoc_steps = 7\n")
    pytester.makepyfile(STEPS_FROM_INI)
    (pytester.path / "unet.safetensors").write_bytes(b"x")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--uoc-unlearned={outside}")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--uoc-unlearned", "unet.safetensors")
    result.assert_outcomes(passed=1)


# -- item 3: marker mistakes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('"x", prompts=[]', "*uoc_concept('x', prompts=[[][]]) lists no prompts; give the prompts*"),
        ('"spaceship"', "*uoc_concept('spaceship') has no prompts and 'spaceship' is not a concept of the embedded "
                        "zoo; give prompts=*"),
        ('"three", prompts=["a three"], stepz=3', "*unknown keyword stepz=3; did you mean steps=3?*"),
        ('"three", prompts=["a three"], steps=0', "*uoc_concept marker keyword steps=0: expected an integer in [[]1, 1000[]]*"),
        ('"three", prompts=["a three"], guidance_scale=float("nan")', "*guidance_scale=nan: expected a number*"),
        ('"three", prompts=["a three"], device="cpu"', "*device holds for the whole session*--uoc-device*"),
    ],
)
def test_marker_mistake_is_a_usage_error_before_any_test(pytester: pytest.Pytester, marker: str, message: str) -> None:
    pytester.makepyfile(f"""
        import pytest

        def test_first():
            raise AssertionError("ran")

        @pytest.mark.uoc_concept({marker})
        def test_marked(uoc):
            raise AssertionError("ran")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-gold-three")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"*pytest-uoc: test_marker_mistake_is_a_usage_error_before_any_test.py::test_marked: "
                                 f"{message}"])
    result.stdout.no_fnmatch_line("*AssertionError*")
    result.stdout.fnmatch_lines(["*no tests ran*"])


def test_zoo_default_prompts_need_the_zoo_original(pytester: pytest.Pytester) -> None:
    original = pytester.mkdir("my-sd")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.uoc_concept("three")
        def test_marked(uoc):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-original", str(original),
                                "--uoc-unlearned", str(original))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*uoc_concept('three') has no prompts; the zoo's default prompts for 'three' apply "
                                 "only when the original model is the zoo's*give prompts=[[]...] on the marker*"])


def test_marker_keyword_is_validated_even_when_the_command_line_wins() -> None:
    settings = resolve_settings({"steps": "9"}, {}, environ={})
    with pytest.raises(SettingError, match=r"steps=0: expected an integer in \[1, 1000\]"):
        settings.with_marker(steps=0)
    with pytest.raises(SettingError, match="did you mean seeds"):
        settings.with_marker(sedes=[1, 2])


def test_a_marker_that_overrides_the_uoc_fixture_may_carry_its_own_keywords(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef uoc(request):\n    return 'mine'\n")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.uoc_concept("three", model="concealer")
        def test_marked(uoc):
            assert uoc == "mine"
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


# -- item 4: the real minimum number of seeds ------------------------------------------------------


def test_min_seeds_follows_from_the_classifier_and_the_verdict() -> None:
    from pytest_uoc.scoring import classifier, verdict

    assert CLASSIFIER_MIN_PER_CLASS == classifier.MIN_PER_CLASS
    assert VERDICT_MIN_IMAGES == inspect.signature(verdict.decide).parameters["min_images"].default
    classifier._split_groups(list(range(CLASSIFIER_MIN_TRAIN_SEEDS)), 0.25, 0)
    with pytest.raises(ValueError, match="too few seed groups"):
        classifier._split_groups(list(range(CLASSIFIER_MIN_TRAIN_SEEDS - 1)), 0.25, 0)
    assert [min_seeds(n) for n in (1, 2, 3, 11)] == [31, 15, 12, 12] and MIN_SEEDS == 12
    for prompts in range(1, 12):  # the minimum is enough, one fewer is not
        seeds = min_seeds(prompts)
        for s, ok in ((seeds, True), (seeds - 1, False)):
            train, scored = s // 2, s - s // 2
            enough = (train >= CLASSIFIER_MIN_TRAIN_SEEDS and prompts * train >= CLASSIFIER_MIN_PER_CLASS
                      and prompts * scored >= VERDICT_MIN_IMAGES)
            assert enough is ok, (prompts, s)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("option", "*--uoc-seeds (command line) = '8': expected at least 12 seeds*one prompt needs 31*"),
        ("env", "*UOC_SEEDS (environment) = '4': expected at least 12 seeds*"),
        ("ini", "*uoc_seeds (ini) = '3,3,3,3,3,3,3,3,3,3,3,3': expected distinct seeds*"),
    ],
)
def test_too_few_seeds_anywhere_is_a_usage_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                  where: str, message: str) -> None:
    pytester.makepyfile(NEVER_RUNS)
    args = ["-p", "no:cacheprovider"]
    if where == "option":
        args += ["--uoc-seeds", "8"]
    elif where == "env":
        monkeypatch.setenv("UOC_SEEDS", "4")
    else:
        pytester.makeini("[pytest]\nuoc_seeds = " + ",".join(["3"] * 12) + "\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(
    ("marker", "args", "message"),
    [
        ('"three", prompts=["a handwritten three"]', ["--uoc-seeds", "16"],
         "*16 seeds are too few for 1 prompt*use at least 31 seeds (--uoc-seeds 31) or more prompts*"),
        ('"three", prompts=["a three", "the digit 3"], seeds=list(range(14))', [],
         "*uoc_concept marker seeds: 14 seeds are too few for 2 prompts*use at least 15 seeds*"),
        ('"three", prompts=["a three"], seeds=[1, 2, 3, 4]', [], "*seeds=[[]1, 2, 3, 4]: expected at least 12 seeds*"),
    ],
)
def test_too_few_seeds_for_the_concepts_prompts(pytester: pytest.Pytester, marker: str, args: list[str],
                                                message: str) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.uoc_concept({marker})
        def test_marked(uoc):
            raise AssertionError("ran")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-gold-three", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


# -- item 5: output paths checked at configuration time --------------------------------------------


@pytest.mark.parametrize(
    ("option", "target", "message"),
    [
        ("--uoc-report", "folder", "*--uoc-report (command line) = *folder*names a folder; give a file path such as*"),
        ("--uoc-report", "afile/r.json", "*--uoc-report (command line)*afile is a file, so nothing can be created*"),
        ("--uoc-artifacts", "afile", "*--uoc-artifacts (command line)*afile is a file; give a folder*"),
        ("--uoc-artifacts", "afile/art", "*--uoc-artifacts*afile is a file, so nothing can be created*"),
        ("--uoc-cache-dir", "afile", "*--uoc-cache-dir (command line)*afile is a file; give a folder*"),
    ],
)
def test_bad_output_path_is_a_usage_error_before_any_test(pytester: pytest.Pytester, option: str, target: str,
                                                          message: str) -> None:
    pytester.mkdir("folder")
    (pytester.path / "afile").write_text("a file")
    pytester.makepyfile(NEVER_RUNS)
    result = pytester.runpytest("-p", "no:cacheprovider", f"{option}={target}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*pytest-uoc: {message.lstrip('*')}"])
    result.stdout.no_fnmatch_line("*AssertionError*")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_output_place_is_a_usage_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(SettingError, match="is not writable"):
            check_output_file(str(locked / "r.json"))
        with pytest.raises(SettingError, match="is not writable"):
            check_output_dir(str(locked / "art"))
    finally:
        locked.chmod(0o700)


def test_output_checks_accept_new_places(tmp_path: Path) -> None:
    assert check_output_file(str(tmp_path / "a" / "b" / "r.json")) == str(tmp_path / "a" / "b" / "r.json")
    assert check_output_dir(str(tmp_path / "new" / "art")) == str(tmp_path / "new" / "art")
    assert not (tmp_path / "a").exists()  # nothing is created by a check
