"""Issue 14 item 6: ``uoc audit`` validates like the plugin, exits 0/1/2/3, shares the plugin's cache, shows progress."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_uoc import cli
from pytest_uoc.session import UocSession

BASE = ["audit", "--unlearned", "zoo:digits-esd-three", "--concept", "three"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "2"], "--seeds (command line) = '2': expected at least 12 seeds"),
        (["--steps", "0"], "--steps (command line) = '0': expected an integer in [1, 1000]"),
        (["--batch-size", "0"], "--batch-size (command line) = '0': expected an integer >= 1"),
        (["--guidance-scale", "nan"], "--guidance-scale (command line) = 'nan': expected a number in"),
        (["--guidance-scale", "-50"], "--guidance-scale (command line) = '-50': expected a number in"),
        (["--device", "gpu0"], "--device (command line) = 'gpu0': expected auto, cpu, cuda or cuda:N"),
        (["--unlearned", "no/such/file"], "--unlearned (command line) = 'no/such/file': the path does not exist"),
        (["--psi", "nan"], "--psi = 'nan': expected a number in [0.0, 1.0]"),
        (["--ccs-max", "2"], "--ccs-max = '2': expected a number in [0.0, 1.0]"),
        (["--out", "afile"], "--out = 'afile': afile is a file; give a folder"),
        (["--concept", "spaceship"], "--concept 'spaceship' is not a concept of the embedded zoo"),
        (["--prompt", "a three", "--seeds", "16"], "--seeds: 16 seeds are too few for 1 prompt"),
        (["--original", "."], "no prompts for --concept 'three': the zoo's default prompts apply only to the zoo's"),
    ],
)
def test_user_mistake_exits_2_without_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], extra: list[str],
                                                  message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file")
    monkeypatch.setattr(cli, "_run", lambda *a, **k: pytest.fail("the probe ran"))
    assert cli.main(BASE + extra) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"uoc: error: {message}" in err
    assert "Traceback" not in err


def test_environment_variables_are_validated_like_the_plugins(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UOC_STEPS", "many")
    assert cli.main(BASE) == cli.EXIT_USAGE
    assert "UOC_STEPS (environment) = 'many': expected an integer in [1, 1000]" in capsys.readouterr().err


def test_argparse_mistakes_exit_2() -> None:
    out = subprocess.run([sys.executable, "-m", "pytest_uoc.cli", "audit", "--concept", "three"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--unlearned" in out.stderr and "Traceback" not in out.stderr


def test_internal_error_exits_3_and_interrupt_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_run", broken)
    assert cli.main(BASE) == cli.EXIT_INTERNAL == 3
    assert "uoc: internal error: RuntimeError: a bug" in capsys.readouterr().err

    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", interrupted)
    assert cli.main(BASE) == 130


def test_a_model_that_does_not_load_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)

    def no_load(self: UocSession, location: str | None = None) -> None:
        raise ValueError("header too small in unet.safetensors")

    monkeypatch.setattr(UocSession, "load_original", no_load)
    assert cli.main(BASE) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "could not load the models (zoo:digits, zoo:digits-esd-three)" in err and "header too small" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("given", [False, True])
def test_audit_uses_the_plugins_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, given: bool) -> None:
    """The same folder as the plugin (rootdir/.pytest_cache/uoc, or --cache-dir), and session.probe's caches."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    seen: dict[str, object] = {}
    monkeypatch.setattr(UocSession, "load_original", lambda self, location=None: "original")
    monkeypatch.setattr(UocSession, "load_unlearned", lambda self, location, original, role="unlearned": "unlearned")

    def probe(self: UocSession, concept, original, unlearned, reference, settings, labels):
        seen.update(cache_dir=self.cache_dir, models=(original, unlearned, reference), seeds=settings.seeds)
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(UocSession, "probe", probe)
    extra = ["--cache-dir", str(tmp_path / "mine"), "--cache-max-mb", "7"] if given else []
    assert cli.main(BASE + extra) == 130
    assert seen["cache_dir"] == (tmp_path / "mine" if given else tmp_path / ".pytest_cache" / "uoc")
    assert seen["models"] == ("original", "unlearned", None)


def test_audit_builds_its_engine_from_the_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--cache-dir, --mix-branches, --compile, --batch-size and --steps reach the engine, as in the plugin."""
    import pytest_uoc.diffusion as diffusion

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(UocSession, "load_original", lambda self, location=None: "original")
    monkeypatch.setattr(UocSession, "load_unlearned", lambda self, location, original, role="unlearned": "unlearned")
    seen: dict[str, object] = {}

    class Engine:
        def __init__(self, original: object, other: object, **kwargs: object) -> None:
            seen.update(kwargs, models=(original, other))
            raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(diffusion, "PartialDiffusion", Engine)
    options = ["--cache-dir", str(tmp_path / "mine"), "--mix-branches", "on", "--compile", "true",
               "--batch-size", "5", "--steps", "7"]
    assert cli.main(BASE + options) == 130
    assert seen["models"] == ("original", "unlearned")
    assert seen["cache"].folder == tmp_path / "mine" / "trajectories"
    assert (seen["mix_branches"], seen["compile_unet"]) == (True, True)
    assert (seen["batch_size"], seen["num_inference_steps"]) == (5, 7)
    seen.clear()
    assert cli.main(BASE + ["--cache-dir", str(tmp_path / "mine"), "--mix-branches", "off"]) == 130
    assert (seen["mix_branches"], seen["compile_unet"]) == (False, False)


def test_progress_line_only_on_a_terminal_or_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    progress = cli._Progress(True)
    progress.set("probing: sweeps and classifier")
    time.sleep(1.2)
    progress.close()
    text = stream.getvalue()
    assert "\r\x1b[Kuoc: probing: sweeps and classifier (" in text and "\n" not in text
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    progress = cli._Progress(False)
    progress.set("anything")
    progress.close()
    assert quiet.getvalue() == ""


def test_help_names_the_exit_codes_and_the_plugins_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--steps", "--seeds", "--batch-size", "--guidance-scale", "--cache-dir", "--cache-max-mb",
                 "--progress", "--dtype", "--backbone-weights"):
        assert flag in text
    assert "0 the gate passed, 1 it failed, 2 a usage error, 3 an internal error" in text
