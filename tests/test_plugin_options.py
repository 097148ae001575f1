"""The plugin's options, precedence, usage errors and the gpu marker (pytester)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_uoc.config import OPTIONS, SettingError, parse_seeds, resolve_settings


def test_help_lists_the_uoc_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "*unlearning or concealment (pytest-uoc)*",
        "*--uoc-original=LOCATION*",
        "*--uoc-unlearned=LOCATION*",
        "*--uoc-device=DEVICE*",
        "*--uoc-cache-clear*",
        "*uoc_seeds*",
    ])


def test_plugin_module_does_not_import_torch() -> None:
    code = "import sys, pytest_uoc.plugin, pytest_uoc; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--uoc-steps", "0"], "*--uoc-steps (command line) = '0': expected an integer in [[]1, 1000[]]*"),
        (["--uoc-device", "gpu0"], "*--uoc-device (command line) = 'gpu0': expected auto, cpu, cuda or cuda:N*"),
        (["--uoc-backbone", "vgg"], "*--uoc-backbone*'vgg': expected one of: resnet18, densenet121, efficientnet_b0*"),
        (["--uoc-seeds", "abc"], "*--uoc-seeds*'abc': expected N (seeds 0..N-1)*"),
        (["--uoc-seeds", "2"], "*--uoc-seeds*'2': expected at least 12 seeds*"),
        (["--uoc-guidance-scale", "nan"], "*--uoc-guidance-scale*'nan': expected a number in*"),
        (["--uoc-psis", "0,1.5"], "*--uoc-psis*: expected a comma-separated list of numbers in [[]0, 1]*"),
        (["--uoc-unlearned", "no/such/dir"], "*--uoc-unlearned*'no/such/dir': the path does not exist*"),
        (["--uoc-unlearned", "zoo:no-such-model"], "*--uoc-unlearned*zoo:no-such-model*"),
        (["--uoc-dtype", "float8"], "*--uoc-dtype*'float8': expected one of: auto, float32*"),
        (["--uoc-mix-branches", "maybe"], "*--uoc-mix-branches*'maybe': expected one of: auto, on, off*"),
        (["--uoc-compile", "sometimes"], "*--uoc-compile*'sometimes': expected true or false*"),
        (["--uoc-classifier-recipe", "big"], "*--uoc-classifier-recipe*'big': expected one of: small, paper*"),
        (["--uoc-classifier-size", "8"], "*--uoc-classifier-size*'8': expected an integer in [[]16, 2048[]]*"),
    ],
)
def test_bad_option_is_a_usage_error_before_any_test(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError('ran')\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*pytest-uoc: {message.lstrip('*')}"])
    result.stdout.no_fnmatch_line("*ran*")


def test_bad_environment_variable_is_a_usage_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UOC_STEPS", "many")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*UOC_STEPS (environment) = 'many': expected an integer in [[]1, 1000[]]*"])


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nuoc_batch_size = -3\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*uoc_batch_size (ini) = '-3': expected an integer >= 1*"])


def test_precedence_command_line_over_environment_over_ini(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\nuoc_steps = 11\nuoc_batch_size = 3\nuoc_guidance_scale = 2.0\n")
    monkeypatch.setenv("UOC_STEPS", "22")
    monkeypatch.setenv("UOC_BATCH_SIZE", "5")
    pytester.makepyfile(
        """
        def test_settings(uoc_session):
            s = uoc_session.settings
            assert (s.steps, s.batch_size, s.guidance_scale) == (33, 5, 2.0)
            assert s.sources["steps"] == "command line"
            assert s.sources["batch_size"] == "environment"
            assert s.sources["guidance_scale"] == "ini"
            assert s.sources["backbone"] == "default"
        """
    )
    result = pytester.runpytest("--uoc-steps", "33")
    result.assert_outcomes(passed=1)


def test_fast_path_options_reach_the_engine(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nuoc_mix_branches = on\nuoc_seeds = 12\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.uoc_concept("red", unlearned="zoo:digits-gold-red")
        def test_engine(uoc):
            assert uoc.engine.mix_branches is True and uoc.engine.mixing
            assert uoc.engine.compile_unet is True
        """
    )
    result = pytester.runpytest("--uoc-compile", "true", "--uoc-device", "cpu")
    result.assert_outcomes(passed=1)


def test_marker_keyword_has_the_lowest_precedence() -> None:
    settings = resolve_settings({"steps": "9"}, {}, environ={})
    marked = settings.with_marker(steps=4, guidance_scale=3.0, seeds=list(range(5, 17)))
    assert marked.steps == 9  # the command line wins over the marker
    assert marked.guidance_scale == 3.0
    assert marked.seeds == tuple(range(5, 17))
    with pytest.raises(SettingError, match=r"uoc_concept marker keyword batch_size='x'"):
        settings.with_marker(batch_size="x")


def test_parse_seeds_forms() -> None:
    assert parse_seeds("4") == (0, 1, 2, 3)
    assert parse_seeds("10-13") == (10, 11, 12, 13)
    assert parse_seeds("3, 1, 4") == (3, 1, 4)
    assert parse_seeds([7, 8]) == (7, 8)
    for bad in ("0", "5-2", "-1,2", "x", [], [-1, 2], [1.5, 2]):
        with pytest.raises(SettingError):
            parse_seeds(bad)


def test_every_option_has_flag_ini_and_env_names() -> None:
    names = {o.name for o in OPTIONS}
    for required in ("original", "unlearned", "reference", "device", "dtype", "steps", "guidance_scale",
                     "seeds", "batch_size", "backbone", "report", "artifacts", "cache_dir"):
        assert required in names
    for option in OPTIONS:
        assert option.cli.startswith("--uoc-") and option.ini.startswith("uoc_")
        assert option.env_var.startswith("UOC_")


GPU_TEST = """
import pytest

@pytest.mark.gpu
def test_on_gpu():
    pass
"""


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="checks the behaviour on machines without CUDA")
@pytest.mark.parametrize("select", [[], ["-m", "gpu"]])
def test_gpu_marker_skips_with_reason_without_cuda(pytester: pytest.Pytester, select: list[str]) -> None:
    pytester.makepyfile(GPU_TEST)
    result = pytester.runpytest("-rs", *select)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*CUDA is not available*"])


def test_gpu_marker_runs_on_cpu_on_purpose(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TEST)
    result = pytester.runpytest("--uoc-device", "cpu", "-m", "gpu")
    result.assert_outcomes(passed=1)


def test_assertion_without_marker_or_probe_says_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_uoc import assert_concept_not_retrievable

        def test_unmarked():
            assert_concept_not_retrievable(psi=0.55, ccs_max=0.2)
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*no probe in test_*::test_unmarked*uoc_concept*or pass probe=uoc*"])


def test_missing_unlearned_model_is_explained(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.uoc_concept("three", prompts=["a handwritten three"])
        def test_needs_model(unlearned_pipeline):
            pass
        """
    )
    result = pytester.runpytest("--uoc-original", str(pytester.path))
    result.stdout.fnmatch_lines(["*no unlearned model. Give --uoc-unlearned LOCATION*"])
    assert result.ret != pytest.ExitCode.OK
