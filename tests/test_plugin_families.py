"""The plugin and ``uoc audit`` on SDXL, SD3 and Flux pipeline folders (tiny random weights, offline, CPU).

``--uoc-original FOLDER`` loads a saved pipeline with the class its ``model_index.json``
names; ``--uoc-unlearned`` takes the family's checkpoints (a UNet state dict for SDXL, a
``transformer/`` folder for SD3 and Flux); the probe, the calibrated gate, the JSON report
and the CLI run on them as on SD 1.x. With a judge that always finds the concept the
calibrated verdict is ``not_erased`` (the unlearned model alone "shows" it); ``uoc audit``
without a judge finds the random UNet ``forgotten`` (below both nulls). Flux is loaded and
probed up to the engine only: ``FluxPipeline`` draws 256 px images by default, too slow here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from family_builders import (
    build_flux,
    build_sd3,
    build_sdxl,
    flux_transformer,
    sd3_transformer,
    sdxl_unet,
)
from uoc_test_helpers import ALWAYS_JUDGE_CONFTEST

GATE = '''
import pytest
from pytest_uoc import assert_concept_not_retrievable


@pytest.mark.uoc_concept("three", prompts=["a handwritten three", "the digit 3"])
def test_gate():
    assert_concept_not_retrievable(psi=0.3, ccs_max=0.5)
'''

OPTIONS = ["--uoc-device", "cpu", "--uoc-steps", "4", "--uoc-seeds", "16", "--uoc-psis", "0,0.3",
           "--uoc-accuracy-floor", "0.5"]


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Saved SDXL and SD3 pipeline folders, each with an 'unlearned' denoiser of its family."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("family_models")
    build_sdxl().save_pretrained(str(root / "sdxl"))
    save_file({k: v.contiguous() for k, v in sdxl_unet(1).state_dict().items()}, str(root / "sdxl-unet.safetensors"))
    build_sd3().save_pretrained(str(root / "sd3"))
    sd3_transformer(1).save_pretrained(str(root / "sd3-unlearned" / "transformer"))
    return {
        "sdxl": {"original": root / "sdxl", "unlearned": root / "sdxl-unet.safetensors"},
        "sd3": {"original": root / "sd3", "unlearned": root / "sd3-unlearned"},
    }


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_the_gate_runs_on_a_saved_family_pipeline(pytester: pytest.Pytester, family_models, family: str) -> None:
    models = family_models[family]
    pytester.makeconftest(ALWAYS_JUDGE_CONFTEST)
    pytester.makepyfile(test_gate=GATE)
    report = pytester.path / "report.json"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--uoc-original={models['original']}",
                                f"--uoc-unlearned={models['unlearned']}", f"--uoc-report={report}", *OPTIONS)
    result.assert_outcomes(failed=1)
    # A judge that flags every image also flags the anchor's: it fails its check on the training seeds, and the
    # verdict is decided at ψ = 0 alone (images, both nulls and the classifier made on this family's pipeline).
    result.stdout.fnmatch_lines(["*concept 'three' is INCONCLUSIVE: the judge sees this concept in the "
                                 "original's images of the anchor too (share 1.000*"])
    rows = json.loads(report.read_text())["tests"]
    assert len(rows) == 1
    row = rows[0]
    assert row["verdict"] == "inconclusive" and row["rule"] == "calibrated:nulls"
    assert row["scorer"] == "always" and row["judge"]["check"]["original_share"] == 1.0
    assert [p["psi"] for p in row["calibration"]["points"]] == [0.0]
    assert row["cost"]["null_unet_evals"] > 0
    assert row["run"]["scheduler"] and row["run"]["steps"] == 4


def test_uoc_audit_on_a_saved_sdxl_pipeline(family_models, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_uoc.cli import EXIT_OK, main

    monkeypatch.chdir(tmp_path)
    models = family_models["sdxl"]
    code = main(["audit", "--original", str(models["original"]), "--unlearned", str(models["unlearned"]),
                 "--concept", "three", "--prompt", "a handwritten three", "--prompt", "the digit 3",
                 "--psi", "0.3", "--ccs-max", "0.5", "--out", str(tmp_path / "out"), "--progress", "never",
                 "--cache-dir", str(tmp_path / "cache"),
                 *[o.replace("--uoc-", "--") for o in OPTIONS]])
    out = capsys.readouterr().out
    # No judge: the concept classifier scores the images. The random "unlearned" UNet's images
    # stay below both nulls (the original finishing with the anchor, with the concept as negative),
    # so the calibrated rule finds it forgotten and the gate passes.
    assert code == EXIT_OK, out
    verdict = [line for line in out.splitlines() if line.startswith("verdict: ")]
    assert len(verdict) == 1, out
    assert verdict[0].startswith("verdict: FORGOTTEN: at every ψ ≤ 0.3 the excess over the lower null stays "
                                 "within ccs_max=0.5"), out
    assert json.loads(out.strip().splitlines()[-1]) == {"verdict": "forgotten", "passed": True}
    row = json.loads((tmp_path / "out" / "report.json").read_text())["tests"][0]
    assert row["verdict"] == "forgotten" and row["model"] == str(models["unlearned"])
    assert row["rule"] == "calibrated:nulls"


def test_an_unknown_pipeline_class_is_named(tmp_path: Path) -> None:
    from pytest_uoc.diffusion.loading import load_pipeline

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(ValueError, match=r"KandinskyPipeline.*StableDiffusionPipeline.*StableDiffusionXLPipeline"
                                         r".*StableDiffusion3Pipeline.*FluxPipeline"):
        load_pipeline(tmp_path)


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_load_pipeline_picks_the_class_of_model_index(family_models, family: str) -> None:
    from pytest_uoc.diffusion.loading import load_pipeline

    pipe = load_pipeline(family_models[family]["original"])
    expected = {"sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline"}[family]
    assert type(pipe).__name__ == expected


def test_the_plugin_names_an_unknown_pipeline_class(pytester: pytest.Pytester, tmp_path: Path) -> None:
    folder = tmp_path / "kandinsky"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    pytester.makeconftest(ALWAYS_JUDGE_CONFTEST)
    pytester.makepyfile(test_gate=GATE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--uoc-original={folder}",
                                f"--uoc-unlearned={folder}", *OPTIONS)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*KandinskyPipeline*supported pipeline classes: StableDiffusionPipeline*"])


def test_the_session_loads_a_saved_flux_pipeline_and_its_transformer(tmp_path: Path) -> None:
    """Flux through the plugin's loading path (a gate run is left out: FluxPipeline draws 256 px by default)."""
    import torch

    from pytest_uoc.concept import Concept
    from pytest_uoc.config import resolve_settings
    from pytest_uoc.session import UocSession

    build_flux().save_pretrained(str(tmp_path / "flux"))
    unlearned = flux_transformer(1)
    unlearned.save_pretrained(str(tmp_path / "unlearned" / "transformer"))
    settings = resolve_settings({"original": str(tmp_path / "flux"), "device": "cpu", "steps": "4"}, {}, {})
    session = UocSession(settings=settings, rootdir=tmp_path)
    original = session.load_original()
    assert type(original).__name__ == "FluxPipeline"
    pipe = session.load_unlearned(str(tmp_path / "unlearned"), original)
    assert pipe.text_encoder_2 is original.text_encoder_2 and pipe.vae is original.vae
    expected = unlearned.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in pipe.transformer.state_dict().items())
    with pytest.warns(UserWarning, match="trajectory cache off for this Flux engine"):
        probe = session.probe(Concept("three", ("a handwritten three",)), original, pipe, None, settings,
                              {"original": "flux", "unlearned": "unlearned"})
    assert probe.engine.family.name == "flux" and probe.engine.unlearned is pipe


