"""Issue 22, reliability second round: each input the trial handled badly, now handled (pytester where the
plugin is involved). Each test failed before its fix."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

from pytest_uoc.cache import (
    CACHE_MARKER,
    NotACacheError,
    atomic_write_bytes,
    claim_cache,
    clear_cache,
    evict_lru,
)
from pytest_uoc.concept import Concept, read_prompt_file
from pytest_uoc.config import (
    MAX_SEEDS,
    MAX_STEPS,
    SettingError,
    check_output_file,
    resolve_settings,
)

NEVER_RUNS = "def test_never_runs():\n    raise AssertionError('ran')\n"


# -- data loss: --uoc-cache-clear removes only what pytest-uoc wrote -----------------------------------


def _own_cache(root: Path) -> Path:
    claim_cache(root)
    (root / "trajectories" / "ab").mkdir(parents=True)
    (root / "trajectories" / "ab" / "t.pt").write_bytes(b"x" * 100)
    (root / "classifiers").mkdir()
    (root / "classifiers" / "c.pt").write_bytes(b"y" * 50)
    return root


def test_cache_clear_refuses_a_folder_of_other_files(pytester: pytest.Pytester) -> None:
    home = pytester.mkdir("home")
    (home / "thesis.tex").write_text("years of work")
    pytester.makepyfile(NEVER_RUNS)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--uoc-cache-dir={home}", "--uoc-cache-clear")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--uoc-cache-dir (command line): {home} is not a pytest-uoc cache folder: it "
                                 f"holds thesis.tex, which pytest-uoc did not write*{CACHE_MARKER}*"])
    assert (home / "thesis.tex").read_text() == "years of work"


def test_cache_clear_removes_only_its_own_entries_and_says_so(pytester: pytest.Pytester) -> None:
    cache = _own_cache(pytester.path / "cache")
    (cache / "notes.txt").write_text("mine")  # a marked folder: a stranger's file still stays
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--uoc-cache-dir={cache}", "--uoc-cache-clear")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*pytest-uoc: cache: cleared {cache} (2 file(s), 0.0 MB of pytest-uoc's entries; "
                                 "nothing else touched)"])
    assert not (cache / "trajectories").exists() and not (cache / "classifiers").exists()
    assert (cache / "notes.txt").read_text() == "mine" and (cache / CACHE_MARKER).is_file()


def test_cache_clear_does_nothing_under_collect_only(pytester: pytest.Pytester) -> None:
    cache = _own_cache(pytester.path / "cache")
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--uoc-cache-dir={cache}", "--uoc-cache-clear",
                                "--collect-only")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"*cache: {cache} not cleared (--collect-only runs nothing)*"])
    assert (cache / "trajectories" / "ab" / "t.pt").is_file()


def test_uoc_cache_clear_environment_variable_is_read(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _own_cache(pytester.path / "cache")
    pytester.makepyfile("def test_ok():\n    pass\n")
    monkeypatch.setenv("UOC_CACHE_CLEAR", "1")
    pytester.runpytest("-p", "no:cacheprovider", f"--uoc-cache-dir={cache}").assert_outcomes(passed=1)
    assert not (cache / "trajectories").exists()


def test_cache_functions_never_touch_files_they_did_not_write(tmp_path: Path) -> None:
    stranger = tmp_path / "other"
    stranger.mkdir()
    (stranger / "a.txt").write_text("keep")
    with pytest.raises(NotACacheError, match="a.txt"):
        clear_cache(stranger)
    with pytest.raises(NotACacheError):
        evict_lru(stranger, 1)
    assert (stranger / "a.txt").read_text() == "keep"
    legacy = tmp_path / "legacy"  # a cache from before the marker: only pytest-uoc's folders
    (legacy / "classifiers").mkdir(parents=True)
    (legacy / "classifiers" / "c.pt").write_bytes(b"z" * 10)
    assert clear_cache(legacy) == (1, 10)
    assert clear_cache(tmp_path / "missing") == (0, 0)


# -- output paths: checked for real before the work, never replacing a device, fifo or link --------------


def test_report_into_an_unwritable_place_is_refused_at_configuration(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="nothing can be written in /proc"):
        check_output_file("/proc/nope/r.json")


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_report_onto_a_device_is_refused(device: str) -> None:
    if not os.path.exists(device):
        pytest.fail(f"{device} is missing on this machine")
    with pytest.raises(SettingError, match=f"{device} is a character device.*never replaces"):
        check_output_file(device)
    with pytest.raises(OSError, match="character device"):
        atomic_write_bytes(device, b"{}")
    assert Path(device).is_char_device()


def test_report_onto_a_fifo_or_socket_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SettingError, match="is a fifo"):
        check_output_file(str(fifo))
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(OSError, match="is a socket"):
            atomic_write_bytes(sock_path, b"{}")
    assert fifo.is_fifo()


def test_report_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    check_output_file(str(link))
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "made" / "later.json")
    atomic_write_bytes(dangling, b"x")
    assert dangling.is_symlink() and (tmp_path / "made" / "later.json").read_bytes() == b"x"


def test_report_and_artifacts_at_one_path_are_refused_before_the_work() -> None:
    with pytest.raises(SettingError, match="--uoc-report = 'out' is the folder --uoc-artifacts = 'out'"):
        resolve_settings({"report": "out", "artifacts": "out"}, {}, {})


# -- settings that silently meant something else -----------------------------------------------------------


@pytest.mark.parametrize("name", ["steps", "seeds", "psis", "report"])
def test_an_empty_option_value_is_refused(name: str) -> None:
    with pytest.raises(SettingError, match=f"--uoc-{name} \\(command line\\) is empty; give a value"):
        resolve_settings({name: ""}, {}, {})
    with pytest.raises(SettingError, match=f"uoc_{name} \\(ini\\) is empty"):
        resolve_settings({}, {name: " "}, {})
    assert resolve_settings({}, {}, {f"UOC_{name.upper()}": ""}).explicit(name) is False  # VAR= unsets


def test_a_bad_environment_value_is_reported_even_when_the_option_overrides_it() -> None:
    with pytest.raises(SettingError, match="UOC_STEPS \\(environment\\) = 'many' \\(overridden by --uoc-steps, but "
                                           "wrong\\)"):
        resolve_settings({"steps": "5"}, {}, {"UOC_STEPS": "many"})


def test_a_decimal_comma_psi_grid_is_refused() -> None:
    with pytest.raises(SettingError, match="uoc_psis \\(ini\\) = '0,1': .*decimal comma.*write 0.1"):
        resolve_settings({}, {"psis": "0,1"}, {})


def test_huge_seed_ranges_and_step_counts_are_refused_at_once() -> None:
    with pytest.raises(SettingError, match=f"2000000001 seeds per prompt; expected at most {MAX_SEEDS}"):
        resolve_settings({"seeds": "0-2000000000"}, {}, {})
    with pytest.raises(SettingError, match=f"--uoc-steps \\(command line\\) = '5000': expected an integer in "
                                           f"\\[1, {MAX_STEPS}\\]"):
        resolve_settings({"steps": "5000"}, {}, {})


def test_duplicate_and_empty_prompts_are_refused() -> None:
    with pytest.raises(ValueError, match="'A three' is given twice \\(as 'a three'\\)"):
        Concept("three", ("a three", "A three"))
    with pytest.raises(ValueError, match="every prompt must be a non-empty string"):
        Concept("three", ("a three", ""))


def test_marker_anchor_with_semicolons_is_one_anchor_per_prompt() -> None:
    concept = Concept.from_marker(["three"], {"prompts": ["a three", "a red three"], "anchor": "a digit;a red digit"})
    assert concept.anchor_prompts == ("a digit", "a red digit")


def test_a_binary_prompts_file_is_named(tmp_path: Path) -> None:
    binary = tmp_path / "prompts.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match=f"prompt file {binary} is not UTF-8 text"):
        read_prompt_file(binary)


def test_two_concept_markers_on_one_test_are_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.uoc_concept("three", prompts=["a three"], stepz=3)
        class TestGate:
            @pytest.mark.uoc_concept("three", prompts=["a handwritten three"])
            def test_marked(self, uoc):
                raise AssertionError("ran")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-gold-three")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_marked: 2 uoc_concept markers*keep one marker*"])


def test_long_space_form_value_is_not_a_crash(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-anchor", "a" * 5000)
    result.assert_outcomes(passed=1)


def test_cuda_without_cuda_is_one_usage_error(pytester: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.fail("this check needs a machine without CUDA (the CI machines)")
    pytester.makepyfile(NEVER_RUNS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--uoc-device (command line) = 'cuda', but this machine has no CUDA device; use "
                                 "--uoc-device cpu*"])
    assert len(result.stderr.lines) < 5


# -- usage errors survive xdist ------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ['"three", prompts=["a three"], stepz=3', '"three", prompts=["a three"], seeds=12'])
def test_marker_usage_error_under_xdist_is_a_usage_error(pytester: pytest.Pytester, marker: str) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.uoc_concept({marker})
        def test_marked(uoc):
            raise AssertionError("ran")

        def test_other():
            raise AssertionError("ran")
    """)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--uoc-unlearned",
                                           "zoo:digits-gold-three")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stdout.fnmatch_lines(["ERROR: pytest-uoc: *test_marked: *"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*AssertionError*")


# -- a thin ψ grid is never a pass ---------------------------------------------------------------------------


def _thin_curve(psis: tuple[float, ...]):
    from pytest_uoc.scoring import calibrated_curve

    n = 64
    low = np.zeros(n)
    return calibrated_curve({p: low for p in psis}, {p: low for p in psis}, {p: low for p in psis},
                            original_steps={p: round(p * 50) for p in psis}, total_steps=50, anchors=("a digit",),
                            scorer="test judge")


@pytest.mark.parametrize(("psis", "missing"), [((0.0, 0.55), "between 0 and 0.55"),
                                               ((0.0, 0.05, 0.55), "between 0.05 and 0.55"),
                                               ((0.0, 0.05, 0.15, 0.25), "between 0.25 and 0.55")])
def test_a_thin_grid_is_inconclusive_naming_the_missing_psi(psis: tuple[float, ...], missing: str) -> None:
    from pytest_uoc.scoring import decide_calibrated

    verdict = decide_calibrated(_thin_curve(psis), psi_limit=0.55, ccs_max=0.2, heldout_accuracy=0.95,
                                images_differ=True)
    assert verdict.kind == "inconclusive" and not verdict.passed
    assert f"no ψ is tested {missing}" in verdict.reason and "--uoc-psis" in verdict.reason


@pytest.mark.parametrize("psis", [(0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55), (0.0, 0.15, 0.35, 0.55)])
def test_a_covering_grid_can_be_forgotten(psis: tuple[float, ...]) -> None:
    from pytest_uoc.scoring import decide_calibrated

    verdict = decide_calibrated(_thin_curve(psis), psi_limit=0.55, ccs_max=0.2, heldout_accuracy=0.95,
                                images_differ=True)
    assert verdict.kind == "forgotten", verdict.reason


def test_a_kind_for_a_zoo_name_is_refused() -> None:
    with pytest.raises(SettingError, match="--uoc-unlearned-kind \\(command line\\) = 'lora' is for weight files"):
        resolve_settings({"unlearned": "zoo:digits-esd-three", "unlearned_kind": "lora"}, {}, {})


def test_tests_that_fail_on_an_assertion_argument_still_get_rows(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        from pytest_uoc import assert_concept_not_retrievable

        @pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
        def test_bad_psi():
            assert_concept_not_retrievable(psi=2.0, ccs_max=0.2)
    """)
    report = pytester.path / "r.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "--uoc-unlearned", "zoo:digits-gold-three",
                                f"--uoc-report={report}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pytest-uoc: unlearning or concealment*", "*test_bad_psi*three*failed*"])
    import json

    rows = json.loads(report.read_text())["tests"]
    assert [(r["concept"], r["outcome"]) for r in rows] == [("three", "failed")]


def test_uoc_audit_refuses_empty_and_repeated_prompts_and_a_missing_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from pytest_uoc import cli

    base = ["audit", "--unlearned", "zoo:digits-gold-three", "--concept", "three", "--device", "cpu"]
    assert cli.main([*base, "--prompt", ""]) == cli.EXIT_USAGE
    assert "every prompt must be a non-empty string" in capsys.readouterr().err
    assert cli.main([*base, "--prompt", "a three", "--prompt", "a three"]) == cli.EXIT_USAGE
    assert "'a three' is given twice" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main([*base[:-1], "cuda"]) == cli.EXIT_USAGE
        assert "--device (command line) = 'cuda', but this machine has no CUDA device" in capsys.readouterr().err


def test_with_few_steps_the_earliest_handoff_counts_as_covering() -> None:
    """At 4 steps ψ 0.3 is the earliest hand-off there is (one original step): no gap the schedule could fill."""
    from pytest_uoc.scoring.calibration import thin_grid_gap

    def four_steps(psi: float) -> int:  # leading timesteps 751, 501, 251, 1: original steps with t >= 1000(1 - ψ)
        return sum(t >= round(1000 * (1 - psi)) for t in (751, 501, 251, 1)) if psi > 0 else 0

    assert thin_grid_gap([0.3], 0.3, four_steps) is None
    assert thin_grid_gap([0.3], 0.3) is not None  # without the schedule: ψ only
    assert thin_grid_gap([0.3, 0.8], 0.8, four_steps) is not None  # 0.5 hands off at 2 steps: skipped


def test_fifty_steps_still_need_a_covering_grid() -> None:
    from pytest_uoc.scoring.calibration import thin_grid_gap

    def fifty_steps(psi: float) -> int:
        return sum(t >= round(1000 * (1 - psi)) for t in range(981, 0, -20)) if psi > 0 else 0

    assert thin_grid_gap([0.55], 0.55, fifty_steps)[:2] == (0.0, 0.55)
    assert thin_grid_gap([0.05, 0.15, 0.25, 0.35, 0.45, 0.55], 0.55, fifty_steps) is None


# -- an original given as a single checkpoint file --------------------------------------------------------------


def test_a_single_file_original_is_a_usage_error_that_says_how_to_convert(pytester: pytest.Pytester) -> None:
    checkpoint = pytester.path / "sd-v1-4.ckpt"
    checkpoint.write_bytes(b"not read")
    pytester.makepyfile(NEVER_RUNS)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--uoc-original={checkpoint}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--uoc-original (command line): the original '{checkpoint}' is a single checkpoint "
                                 "file; pytest-uoc loads the original from a diffusers pipeline folder*"
                                 "from_single_file*local_files_only=True).save_pretrained('sd-diffusers')*"])


def test_uoc_audit_refuses_a_single_file_original(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_uoc.cli import EXIT_USAGE, main

    checkpoint = tmp_path / "v1-5-pruned-emaonly.safetensors"
    checkpoint.write_bytes(b"not read")
    assert main(["audit", "--original", str(checkpoint), "--unlearned", "zoo:digits-esd-three", "--concept", "three",
                 "--prompt", "a handwritten three", "--prompt", "the digit 3"]) == EXIT_USAGE
    assert "--original: the original" in capsys.readouterr().err