@pytest.mark.parametrize("attack", ["inversion", "prompt_attack"])
def test_uoc_audit_runs_the_learned_attacks_on_a_saved_sdxl_pipeline(family_models, tmp_path: Path, attack: str,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's SDXL folder and UNet file: the attack learns against both models through both text encoders."""
    from pytest_uoc.cli import main

    monkeypatch.chdir(tmp_path)
    models = family_models["sdxl"]
    main(["audit", "--original", str(models["original"]), "--unlearned", str(models["unlearned"]),
          "--concept", "three", "--prompt", "a handwritten three", "--prompt", "the digit 3",
          "--psi", "0.3", "--ccs-max", "0.5", "--out", str(tmp_path / "out"), "--progress", "never",
          "--cache-dir", str(tmp_path / "cache"), "--attack", attack, "--attack-steps", "2",
          *[o.replace("--uoc-", "--") for o in OPTIONS]])
    out = capsys.readouterr().out
    assert "not supported" not in out, out
    rows = json.loads((tmp_path / "out" / "report.json").read_text())["tests"]
    attacked = [row for row in rows if row.get(attack)]
    assert len(attacked) == 1, out
    assert attacked[0]["gate"] == {"inversion": "not_invertible", "prompt_attack": "not_prompt_attackable"}[attack]
    found = attacked[0][attack]
    assert found["kind"] in {"forgotten", "concealed", "inconclusive", "not_erased"} and found["attack"] == attack
    assert set(found["models"]) == {"unlearned", "original"}
    assert found["settings"]["steps"] == 2
    for model in found["models"].values():
        assert 0.0 <= model["share"]["mean"] <= 1.0 and model["unet_evals"] > 0
    if attack == "prompt_attack":
        assert all(len(item["token_ids"]) == 5 for model in found["models"].values() for item in model["found"])
